"""`cgwm eval`: a world model's open-loop test errors beside No_opt and CEM+MuJoCo+R (cgwm_env.learn.evaluate)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cgwm_env.learn.evaluate import CemSettings, evaluate, learn_history
from cgwm_env.learn.world_model import WorldModel


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `cgwm eval`."""
    parser.add_argument("--model", required=True, metavar="MODEL", help="world-model folder (cgwm learn)")
    parser.add_argument("--data", required=True, metavar="DIR", help="folder of test_* clips (and train_* for CEM)")
    parser.add_argument("--out", default=None, metavar="DIR", help="where to write results (default MODEL/eval)")
    parser.add_argument("--no-cem", action="store_true", help="skip the CEM+MuJoCo+R baseline")
    parser.add_argument("--cem-iterations", type=int, default=CemSettings.iterations, help="CEM iterations")
    parser.add_argument("--cem-samples", type=int, default=CemSettings.samples, help="parameter samples per iteration")
    parser.add_argument("--no-videos", action="store_true", help="do not write the side-by-side GIFs")
    parser.add_argument("--seed", type=int, default=0, help="CEM's seed")


def main(args: argparse.Namespace) -> int:
    """`cgwm eval` from parsed arguments."""
    wm = WorldModel.load(args.model)
    cem = None if args.no_cem else CemSettings(samples=args.cem_samples, iterations=args.cem_iterations,
                                                elites=max(1, args.cem_samples // 10), seed=args.seed)
    evaluate(wm, args.data, args.out or Path(args.model) / "eval", cem, videos=not args.no_videos,
             history=learn_history(args.model))
    return 0
