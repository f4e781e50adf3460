"""The on-palm reorientation task of the LEAP Hand (Jin 2024's statement), shared by its two plants
(the world model and the MuJoCo twin), the planners and the benchmarks: its one home.

The hand lies palm-up (hand frame = the world frame of assets/leap_hand/palm_up_scene.xml); an
object starts upright on the palm at OBJECT_XY, turned by a random yaw, and the goal is the same
upright pose turned a further +-90 degrees about +z. The action changes the 16 joint-position
targets (rad, sim order of hand_mjcf.JOINT_NAMES) by at most ACTION_BOUND per control step
(normalised: an action in [-1, 1] is that fraction of ACTION_BOUND); the new target is clipped to
the joint range. The environments take Gymnasium-Robotics' goal-conditioned form (GoalEnv): the
observation is a dict of "observation" (OBSERVATION_PARTS, flat), "achieved_goal" (the object's
quaternion) and "desired_goal" (the goal's), and compute_reward(achieved, desired, info) gives
the reward of any goals, batched. An episode succeeds when the angle to the goal stays below the
rotation threshold (default SUCCESS_ANGLE, about 23 degrees) for SUCCESS_HOLD consecutive control
steps within MAX_EPISODE_STEPS; it ends when the object drops. Quaternions are (w, x, y, z).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from cgwm_env.checks import check_choice, check_flag, check_number
from cgwm_env.physics.hand_mjcf import N_JOINTS, mjcf

CONTROL_DT = 1.0 / 30.0  # s per control step
ACTION_BOUND = 0.05  # rad: the largest change of a joint target per control step
MAX_EPISODE_STEPS = 500
SUCCESS_ERROR = 0.04  # the task's success threshold on the orientation error 1 - <q, q*>^2 ...
SUCCESS_ANGLE = 2.0 * math.acos(math.sqrt(1.0 - SUCCESS_ERROR))  # ... as an angle: 0.4027 rad, 23.1 degrees
HAND_MANIPULATE_ANGLE = 0.1  # rad: Gymnasium-Robotics HandManipulate's rotation_threshold, reported beside
SUCCESS_HOLD = 20  # consecutive control steps within the threshold that make a success
SUCCESS_BONUS = 1.0  # the dense reward's bonus while within the threshold
REWARD_TYPES = ("dense", "sparse")
HOME_Q = np.zeros(N_JOINTS, np.float32)  # rad: the open, flat hand (it does not touch an object on the palm)
OBJECT_XY = np.array([-0.055, 0.035], np.float32)  # m, the object's start on the palm (the scene's cube)
# m: dropped when the centre is this far below its start height, or this far from OBJECT_XY in the plane
DROP_MARGIN = (0.05, 0.08)
# The flat "observation" vector, in this order: name, width, unit, bound (+-; None: the joint range).
# Velocities are in the world frame. The bounds are ones no episode reaches before it ends (the
# object is dropped 8 cm from its start; the fingers move it at well under a metre per second).
OBSERVATION_PARTS = (("joint_pos", N_JOINTS, "rad", None), ("joint_target", N_JOINTS, "rad", None),
                     ("object_pos", 3, "m", 1.0), ("object_quat", 4, "(w, x, y, z)", 1.0),
                     ("object_vel", 3, "m/s", 10.0), ("object_omega", 3, "rad/s", 100.0))
OBSERVATION_SIZE = sum(part[1] for part in OBSERVATION_PARTS)  # 45


def joint_limits() -> tuple[np.ndarray, np.ndarray]:
    """The joint range (lower, upper), each (16,) float32 rad (new copies), the MJCF's."""
    lower, upper = _limits()
    return lower.copy(), upper.copy()


@functools.cache
def _limits() -> tuple[np.ndarray, np.ndarray]:
    limits = mjcf().jnt_range.astype(np.float32)
    return limits[:, 0].copy(), limits[:, 1].copy()


def yaw_quat(yaw) -> np.ndarray:
    """Quaternions (w, x, y, z) of turns by `yaw` (rad, any shape) about +z, shape (..., 4) float32."""
    half = 0.5 * np.asarray(yaw, np.float64)
    zero = np.zeros_like(half)
    return np.stack((np.cos(half), zero, zero, np.sin(half)), axis=-1).astype(np.float32)


def sample_episode(rng: np.random.Generator) -> tuple[float, np.ndarray]:
    """Draw an episode: the start yaw yaw0 ~ U(-pi/2, pi/2) (rad, about +z, from the upright rest
    pose) and the goal quaternion (4,) float32 of the yaw yaw0 +- pi/2 (a random sign)."""
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng: expected a numpy Generator, got {type(rng).__name__}")
    yaw0 = float(rng.uniform(-math.pi / 2, math.pi / 2))
    sign = 1.0 if rng.integers(2) else -1.0
    return yaw0, yaw_quat(yaw0 + sign * math.pi / 2)


def _vectors(x, n: int, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim < 1 or a.shape[-1] != n:
        raise ValueError(f"{name}: expected shape (..., {n}), got {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: expected finite numbers, got NaN or inf")
    return a


def orientation_error(quat, goal) -> np.ndarray:
    """1 - <q, q*>^2 in [0, 1] of unit quaternions quat and goal (..., 4) (broadcast): 0 at the
    goal (q and -q alike), 0.5 at 90 degrees away, 1 at 180. Returns (...) float64."""
    q, g = _vectors(quat, 4, "quat"), _vectors(goal, 4, "goal")
    return 1.0 - np.clip((q * g).sum(-1), -1.0, 1.0) ** 2


def angle_error(quat, goal) -> np.ndarray:
    """The rotation angle (rad, in [0, pi]) between unit quaternions quat and goal (..., 4)."""
    return 2.0 * np.arccos(np.sqrt(np.clip(1.0 - orientation_error(quat, goal), 0.0, 1.0)))


def success_streak(streak, within) -> np.ndarray:
    """The control steps in a row, this one included, within the threshold: streak (...) before
    this step, within (...) bool at it (GoalSettings.within) -> (...) int."""
    return np.where(within, np.asarray(streak) + 1, 0)


def is_success(streak) -> np.ndarray:
    """(...) bool: the task is done, the angle to the goal within the threshold for SUCCESS_HOLD steps in a row."""
    return np.asarray(streak) >= SUCCESS_HOLD


def dropped(pos, start_pos) -> np.ndarray:
    """(...) bool: the object's centre pos (..., 3) m is more than DROP_MARGIN[0] below the start
    height start_pos[..., 2], or more than DROP_MARGIN[1] from OBJECT_XY in the plane."""
    p, s = _vectors(pos, 3, "pos"), _vectors(start_pos, 3, "start_pos")
    below, away = DROP_MARGIN
    return (p[..., 2] < s[..., 2] - below) | (np.linalg.norm(p[..., :2] - OBJECT_XY, axis=-1) > away)


def next_target(target, change) -> np.ndarray:
    """The new joint targets clip(target + change, lower, upper), (..., 16) float32 rad; change: checked
    joint-target changes (GoalSettings.joint_changes). The clip is the hand's joint range, not a correction."""
    lower, upper = _limits()
    return np.clip(np.asarray(target, np.float32) + change, lower, upper).astype(np.float32)


def observation(parts: dict, goal, rgb=None) -> dict:
    """The goal-conditioned observation of a batch of B states: parts holds OBSERVATION_PARTS'
    arrays (B, width); goal (B, 4) the goal quaternions; rgb (B, S, S, 3) uint8 images or None.
    Returns {"observation": (B, 45), "achieved_goal": (B, 4), "desired_goal": (B, 4)[, "rgb"]}, float32."""
    flat = np.concatenate([np.asarray(parts[name], np.float32) for name, *_ in OBSERVATION_PARTS], axis=-1)
    obs = {"observation": flat, "achieved_goal": np.asarray(parts["object_quat"], np.float32).copy(),
           "desired_goal": np.asarray(goal, np.float32).copy()}
    if rgb is not None:
        obs["rgb"] = rgb
    return obs


def observation_parts(vector) -> dict:
    """The named parts of "observation" vectors (..., 45): {name: (..., width)} (views, not copies)."""
    v = np.asarray(vector)
    if v.ndim < 1 or v.shape[-1] != OBSERVATION_SIZE:
        raise ValueError(f"vector: expected the task's observation, shape (..., {OBSERVATION_SIZE}), got {v.shape}")
    parts, start = {}, 0
    for name, width, *_ in OBSERVATION_PARTS:
        parts[name] = v[..., start:start + width]
        start += width
    return parts


def observation_space(image_size: int | None = None) -> gym.spaces.Dict:
    """"observation" (45,) float32 within OBSERVATION_PARTS' bounds; "achieved_goal" and
    "desired_goal" (4,) float32 within +-1; and "rgb" (S, S, 3) uint8 when image_size S is given."""
    lower, upper = joint_limits()
    low = np.concatenate([lower if bound is None else np.full(width, -bound, np.float32)
                          for _, width, _, bound in OBSERVATION_PARTS])
    high = np.concatenate([upper if bound is None else np.full(width, bound, np.float32)
                           for _, width, _, bound in OBSERVATION_PARTS])
    quat = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    spaces = {"observation": gym.spaces.Box(low, high, dtype=np.float32), "achieved_goal": quat,
              "desired_goal": quat}
    if image_size is not None:
        spaces["rgb"] = gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
    return gym.spaces.Dict(spaces)


def check_render_mode(render_mode) -> str | None:
    """render_mode; a ValueError unless it is None, "rgb_array" or "depth_array"."""
    return check_choice(render_mode, "render_mode", (None, "rgb_array", "depth_array"))


@dataclass(frozen=True)
class GoalSettings:
    """The goal-conditioned interface's choices, shared by both plants.

    reward_type: "dense" (-(1 - <q, q*>^2) plus SUCCESS_BONUS within the threshold) or "sparse"
    (0 within the threshold, else -1, as HandManipulate's); rotation_threshold: the angle to the
    goal (rad, in (0, pi]) within which the object counts as there; normalized_actions: actions in
    [-1, 1], scaled by ACTION_BOUND (else joint-target changes in rad within +-ACTION_BOUND)."""

    reward_type: str = "dense"
    rotation_threshold: float = SUCCESS_ANGLE
    normalized_actions: bool = True

    def __post_init__(self):
        check_choice(self.reward_type, "reward_type", REWARD_TYPES)
        check_number(self.rotation_threshold, "rotation_threshold", 0.0, math.pi, "rad", open_low=True)
        check_flag(self.normalized_actions, "normalized_actions")

    @property
    def action_bound(self) -> float:
        """The action space's bound: 1 when normalised, else ACTION_BOUND rad."""
        return 1.0 if self.normalized_actions else ACTION_BOUND

    def action_space(self) -> gym.spaces.Box:
        """16 joint-target changes within +-action_bound."""
        return gym.spaces.Box(-self.action_bound, self.action_bound, (N_JOINTS,), np.float32)

    def joint_changes(self, action, shape: tuple = (N_JOINTS,)) -> np.ndarray:
        """The joint-target changes (rad, float32, `shape`) of an action; a ValueError names
        `action` when its shape is wrong, it holds NaN or inf, or it leaves +-action_bound by more
        than 1e-6 of ACTION_BOUND (it is never clamped)."""
        a = np.asarray(action, dtype=np.float32)
        unit = "normalised joint-target changes" if self.normalized_actions else "joint-target changes (rad)"
        if a.shape != shape:
            raise ValueError(f"action: expected shape {shape} {unit}, got {a.shape}")
        if not np.isfinite(a).all():
            raise ValueError(f"action: expected finite {unit}, got NaN or inf")
        bound = self.action_bound
        if np.abs(a).max() > bound * (1.0 + 1e-6 / ACTION_BOUND):
            j = np.unravel_index(np.argmax(np.abs(a)), a.shape)[-1]
            raise ValueError(f"action: expected {unit} within +-{bound:g}, got {float(np.abs(a).max()):.6g} "
                             f"for joint {j}")
        return (a * np.float32(ACTION_BOUND)).astype(np.float32) if self.normalized_actions else a

    def env_action(self, change) -> np.ndarray:
        """The action (float32) that makes joint-target changes `change` (rad), for planners."""
        change = np.asarray(change, np.float32)
        return change / np.float32(ACTION_BOUND) if self.normalized_actions else change

    def within(self, achieved_goal, desired_goal) -> np.ndarray:
        """(...) bool: the angle between the quaternions (..., 4) is below rotation_threshold."""
        return angle_error(achieved_goal, desired_goal) < self.rotation_threshold

    def reward(self, achieved_goal, desired_goal) -> np.ndarray:
        """The reward (...) float64 of achieved and desired goal quaternions (..., 4) (reward_type's)."""
        within = self.within(achieved_goal, desired_goal)
        if self.reward_type == "sparse":
            return within.astype(np.float64) - 1.0
        return -orientation_error(achieved_goal, desired_goal) + SUCCESS_BONUS * within

    def info(self, achieved_goal, desired_goal, streak, drop) -> dict:
        """The step's info for a batch (B,): is_success (the task's: within the threshold for
        SUCCESS_HOLD steps in a row), within_threshold (at this step), within_0.1_rad
        (HandManipulate's is_success), angle_error (rad), orientation_error (1 - <q, q*>^2),
        dropped."""
        angle = angle_error(achieved_goal, desired_goal)
        return {"is_success": is_success(streak), "within_threshold": angle < self.rotation_threshold,
                "within_0.1_rad": angle < HAND_MANIPULATE_ANGLE, "angle_error": angle,
                "orientation_error": orientation_error(achieved_goal, desired_goal), "dropped": np.asarray(drop, bool)}


class GoalEnvMethods:
    """Gymnasium-Robotics' GoalEnv methods of a single environment with `goal_settings`."""

    goal_settings: GoalSettings

    def compute_reward(self, achieved_goal, desired_goal, info) -> np.ndarray | float:
        """The reward of achieved and desired goal quaternions (..., 4), batched as HER calls it;
        info is not used (the reward depends on the goals alone)."""
        reward = self.goal_settings.reward(achieved_goal, desired_goal)
        return float(reward) if reward.ndim == 0 else reward

    def compute_terminated(self, achieved_goal, desired_goal, info) -> bool | np.ndarray:
        """The episode ends when the object dropped (info["dropped"]), whatever the goals; info a
        dict or a sequence of them."""
        if isinstance(info, dict):
            return bool(info["dropped"])
        return np.array([bool(i["dropped"]) for i in info])

    def compute_truncated(self, achieved_goal, desired_goal, info) -> bool | np.ndarray:
        """Never from the goals: the time limit (MAX_EPISODE_STEPS) is gym.make's TimeLimit."""
        shape = np.shape(achieved_goal)[:-1]
        return np.zeros(shape, bool) if shape else False
