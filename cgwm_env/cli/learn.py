"""`cgwm learn`: stage II on a folder of clips (cgwm_env.learn.stage2.run_learn)."""

from __future__ import annotations

import argparse

from cgwm_env.learn.settings import PARAMETERS, LearnSettings, load_learn_settings
from cgwm_env.learn.stage2 import run_learn


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `cgwm learn`; the command line overrides --config."""
    parser.add_argument("--data", required=True, metavar="DIR", help="folder of train_* clips (or one clip)")
    parser.add_argument("--gaussians", required=True, metavar="FILE", help="stage I Gaussians (.npz or .ply)")
    parser.add_argument("--out", required=True, metavar="MODEL", help="world-model folder to write")
    parser.add_argument("--config", default=None, help="learning settings YAML (see configs/learn.yaml)")
    parser.add_argument("--clips", type=int, nargs="+", default=None, help="train clips to use (indices; default all)")
    parser.add_argument("--iterations", type=int, default=None, help="Adam steps")
    parser.add_argument("--lr", type=float, default=None, help="Adam's step on the unconstrained theta (default 0.04)")
    parser.add_argument("--parameters", nargs="+", default=None, choices=list(PARAMETERS), metavar="NAME",
                        help=f"which of theta to learn, some of {' '.join(PARAMETERS)} (default mu stiffness damping)")
    parser.add_argument("--mass", type=float, default=None, help="initial mass, kg (default 0.1)")
    parser.add_argument("--mu", type=float, default=None, help="initial friction coefficient (default 0.5)")
    parser.add_argument("--stiffness", type=float, default=None, help="initial stiffness (kappa; default 0.5)")
    parser.add_argument("--damping", type=float, default=None, help="initial damping (delta; default 0.5)")
    parser.add_argument("--lr-geometry", type=float, default=None, metavar="M",
                        help="step of the sphere centres, m: 0 (default) freezes the geometry, 2e-5 fine-tunes it")
    parser.add_argument("--loftr-weights", default=None, metavar="FILE",
                        help="local kornia LoFTR weights: use the LoFTR feature loss instead of D-SSIM")
    parser.add_argument("--seed", type=int, default=None, help="seed of the initial-pose candidates")


def main(args: argparse.Namespace) -> int:
    """`cgwm learn` from parsed arguments."""
    config = load_learn_settings(args.config) if args.config else {"settings": {}, "initial": {}}
    fields = dict(config["settings"])
    for name in ("iterations", "lr", "parameters", "seed"):
        if getattr(args, name) is not None:
            fields[name] = getattr(args, name)
    if args.lr_geometry is not None:
        fields["lr_geometry"] = args.lr_geometry
    if args.loftr_weights:
        fields.update(structure="loftr", loftr_weights=args.loftr_weights)
    try:
        settings = LearnSettings(**fields)
    except TypeError as err:
        raise ValueError(f"config: {err}") from err
    initial = {"mass": 0.1, "mu": 0.5, "stiffness": 0.5, "damping": 0.5, **config["initial"]}
    for name in initial:
        if getattr(args, name) is not None:
            initial[name] = getattr(args, name)
    run_learn(args.data, args.gaussians, args.out, settings, clips=args.clips, **initial)
    return 0
