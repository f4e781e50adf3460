"""`cgwm plan`: an MPC plan turning the object, made on a world model (controllers.tasks.world_model_plan),
written as a trajectory for `cgwm play`."""

from __future__ import annotations

import math

import numpy as np

from cgwm_env.envs.leap.task import CONTROL_DT
from cgwm_env.envs.leap.world_model_env import DEFAULT_WORLD_MODEL
from cgwm_env.learn.world_model import WorldModel
from cgwm_env.physics.hand import hand_scene
from controllers.mpc import ReorientationMPC, load_settings
from controllers.tasks import world_model_plan
from hardware.playback import save_trajectory


def add_arguments(parser) -> None:
    """`cgwm plan`'s options."""
    parser.add_argument("--model", default=None, help="world-model bundle to plan on (default: the bundled cube)")
    parser.add_argument("--steps", type=int, default=300, help="control steps to plan, 1/30 s each (default 300)")
    parser.add_argument("--turn", type=float, default=90.0, help="turn about +z, degrees (default 90)")
    parser.add_argument("--config", default=None, help="MPC settings YAML (default configs/mpc.yaml)")
    parser.add_argument("--out", default="out/plan.npz", help="trajectory file to write, for cgwm play")


def main(args) -> None:
    """`cgwm plan`: world_model_plan on a bundle, written as a trajectory for `cgwm play`."""
    if not math.isfinite(args.turn):
        raise ValueError(f"--turn: expected a finite angle in degrees, got {args.turn}")
    model = WorldModel.load(args.model or DEFAULT_WORLD_MODEL).model(**hand_scene())
    planner = ReorientationMPC(model, load_settings(args.config)[0])
    targets = world_model_plan(model, planner, args.steps, math.radians(args.turn))
    path = save_trajectory(args.out, np.arange(len(targets)) * CONTROL_DT, targets)
    print(f"wrote {path}: {len(targets)} joint targets at {1 / CONTROL_DT:.0f} Hz ({planner.regrasps} regrasps); "
          f"play it with: cgwm play {path} [--virtual]")
