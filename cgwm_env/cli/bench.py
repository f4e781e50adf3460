"""`cgwm bench SUITE`: a benchmark suite of cgwm_env.bench; prints a table and writes JSON."""

from __future__ import annotations

import torch

from cgwm_env.bench import accuracy, env, hardware, init, mpc, physics, render

SUITES = {"physics": physics, "render": render, "init": init, "env": env, "accuracy": accuracy, "hardware": hardware,
          "mpc": mpc}


def add_arguments(parser) -> None:
    """`cgwm bench`'s options."""
    parser.add_argument("suite", choices=list(SUITES))
    parser.add_argument("--out", default=None, help="JSON file to write")
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run, noisier figures)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice); 1 gives steadier figures on a busy machine")
    parser.add_argument("--trials", type=int, default=None, help="mpc: episodes per object (default 20, quick 3)")
    parser.add_argument("--compile", action="store_true",
                        help="mpc: plan through torch.compile (the first solve, which compiles, is reported apart)")
    parser.add_argument("--workers", type=int, default=1,
                        help="mpc: processes running episodes at once (default 1; one per free core)")
    parser.add_argument("--objects", nargs="+", default=None, metavar="NAME",
                        help="accuracy: library objects (default cube duck lblock bottle mug; quick: cube); "
                             "mpc: objects or world-model bundles (e.g. cube_handmade; default all)")
    parser.add_argument("--config", default=None, help="mpc: MPC settings YAML (default configs/mpc.yaml)")


def main(args) -> None:
    """Run the suite `args.suite` with the parsed options."""
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads: expected a count >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    suite = SUITES[args.suite]
    if args.suite == "render":
        suite.run(args.out, repeats=5 if args.quick else 20)
    elif args.suite == "mpc":
        suite.run(args.out, quick=args.quick, trials=args.trials, threads=args.threads, compile=args.compile,
                  workers=args.workers, objects=args.objects, config=args.config)
    elif args.suite == "accuracy":
        suite.run(args.out, quick=args.quick, objects=args.objects)
    else:
        suite.run(args.out, quick=args.quick)
