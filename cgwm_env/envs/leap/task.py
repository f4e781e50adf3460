"""The on-palm reorientation task of the LEAP Hand (Jin 2024's statement), shared by its two plants
(the world model and the MuJoCo twin), the planners and the benchmarks: its one home.

The hand lies palm-up (hand frame = the world frame of assets/leap_hand/palm_up_scene.xml); an
object starts upright on the palm at OBJECT_XY, turned by a random yaw, and the goal is the same
upright pose turned a further +-90 degrees about +z. The action changes the 16 joint-position
targets (rad, sim order of hand_mjcf.JOINT_NAMES) by at most ACTION_BOUND per control step; the new
target is clipped to the joint range. The orientation error is 1 - <q, q*>^2; an episode succeeds
when the error stays below SUCCESS_THRESHOLD (about 23 degrees) for SUCCESS_HOLD consecutive
control steps within MAX_EPISODE_STEPS; it ends when the object drops. Quaternions are (w, x, y, z).
"""

from __future__ import annotations

import functools
import math

import gymnasium as gym
import numpy as np

from cgwm_env.physics.hand_mjcf import N_JOINTS, mjcf

CONTROL_DT = 1.0 / 30.0  # s per control step
ACTION_BOUND = 0.05  # rad: the largest change of a joint target per control step
MAX_EPISODE_STEPS = 500
SUCCESS_THRESHOLD = 0.04  # on the orientation error 1 - <q, q*>^2 (about 23 degrees)
SUCCESS_HOLD = 20  # consecutive control steps below SUCCESS_THRESHOLD that make a success
SUCCESS_BONUS = 1.0
HOME_Q = np.zeros(N_JOINTS, np.float32)  # rad: the open, flat hand (it does not touch an object on the palm)
OBJECT_XY = np.array([-0.055, 0.035], np.float32)  # m, the object's start on the palm (the scene's cube)
# m: dropped when the centre is this far below its start height, or this far from OBJECT_XY in the plane
DROP_MARGIN = (0.05, 0.08)


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


def success_streak(streak, error) -> np.ndarray:
    """The control steps in a row, this one included, with the orientation error below
    SUCCESS_THRESHOLD: streak (...) before this step, error (...) at it -> (...) int."""
    return np.where(np.asarray(error) < SUCCESS_THRESHOLD, np.asarray(streak) + 1, 0)


def is_success(streak) -> np.ndarray:
    """(...) bool: the task is done, the error below SUCCESS_THRESHOLD for SUCCESS_HOLD steps in a row."""
    return np.asarray(streak) >= SUCCESS_HOLD


def reward(quat, goal) -> np.ndarray:
    """-error + SUCCESS_BONUS where the error is below SUCCESS_THRESHOLD, (...) float64."""
    error = orientation_error(quat, goal)
    return -error + SUCCESS_BONUS * (error < SUCCESS_THRESHOLD)


def dropped(pos, start_pos) -> np.ndarray:
    """(...) bool: the object's centre pos (..., 3) m is more than DROP_MARGIN[0] below the start
    height start_pos[..., 2], or more than DROP_MARGIN[1] from OBJECT_XY in the plane."""
    p, s = _vectors(pos, 3, "pos"), _vectors(start_pos, 3, "start_pos")
    below, away = DROP_MARGIN
    return (p[..., 2] < s[..., 2] - below) | (np.linalg.norm(p[..., :2] - OBJECT_XY, axis=-1) > away)


def observation_space(image_size: int | None = None) -> gym.spaces.Dict:
    """joint_pos, joint_target (16,) rad within the joint range; object_pos (3,) m; object_quat,
    goal_quat (4,); all float32; and rgb (S, S, 3) uint8 when image_size S is given."""
    lower, upper = joint_limits()

    def box(low, high, n):
        return gym.spaces.Box(low, high, (n,), np.float32)

    spaces = {"joint_pos": gym.spaces.Box(lower, upper, dtype=np.float32),
              "joint_target": gym.spaces.Box(lower, upper, dtype=np.float32),
              "object_pos": box(-np.inf, np.inf, 3), "object_quat": box(-1.0, 1.0, 4), "goal_quat": box(-1.0, 1.0, 4)}
    if image_size is not None:
        if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 1:
            raise ValueError(f"image_size: expected a positive integer (px) or None, got {image_size!r}")
        spaces["rgb"] = gym.spaces.Box(0, 255, (int(image_size), int(image_size), 3), np.uint8)
    return gym.spaces.Dict(spaces)


def action_space() -> gym.spaces.Box:
    """Changes of the 16 joint targets, rad per control step, within +-ACTION_BOUND."""
    return gym.spaces.Box(-ACTION_BOUND, ACTION_BOUND, (N_JOINTS,), np.float32)


def check_action(action) -> np.ndarray:
    """The action as (16,) float32; a ValueError names `action` when its shape is wrong, it holds
    NaN or inf, or it leaves +-ACTION_BOUND by more than 1e-6 (it is never clamped)."""
    a = np.asarray(action, dtype=np.float32)
    if a.shape != (N_JOINTS,):
        raise ValueError(f"action: expected shape ({N_JOINTS},) joint-target changes (rad), got {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError("action: expected finite joint-target changes (rad), got NaN or inf")
    if np.abs(a).max() > ACTION_BOUND + 1e-6:
        j = int(np.argmax(np.abs(a)))
        raise ValueError(f"action: expected changes within +-{ACTION_BOUND} rad per step, "
                         f"got {float(a[j]):.6g} for joint {j}")
    return a


def next_target(target, action) -> np.ndarray:
    """The new joint targets clip(target + action, lower, upper), (16,) float32 rad; action must
    already be checked (check_action). The clip is the hand's joint range, not a correction."""
    lower, upper = _limits()
    return np.clip(np.asarray(target, np.float32) + action, lower, upper).astype(np.float32)
