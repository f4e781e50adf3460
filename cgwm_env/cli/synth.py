"""`cgwm synth`: MuJoCo datasets (cgwm_env.data.synth; LEAP Hand clips: cgwm_env.envs.leap.clips)."""

from __future__ import annotations

from cgwm_env.data.synth import SCENARIOS, synth
from cgwm_env.envs.leap.clips import synth_leap_clips


def add_arguments(parser) -> None:
    """Add `cgwm synth`'s options to an argparse parser."""
    parser.add_argument("--scenario", required=True, choices=(*SCENARIOS, "leap"),
                        help="what to record (leap: LEAP Hand clips in the MuJoCo twin)")
    parser.add_argument("--object", required=True, help="object name (see cgwm_env.data.objects.OBJECTS)")
    parser.add_argument("--out", required=True, help="output folder (one dataset folder per episode inside)")
    parser.add_argument("--episodes", type=int, default=1, help="train/test clip pairs or view sets (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--size", type=int, default=128, help="image width and height, px (default 128)")


def main(args) -> int:
    """Run `cgwm synth` with parsed arguments; prints the folders written."""
    if args.scenario == "leap":
        paths = synth_leap_clips(args.object, args.out, args.episodes, args.seed, args.size)
    else:
        paths = synth(args.scenario, args.object, args.out, args.episodes, args.seed, args.size)
    for path in paths:
        print(path)
    return 0
