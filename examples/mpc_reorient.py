"""Gradient-based MPC turning a cube on the LEAP Hand's palm: the bundled cube world model plans,
MuJoCo (the twin plant) executes.

Run: python examples/mpc_reorient.py [--steps N] [--world-model-plant]
"""

import argparse

import gymnasium as gym
import numpy as np
import torch

import cgwm_env  # noqa: F401  (registers the environments)
from cgwm_env.envs.leap.task import CONTROL_DT, angle_error, observation_parts
from controllers.mpc import MPCSettings, ReorientationMPC
from controllers.tasks import state_from_observation

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=500, help="most control steps (1/30 s each)")
parser.add_argument("--world-model-plant", action="store_true", help="execute on the world model, not MuJoCo")
args = parser.parse_args()

torch.set_num_threads(1)  # batch-1 planning is op-overhead bound: a second thread only contends
# normalized_actions=False: the envs take the planner's joint-target changes in rad, as they are.
world = gym.make("ContactGaussian-LeapHand-v1", normalized_actions=False)  # env.unwrapped.model: what MPC plans on
plant = world if args.world_model_plant else gym.make("ContactGaussian-LeapHandMuJoCo-v1", normalized_actions=False)
planner = ReorientationMPC(world.unwrapped.model, MPCSettings())  # the shipped planner

obs, info = plant.reset(seed=0)
goal = obs["desired_goal"]  # turn the cube to the goal, keeping it where it started
hold = observation_parts(obs["observation"])["object_pos"].copy()
previous = None
for t in range(args.steps):
    # The planning State: the world model's own, or one built from the twin's observation
    # (object pose, joints and targets; object velocities finite-differenced).
    state = plant.unwrapped.state if plant is world else state_from_observation(obs, previous)
    action = planner.plan(state, goal, hold)  # (16,) joint-target changes, within +-0.05 rad
    previous = obs
    obs, reward, terminated, truncated, info = plant.step(action.numpy())
    if t % 30 == 0:
        print(f"t={t * CONTROL_DT:5.1f} s  angle to goal {np.degrees(angle_error(obs['achieved_goal'], goal)):6.1f} deg")
    if info["is_success"] or terminated:  # success: within 23 degrees for 20 steps in a row
        break
solves = f"median solve {1e3 * np.median(planner.solve_times):.1f} ms" if planner.solve_times else "no solves yet"
print(f"{'success' if info['is_success'] else 'no success'} after {t + 1} steps; final angle error "
      f"{np.degrees(angle_error(obs['achieved_goal'], goal)):.1f} deg; {solves}")
