"""`cgwm init`: stage I, spherical Gaussians from a multi-view dataset (cgwm_env.learn.stage1)."""

from __future__ import annotations

import argparse

from cgwm_env.learn.stage1 import Settings, run_init


def main(args: argparse.Namespace) -> int:
    """`cgwm init`: run_init from parsed arguments (it shows its progress and ends with the held-out PSNR)."""
    given = {name: getattr(args, name) for name in ("grid", "geometry_iterations", "appearance_iterations", "batch",
                                                    "seed")}
    settings = Settings(**{name: value for name, value in given.items() if value is not None})
    run_init(args.data, args.gaussians, settings, args.holdout_every, args.mesh_resolution)
    return 0
