"""`cgwm bench SUITE`: a benchmark suite of cgwm_env.bench; prints a table and writes JSON."""

from __future__ import annotations

import importlib
import time

import torch

from cgwm_env import progress


def main(args) -> None:
    """Run the suite cgwm_env.bench.<args.suite> with the parsed options (a suite is imported only
    when it runs: the hardware suite needs the [hardware] extra)."""
    suite = importlib.import_module(f"cgwm_env.bench.{args.suite}")
    progress.say(f"bench {args.suite}{' (quick)' if args.quick else ''}: running, a line per case; the table follows")
    start = time.perf_counter()
    if args.suite == "render":
        suite.run(args.out, repeats=5 if args.quick else 20)
    elif args.suite == "mpc":
        suite.run(args.out, quick=args.quick, trials=args.trials, threads=torch.get_num_threads(), compile=args.compile,
                  workers=args.workers, objects=args.objects, config=args.config, ray_address=args.ray)
    elif args.suite == "accuracy":
        suite.run(args.out, quick=args.quick, objects=args.objects)
    else:
        suite.run(args.out, quick=args.quick)
    progress.summary(f"bench {args.suite}: done in {time.perf_counter() - start:.0f} s")
