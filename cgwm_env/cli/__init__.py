"""The `cgwm` command: one verb per pipeline stage, each in its own module of this package with
add_arguments(parser) and main(args)."""

from __future__ import annotations

import argparse
import importlib
import sys

# verb: help (the verb's module is cgwm_env.cli.<verb>)
VERBS = {
    "demo": "MPC demo: the cube world model turns a cube on the LEAP Hand's palm in MuJoCo; video and summary "
            "(--scene sim: the simulator demo)",
    "synth": "record MuJoCo datasets: fall, push, multiview or leap (the LEAP Hand)",
    "init": "stage I: spherical Gaussians from a multiview dataset",
    "learn": "stage II: physical parameters and geometry from video",
    "eval": "open-loop test errors beside No_opt and CEM+MuJoCo+R",
    "plan": "an MPC plan turning the object, made on a world model; a trajectory for play",
    "calibrate": "camera pose from ArUco markers; writes a camera JSON",
    "play": "open-loop playback of a joint trajectory on the LEAP Hand",
    "bench": "speed and accuracy benchmarks; print a table and write JSON",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cgwm", description="ContactGaussian world model")
    verbs = parser.add_subparsers(dest="verb", required=True)
    modules = {verb: importlib.import_module(f"cgwm_env.cli.{verb}") for verb in VERBS}
    for verb, help_text in VERBS.items():
        modules[verb].add_arguments(verbs.add_parser(verb, help=help_text))
    args = parser.parse_args(argv)
    try:
        modules[args.verb].main(args)
    except ValueError as err:  # bad input: say what is wrong, without a traceback
        print(f"cgwm {args.verb}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
