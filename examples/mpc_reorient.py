"""Gradient-based MPC turning a cube on the LEAP Hand's palm: the bundled cube world model plans,
MuJoCo (the twin plant) executes. Run: python examples/mpc_reorient.py [--world-model-plant]"""

import sys

import gymnasium as gym
import numpy as np
import torch

import cgwm_env  # noqa: F401  (registers the environments)
from cgwm_env.envs.leap.task import CONTROL_DT
from controllers.mpc import MPCSettings, ReorientationMPC
from controllers.tasks import SuccessTracker, angle_error, state_from_observation

torch.set_num_threads(1)
world = gym.make("ContactGaussian-LeapHand-v0")  # the world model: env.unwrapped.model is what MPC plans on
plant = world if "--world-model-plant" in sys.argv else gym.make("ContactGaussian-LeapHandMuJoCo-v0")
planner = ReorientationMPC(world.unwrapped.model, MPCSettings.from_yaml("configs/mpc.yaml"))

obs, info = plant.reset(seed=0)
goal, hold = obs["goal_quat"], obs["object_pos"].copy()  # turn to goal, keep the cube where it started
tracker, previous = SuccessTracker(), None
for t in range(500):
    # The planning State: the world model's own, or one built from the twin's observation
    # (object pose, joints and targets; object velocities finite-differenced).
    state = plant.unwrapped.state if plant is world else state_from_observation(obs, previous)
    action = planner.plan(state, goal, hold)  # (16,) joint-target changes, within +-0.05 rad
    previous = obs
    obs, reward, terminated, truncated, info = plant.step(action.numpy())
    if t % 30 == 0:
        print(f"t={t * CONTROL_DT:5.1f} s  "
              f"angle to goal {np.degrees(angle_error(obs['object_quat'], goal)):6.1f} deg")
    if tracker.update(info["orientation_error"]) or terminated:
        break
print(f"{'success' if tracker.succeeded else 'no success'} after {t + 1} steps; final angle error "
      f"{np.degrees(angle_error(obs['object_quat'], goal)):.1f} deg; median solve "
      f"{1e3 * np.median(planner.solve_times):.1f} ms")
