"""`cgwm learn`: stage II on a folder of clips (cgwm_env.learn.run.run_learn)."""

from __future__ import annotations

import dataclasses

from cgwm_env.learn.settings import LearnSettings, load_learn_settings
from cgwm_env.learn.run import run_learn


def main(args) -> None:
    """`cgwm learn` from parsed arguments: the options over --config's values over the defaults."""
    settings, initial = load_learn_settings(args.config) if args.config else (LearnSettings(), {})
    given = {name: getattr(args, name) for name in ("iterations", "lr", "parameters", "seed", "lr_geometry")}
    if args.loftr_weights:
        given.update(structure="loftr", loftr_weights=args.loftr_weights)
    settings = dataclasses.replace(settings, **{name: value for name, value in given.items() if value is not None})
    for name in ("mass", "mu", "stiffness", "damping"):
        if getattr(args, name) is not None:
            initial[name] = getattr(args, name)
    run_learn(args.data, args.gaussians, args.out, settings, clips=args.clips, pusher=args.pusher, **initial)
