"""The `cgwm` command: one verb per pipeline stage."""

from __future__ import annotations

import argparse
import importlib
import sys


# Verbs whose module has add_arguments(parser) and main(args): module, help.
STAGES = {
    "synth": ("cgwm_env.data.synth", "record MuJoCo datasets: fall, push, multiview or leap (the LEAP Hand)"),
    "init": ("cgwm_env.sggs", "stage I: spherical Gaussians from a multiview dataset"),
    "learn": ("cgwm_env.refine", "stage II: physical parameters and geometry from video"),
    "eval": ("cgwm_env.evaluate", "open-loop test errors beside No_opt and CEM+MuJoCo+R"),
    "plan": ("controllers.tasks", "an MPC plan turning the object, made on a world model; a trajectory for play"),
    "calibrate": ("hardware.calibration", "camera pose from ArUco markers; writes a camera JSON"),
    "play": ("hardware.playback", "open-loop playback of a joint trajectory on the LEAP Hand"),
}
# Benchmark suites: modules with run(out, ...).
BENCHES = {"physics": "cgwm_env.bench.physics", "render": "cgwm_env.bench.render", "init": "cgwm_env.bench.init",
           "env": "cgwm_env.bench.env", "accuracy": "cgwm_env.bench.accuracy", "hardware": "hardware.bench",
           "mpc": "cgwm_env.bench.mpc"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cgwm", description="ContactGaussian world model")
    verbs = parser.add_subparsers(dest="verb", required=True)

    demo = verbs.add_parser("demo", help="MPC demo: the cube world model turns a cube on the LEAP Hand's palm in "
                                          "MuJoCo; video and summary (--scene sim: the simulator demo)")
    demo.add_argument("--scene", choices=["mpc", "sim"], default="mpc",
                      help="mpc: MPC reorientation (default); sim: a cube dropped and a cube pushed, table and plot")
    demo.add_argument("--out", default="out/demo", help="folder for the video or plot and summary (default out/demo)")
    demo.add_argument("--seed", type=int, default=7,
                      help="mpc: the task's seed, start and goal yaw (default 7, one the MPC benchmark solves)")
    demo.add_argument("--steps", type=int, default=None, help="mpc: most control steps (default 500)")
    demo.add_argument("--seconds", type=float, default=1.5, help="sim: simulated time, s")
    demo.add_argument("--config", default=None,
                      help="settings YAML: mpc: configs/mpc.yaml (the default); sim: configs/physics.yaml")
    demo.add_argument("--compile", action="store_true",
                      help="mpc: plan through torch.compile (about 4x faster solves; the first compiles for about a minute)")

    for verb, (module, help_text) in STAGES.items():
        importlib.import_module(module).add_arguments(verbs.add_parser(verb, help=help_text))

    bench = verbs.add_parser("bench", help="speed and accuracy benchmarks; print a table and write JSON")
    bench.add_argument("suite", choices=list(BENCHES))
    bench.add_argument("--out", default=None, help="JSON file to write")
    bench.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run, noisier figures)")
    bench.add_argument("--threads", type=int, default=None,
                       help="torch CPU threads (default: torch's choice); 1 gives steadier figures on a busy machine")
    bench.add_argument("--trials", type=int, default=None, help="mpc: episodes per object (default 20, quick 3)")
    bench.add_argument("--compile", action="store_true",
                       help="mpc: plan through torch.compile (the first solve, which compiles, is reported apart)")
    bench.add_argument("--workers", type=int, default=1,
                       help="mpc: processes running episodes at once (default 1; one per free core)")
    bench.add_argument("--objects", nargs="+", default=None, metavar="NAME",
                       help="accuracy: library objects (default cube duck lblock bottle mug; quick: cube); "
                            "mpc: objects or world-model bundles (e.g. cube_handmade; default all)")
    bench.add_argument("--config", default=None, help="mpc: MPC settings YAML (default configs/mpc.yaml)")

    args = parser.parse_args(argv)
    try:
        _run(parser, args)
    except ValueError as err:  # bad input: say what is wrong, without a traceback
        print(f"cgwm {args.verb}: error: {err}", file=sys.stderr)
        return 2
    return 0


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.verb in STAGES:
        importlib.import_module(STAGES[args.verb][0]).main(args)
    elif args.verb == "demo" and args.scene == "mpc":
        from cgwm_env import mpc_demo

        mpc_demo.run(args.out, seed=args.seed, max_steps=args.steps, config=args.config, compile=args.compile)
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
        suite = importlib.import_module(BENCHES[args.suite])
        if args.suite == "render":
            suite.run(args.out, repeats=5 if args.quick else 20)
        elif args.suite == "mpc":
            suite.run(args.out, quick=args.quick, trials=args.trials, threads=args.threads, compile=args.compile,
                      workers=args.workers, objects=args.objects, config=args.config)
        elif args.suite == "accuracy":
            suite.run(args.out, quick=args.quick, objects=args.objects)
        else:
            suite.run(args.out, quick=args.quick)


if __name__ == "__main__":
    sys.exit(main())
