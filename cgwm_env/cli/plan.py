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
