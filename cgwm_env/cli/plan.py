"""`cgwm plan`: an MPC plan turning the object, made on a world model (controllers.tasks.world_model_plan),
written as a trajectory for `cgwm play`."""

from __future__ import annotations

import math
import time

import numpy as np

from cgwm_env import progress
from cgwm_env.envs.leap.task import CONTROL_DT, angle_error, yaw_quat
from cgwm_env.envs.leap.world_model_env import DEFAULT_WORLD_MODEL
from cgwm_env.learn.world_model import WorldModel
from cgwm_env.physics.hand import hand_scene
from controllers.mpc import ReorientationMPC, load_settings
from controllers.tasks import world_model_plan
from hardware.playback import save_trajectory


def main(args) -> None:
    """`cgwm plan`: world_model_plan on a bundle, written as a trajectory for `cgwm play`; ends
    with the angle the world model leaves the object from the goal."""
    model = WorldModel.load(args.model or DEFAULT_WORLD_MODEL).model(**hand_scene())
    settings, source = load_settings(args.config)
    progress.detail(f"MPC settings: {source}")
    planner = ReorientationMPC(model, settings)
    start, last = time.perf_counter(), {}
    with progress.bar(args.steps, "plan: MPC on the world model", unit="control step") as bar:
        def on_step(t, state):
            last["quat"] = state.quat[0].double().numpy()
            bar.update()
            if t % 10 == 0:
                angle = math.degrees(angle_error(last["quat"], yaw_quat(math.radians(args.turn))))
                bar.set_postfix_str(f"{angle:.1f} deg to go")

        targets = world_model_plan(model, planner, args.steps, math.radians(args.turn), on_step=on_step)
    path = save_trajectory(args.trajectory, np.arange(len(targets)) * CONTROL_DT, targets)
    angle = math.degrees(angle_error(last["quat"], yaw_quat(math.radians(args.turn))))
    progress.summary(f"plan: the world model ends {angle:.1f} deg from the {args.turn:g}-degree turn after "
                     f"{len(targets) - 1} control steps ({planner.regrasps} regrasps, "
                     f"{time.perf_counter() - start:.0f} s) -> {path}; play it with: cgwm play --trajectory {path} "
                     f"[--virtual]")
