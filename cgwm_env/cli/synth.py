"""`cgwm synth`: MuJoCo datasets (cgwm_env.data.synth; LEAP Hand clips: cgwm_env.envs.leap.clips)."""

from __future__ import annotations

from cgwm_env.data.synth import synth
from cgwm_env.envs.leap.clips import synth_leap_clips


def main(args) -> int:
    """Run `cgwm synth` with parsed arguments; prints the folders written."""
    if args.scenario == "leap":
        paths = synth_leap_clips(args.object, args.out, args.episodes, args.seed, args.size)
    else:
        paths = synth(args.scenario, args.object, args.out, args.episodes, args.seed, args.size, args.light)
    for path in paths:
        print(path)
    return 0
