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

    bench = verbs.add_parser("bench", help="speed benchmarks; print a table and write JSON")
    bench.add_argument("suite", choices=["physics"])
    bench.add_argument("--out", default=None, help="JSON file to write")
    bench.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run, noisier figures)")

    args = parser.parse_args(argv)
    if args.verb == "demo":
        from cgwm_env import sim_demo

        sim_demo.run(args.out, seconds=args.seconds)
    elif args.verb == "bench":
        from cgwm_env.bench import physics

        physics.run(args.out, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
