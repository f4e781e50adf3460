"""A planner's closed loop with either plant of the LEAP Hand task (cgwm_env.envs.leap.task: start,
goal, success with its hold), the per-episode report, and plans made on a world model for playback.

Reported per episode: success, the final angle error in degrees and whether it is within
REACH_ANGLE (0.1 rad).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from cgwm_env.envs.leap import task as leap_task
from cgwm_env.envs.leap.task import CONTROL_DT, MAX_EPISODE_STEPS, angle_error
from cgwm_env.envs.leap.world_model_env import LeapCore
from cgwm_env.physics.model import State
from cgwm_env.physics.simulator import control_step

REACH_ANGLE = leap_task.HAND_MANIPULATE_ANGLE  # rad: an episode "reaches" the goal when its final angle is below


def state_from_observation(obs: dict, previous: dict | None = None, dt: float = CONTROL_DT) -> State:
    """The world model's State (batch 1) of a task observation (cgwm_env.envs.leap.task's goal
    dict): the object's pose, the joint positions and targets; the object's velocities
    finite-differenced from the previous observation over dt s (zero without one; the planner was
    tuned so, and the difference over a control step smooths contact chatter), the joints' from
    their positions."""
    now = leap_task.observation_parts(obs["observation"])
    pos = torch.as_tensor(now["object_pos"], dtype=torch.float32)[None]
    quat = torch.as_tensor(now["object_quat"], dtype=torch.float32)[None]
    velocity, omega = torch.zeros(1, 3), torch.zeros(1, 3)
    if previous is not None:
        before = leap_task.observation_parts(previous["observation"])
        velocity = (pos - torch.as_tensor(before["object_pos"], dtype=torch.float32)[None]) / dt
        q0 = torch.as_tensor(before["object_quat"], dtype=torch.float64)
        q1 = torch.as_tensor(now["object_quat"], dtype=torch.float64)
        q0 = q0 if float((q0 * q1).sum()) >= 0 else -q0
        # omega (world frame) from q1 = exp(dt omega / 2) q0: 2 vec(q1 q0^-1) / dt to first order
        w0, v0 = q0[0], -q0[1:]
        w1, v1 = q1[0], q1[1:]
        vec = w1 * v0 + w0 * v1 + torch.linalg.cross(v1, v0)
        omega = (2.0 * vec / dt).to(torch.float32)[None]
    return State(pos, quat, velocity, omega, torch.tensor([[0.0, 0.0, 10.0]]),
                 torch.as_tensor(now["joint_pos"], dtype=torch.float32)[None],
                 torch.as_tensor(now["joint_target"], dtype=torch.float32)[None])


@dataclass
class EpisodeResult:
    """One episode: seed; success; steps taken; final orientation error (1 - <q, q*>^2) and angle
    (degrees); reached (final angle < REACH_ANGLE); dropped (the object left the palm); the
    planner's solve times, s; its regrasps."""

    seed: int
    success: bool
    steps: int
    final_error: float
    final_angle_deg: float
    reached: bool
    dropped: bool
    solve_times: list = field(default_factory=list)
    regrasps: int = 0


def run_episode(env, planner, seed: int, max_steps: int = MAX_EPISODE_STEPS, finite_difference: bool = True,
                on_step: Callable[[int, dict, dict], None] | None = None,
                on_reset: Callable[[dict], None] | None = None) -> EpisodeResult:
    """Reset `env` (ContactGaussian-LeapHand-v1 or its MuJoCo twin, through gym.make or not) with
    `seed` and run `planner` (controllers.mpc.ReorientationMPC) in closed loop until success (the
    env's info["is_success"]: the task's, with its hold), the object drops, or max_steps. The
    world-model env's State is read directly; for any other env it is built from the observation
    (state_from_observation; object velocities finite-differenced when finite_difference, else
    zero). The planner's joint-target changes (rad) go to the env as its actions (normalised or
    not, its goal_settings). on_reset(obs) is called after the reset, on_step(t, obs, info) after
    every step."""
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps: expected a count >= 1, got {max_steps!r}")
    planner.reset()
    first_solve = len(planner.solve_times)
    obs, info = env.reset(seed=seed)
    if on_reset is not None:
        on_reset(obs)
    world_model = getattr(env.unwrapped, "state", None) is not None and hasattr(env.unwrapped, "simulate")
    settings = env.unwrapped.goal_settings
    goal = obs["desired_goal"].astype(np.float64)
    hold = leap_task.observation_parts(obs["observation"])["object_pos"].astype(np.float64)
    previous, dropped, steps, success = None, False, 0, False
    for steps in range(1, max_steps + 1):
        state = env.unwrapped.state if world_model else state_from_observation(
            obs, previous if finite_difference else None)
        action = planner.plan(state, goal, hold)
        previous = obs
        obs, _, terminated, _, info = env.step(settings.env_action(action.numpy()))
        if on_step is not None:
            on_step(steps, obs, info)
        success = bool(info["is_success"])
        if success:
            break
        if terminated:
            dropped = True
            break
    angle = float(angle_error(obs["achieved_goal"], goal))
    return EpisodeResult(seed, success, steps, float(info["orientation_error"]), math.degrees(angle),
                         angle < REACH_ANGLE, dropped, planner.solve_times[first_solve:], planner.regrasps)


def summarize(results: list[EpisodeResult]) -> dict:
    """Success rate, mean final angle error (degrees), rate of ending within REACH_ANGLE, drops,
    and the solve time's median and 95th percentile (ms) with the rate they allow (Hz)."""
    if not results:
        raise ValueError("results: expected at least one EpisodeResult")
    times = np.array([t for r in results for t in r.solve_times]) * 1e3
    median = float(np.median(times)) if len(times) else math.nan
    return {
        "episodes": len(results),
        "success_rate": statistics.fmean(r.success for r in results),
        "mean_final_error_deg": statistics.fmean(r.final_angle_deg for r in results),
        "reach_0.1rad_rate": statistics.fmean(r.reached for r in results),
        "dropped": sum(r.dropped for r in results),
        "mean_steps": statistics.fmean(r.steps for r in results),
        "mean_regrasps": statistics.fmean(r.regrasps for r in results),
        "solve_ms_median": median,
        "solve_ms_p95": float(np.percentile(times, 95)) if len(times) else math.nan,
        "mpc_hz": 1e3 / median if len(times) else math.nan,
    }


def world_model_plan(model, planner, steps: int, turn: float = math.pi / 2,
                     on_step: Callable[[int, State], None] | None = None) -> np.ndarray:
    """The joint targets (steps + 1, 16) rad, one a control step (the first the open hand's), that
    `planner` (controllers.mpc.ReorientationMPC) plans in closed loop on the world model `model`
    (a Model with a hand) itself, turning the object by `turn` rad about +z from the playback's
    start (LeapCore.upright_start, as envs.leap.predict_frames: the hand open and at rest): a
    trajectory planned on the model, to play open loop on the hand (hardware.playback).
    on_step(t, state) is called after each control step with the model's State."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: expected a count >= 1, got {steps!r}")
    core = LeapCore(1, model, 8, False)
    state = core.upright_start(torch.as_tensor(leap_task.HOME_Q)[None])
    goal, hold = leap_task.yaw_quat(turn).astype(np.float64), state.position[0].double()
    planner.reset()
    targets = [state.hand_target[0].clone()]
    for t in range(1, steps + 1):
        action = planner.plan(state, goal, hold)
        with torch.no_grad():
            state = control_step(core.model, core.prepared, state, action[None].to(state.hand.dtype), core.substeps)
        targets.append(state.hand_target[0].clone())
        if on_step is not None:
            on_step(t, state)
    return torch.stack(targets).double().numpy()
