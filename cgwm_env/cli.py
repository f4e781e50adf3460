"""The `cgwm` command: one verb per pipeline stage."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cgwm", description="ContactGaussian world model")
    verbs = parser.add_subparsers(dest="verb", required=True)

    demo = verbs.add_parser("demo", help="simulator demo: a cube dropped and a cube pushed; table and plot")
    demo.add_argument("--out", default="out/demo", help="folder for the plot and summary (default out/demo)")
    demo.add_argument("--seconds", type=float, default=1.5, help="simulated time, s")
    demo.add_argument("--config", default=None, help="simulator settings YAML (see configs/physics.yaml)")

    from cgwm_env import sggs
    from cgwm_env.data import synth

    synth.add_arguments(verbs.add_parser("synth", help="record MuJoCo datasets: fall, push or multiview"))
    sggs.add_arguments(verbs.add_parser("init", help="stage I: spherical Gaussians from a multiview dataset"))

    bench = verbs.add_parser("bench", help="speed benchmarks; print a table and write JSON")
    bench.add_argument("suite", choices=["physics", "render", "init"])
    bench.add_argument("--out", default=None, help="JSON file to write")
    bench.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run, noisier figures)")
    bench.add_argument("--threads", type=int, default=None,
                       help="torch CPU threads (default: torch's choice); 1 gives steadier figures on a busy machine")

    args = parser.parse_args(argv)
    try:
        _run(parser, args)
    except ValueError as err:  # bad input: say what is wrong, without a traceback
        print(f"cgwm {args.verb}: error: {err}", file=sys.stderr)
        return 2
    return 0


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.verb == "synth":
        from cgwm_env.data import synth

        synth.main(args)
    elif args.verb == "init":
        from cgwm_env import sggs

        sggs.main(args)
    elif args.verb == "demo":
        from cgwm_env import sim_demo
        from cgwm_env.config import load_model_settings

        settings = load_model_settings(args.config) if args.config else {}
        sim_demo.run(args.out, seconds=args.seconds, settings=settings)
    elif args.verb == "bench":
        import torch

        if args.threads is not None:
            if args.threads < 1:
                parser.error(f"--threads: expected a count >= 1, got {args.threads}")
            torch.set_num_threads(args.threads)
        if args.suite == "physics":
            from cgwm_env.bench import physics

            physics.run(args.out, quick=args.quick)
        elif args.suite == "render":
            from cgwm_env.bench import render

            render.run(args.out, repeats=5 if args.quick else 20)
        else:
            from cgwm_env.bench import init

            init.run(args.out, quick=args.quick)


if __name__ == "__main__":
    sys.exit(main())
