"""`cgwm init`: stage I, spherical Gaussians from a multi-view dataset (cgwm_env.learn.stage1)."""

from __future__ import annotations

import argparse

from cgwm_env.learn.stage1 import Settings, run_init


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `cgwm init`."""
    d = Settings()
    parser.add_argument("--views", required=True, metavar="DIR", help="multi-view dataset folder (docs/datasets.md)")
    parser.add_argument("--out", required=True, metavar="FILE",
                        help="Gaussians .npz to write; the .ply and the soft-SDF mesh .obj go beside it")
    parser.add_argument("--geometry-iterations", type=int, default=d.geometry_iterations, help="geometry stage steps")
    parser.add_argument("--appearance-iterations", type=int, default=d.appearance_iterations,
                        help="appearance stage steps")
    parser.add_argument("--batch", type=int, default=d.batch, help="views per step")
    parser.add_argument("--grid", type=int, default=d.grid, help="visual hull voxels along the object's longest side")
    parser.add_argument("--holdout-every", type=int, default=8,
                        help="hold out every N-th view for the scores (0: none)")
    parser.add_argument("--mesh-resolution", type=int, default=96, help="marching-cubes cells along the longest side")
    parser.add_argument("--seed", type=int, default=d.seed, help="seed of the view batches and densification")


def main(args: argparse.Namespace) -> int:
    """`cgwm init`: run_init from parsed arguments."""
    settings = Settings(grid=args.grid, geometry_iterations=args.geometry_iterations,
                        appearance_iterations=args.appearance_iterations, batch=args.batch, seed=args.seed)
    run_init(args.views, args.out, settings, args.holdout_every, args.mesh_resolution)
    return 0
