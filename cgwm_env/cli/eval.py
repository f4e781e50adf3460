"""`cgwm eval`: a world model's open-loop test errors beside No_opt and CEM+MuJoCo+R (cgwm_env.learn.evaluate)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cgwm_env import progress
from cgwm_env.learn.evaluate import METHODS, CemSettings, evaluate, learn_history
from cgwm_env.learn.world_model import WorldModel


def main(args: argparse.Namespace) -> int:
    """`cgwm eval` from parsed arguments."""
    wm = WorldModel.load(args.model)
    given = {"seed": args.seed}
    if args.cem_iterations is not None:
        given["iterations"] = args.cem_iterations
    if args.cem_samples is not None:
        given.update(samples=args.cem_samples, elites=max(1, args.cem_samples // 10))
    cem = None if args.no_cem else CemSettings(**given)
    out = args.out or Path(args.model) / "eval"
    results = evaluate(wm, args.data, out, cem, videos=not args.no_videos, history=learn_history(args.model),
                       mjcf=args.mjcf)
    scored = [f"{m} {results[m]['e_trans'] * 100:.2f} cm / {results[m]['e_rot']:.3f} rad" for m in METHODS if m in results]
    progress.summary(f"eval: {len(results['test_clips'])} test clip(s) of {results['object']}, E_trans / E_rot: "
                     + ", ".join(scored) + f" -> {out}")
    return 0
