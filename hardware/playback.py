"""Open-loop playback of a planned joint trajectory on the LEAP Hand, real or virtual.

Trajectory file: a NumPy .npz (read with allow_pickle=False) holding
  times          (T,) float, s: when each target is sent, relative to the start; T >= 2,
                 strictly increasing, times[0] >= 0 (the playback starts at times[0])
  joint_targets  (T, 16) float, rad, sim order (cgwm_env.physics.hand.JOINT_NAMES)
Other arrays are ignored. `save_trajectory` writes one.

The whole plan is checked before any motor moves (shape, NaN, joint limits, joint speed between
consecutive targets, increasing times). The hand then moves slowly (approach_speed) from where it
is to the first target and plays the targets at their times: velocity-like position control, as
in the paper's appendix E, where each command is a position at most max_joint_speed * dt from the
previous one (`LeapHand.command` enforces that for every command). Measured joints and frame k
(when a camera is given: the newest camera frame) are read when target k has acted for one step,
right after target k + 1 is sent (one step after the last target for the last frame). Timing
jitter (actual minus planned send time) is logged and returned.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from cgwm_env.checks import read_npz
from cgwm_env.data.camera_model import SoftwareCamera, average_still, prepare_spec
from cgwm_env.data.dataset import camera_to_meta, save_background, save_dataset
from cgwm_env.data.depth import BACKGROUND_DEPTH_FILE, DEPTH_FILE, save_depth
from cgwm_env.data.objects import get_object
from cgwm_env.envs.leap import task as leap_task
from cgwm_env.envs.leap.mujoco_env import scene_spec
from cgwm_env.physics import hand as hand_model
from cgwm_env.physics import hand_mjcf
from cgwm_env.render.camera import Camera
from cgwm_env.render.metrics import psnr
from hardware.realsense import RealSenseError
from hardware.virtual import MujocoMotors

log = logging.getLogger(__name__)
APPROACH_PERIOD = 0.02  # s between commands while moving to the first target


@dataclass(frozen=True)
class Trajectory:
    """times (T,) s; joint_targets (T, 16) rad, sim order (float64 arrays)."""

    times: np.ndarray
    joint_targets: np.ndarray


def validate_trajectory(times, joint_targets, max_joint_speed: float, uniform: bool = False) -> Trajectory:
    """Check a plan and return it as float64 arrays; ValueError names the first problem.

    Checks: times (T,) with T >= 2, finite, times[0] >= 0, strictly increasing (and, if uniform,
    equal steps within 10%, as the dataset format needs); joint_targets (T, 16) finite, within
    the joint limits (cgwm_env.physics.hand.LOWER/UPPER, 1e-6 rad slack) and no joint faster than
    max_joint_speed (rad/s) between consecutive targets.
    """
    times = np.asarray(times, dtype=np.float64)
    q = np.asarray(joint_targets, dtype=np.float64)
    n = hand_mjcf.N_JOINTS
    if times.ndim != 1 or times.shape[0] < 2:
        raise ValueError(f"times: expected shape (T,) with T >= 2 (s), got {times.shape}")
    if q.shape != (times.shape[0], n):
        raise ValueError(f"joint_targets: expected shape ({times.shape[0]}, {n}) (rad, sim order), got {q.shape}")
    if not np.isfinite(times).all():
        raise ValueError(f"times: NaN or inf at step {int(np.nonzero(~np.isfinite(times))[0][0])}")
    bad = ~np.isfinite(q).all(axis=1)
    if bad.any():
        raise ValueError(f"joint_targets: NaN or inf at step {int(np.nonzero(bad)[0][0])}")
    if times[0] < 0:
        raise ValueError(f"times: expected times >= 0 s, got times[0] = {times[0]}")
    dt = np.diff(times)
    if (dt <= 0).any():
        k = int(np.nonzero(dt <= 0)[0][0])
        raise ValueError(f"times: expected strictly increasing times, got {times[k]} then {times[k + 1]} "
                         f"at steps {k}, {k + 1}")
    if uniform and np.abs(dt / dt.mean() - 1.0).max() > 0.1:
        raise ValueError(f"times: a recording needs evenly spaced times (within 10%), got steps of "
                         f"{dt.min():.6g} to {dt.max():.6g} s")
    lower, upper = hand_model.LOWER.double().numpy() - 1e-6, hand_model.UPPER.double().numpy() + 1e-6
    outside = (q < lower) | (q > upper)
    if outside.any():
        k, j = (int(i) for i in np.argwhere(outside)[0])
        raise ValueError(f"joint_targets: step {k}, joint {j} ({hand_mjcf.JOINT_NAMES[j]}) = {q[k, j]:.4f} rad "
                         f"is outside its limits [{lower[j] + 1e-6:.4f}, {upper[j] - 1e-6:.4f}]")
    if not (isinstance(max_joint_speed, (int, float)) and math.isfinite(max_joint_speed) and max_joint_speed > 0):
        raise ValueError(f"max_joint_speed: expected a positive speed (rad/s), got {max_joint_speed!r}")
    speed = np.abs(np.diff(q, axis=0)) / dt[:, None]
    if speed.max() > max_joint_speed:
        k, j = (int(i) for i in np.unravel_index(np.argmax(speed), speed.shape))
        raise ValueError(f"joint_targets: joint {j} ({hand_mjcf.JOINT_NAMES[j]}) moves at {speed[k, j]:.3f} rad/s "
                         f"between steps {k} and {k + 1}, above max_joint_speed = {max_joint_speed} rad/s")
    return Trajectory(times, q)


def load_trajectory(path) -> Trajectory:
    """Read a trajectory .npz (module docstring); shapes and values are checked by validate_trajectory.
    A file that is not such an .npz (empty, truncated, corrupt, a .npy, arrays missing or not
    numbers) raises ValueError naming it."""
    path = Path(path)
    arrays = read_npz(path, "trajectory")
    missing = [k for k in ("times", "joint_targets") if k not in arrays]
    if missing:
        raise ValueError(f"trajectory: {path}: lacks array(s) {', '.join(missing)} (has {sorted(arrays)})")
    for key in ("times", "joint_targets"):
        if arrays[key].dtype.kind not in "fiu":
            raise ValueError(f"trajectory: {path}: {key}: expected numbers, got dtype {arrays[key].dtype}")
    return Trajectory(arrays["times"].astype(np.float64), arrays["joint_targets"].astype(np.float64))


def save_trajectory(path, times, joint_targets) -> Path:
    """Write a trajectory .npz (times (T,) s, joint_targets (T, 16) rad, sim order)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, times=np.asarray(times, np.float64), joint_targets=np.asarray(joint_targets, np.float64))
    return path


@dataclass(frozen=True)
class Still:
    """The empty scene as the camera sees it before a playback: color (H, W, 3) uint8, depth
    (h, w) m on the depth grid (0: none) or None, joint_pos (16,) rad: where the hand was."""

    color: np.ndarray
    depth: np.ndarray | None
    joint_pos: np.ndarray


@dataclass(frozen=True)
class PlaybackResult:
    """What happened, per step k: times (T,) planned s; sent_times (T,) s since the start;
    targets (T, 16) planned rad; commands (T, 16) rad as sent (after the safety clamp);
    measured (T, 16) rad, read at measured_times (T,) s one step after target k was sent, and
    then the newest camera frame: frames (T, H, W, 3) uint8 (or None), depths (T, h, w) m (or
    None), taken at frame_times (T,) s (the camera's timestamps on the playback's clock) with
    the camera's frame_numbers (T,); jitter: send-time error statistics (ms); clamped_steps:
    steps the safety clamp changed; psnr (T,) dB of frames against predicted frames, or None;
    background: the empty scene recorded before the playback (a Still), or None."""

    times: np.ndarray
    sent_times: np.ndarray
    targets: np.ndarray
    commands: np.ndarray
    measured: np.ndarray
    frames: np.ndarray | None
    jitter: dict
    clamped_steps: int
    psnr: np.ndarray | None = None
    measured_times: np.ndarray | None = None
    frame_times: np.ndarray | None = None
    frame_numbers: np.ndarray | None = None
    depths: np.ndarray | None = None
    background: Still | None = None


def jitter_stats(planned: np.ndarray, actual: np.ndarray) -> dict:
    """Send-time error actual - planned (s arrays (T,)) as ms: mean, std, max |error|, p99 |error|."""
    err = (np.asarray(actual) - np.asarray(planned)) * 1e3
    return {"mean_ms": float(err.mean()), "std_ms": float(err.std()), "max_abs_ms": float(np.abs(err).max()),
            "p99_abs_ms": float(np.percentile(np.abs(err), 99))}


def frame_psnr(recorded: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """PSNR (T,) dB between recorded and predicted frames, both (T, H, W, 3) uint8 (inf where equal)."""
    recorded, predicted = np.asarray(recorded), np.asarray(predicted)
    for name, a in (("recorded", recorded), ("predicted", predicted)):
        if a.ndim != 4 or a.shape[-1] != 3 or a.dtype != np.uint8:
            raise ValueError(f"{name}: expected (T, H, W, 3) uint8 frames, got {a.shape} {a.dtype}")
    if recorded.shape != predicted.shape:
        raise ValueError(f"predicted: expected the recorded frames' shape {recorded.shape}, got {predicted.shape}")
    to_float = lambda a: torch.from_numpy(a).double() / 255.0  # noqa: E731
    return psnr(to_float(predicted), to_float(recorded)).numpy()


def _sleep_until(deadline: float) -> None:
    """Sleep to within 0.2 ms of `deadline` (monotonic s), then spin."""
    while (left := deadline - time.monotonic()) > 0:
        if left > 2e-4:
            time.sleep(left - 2e-4)


def _check_predicted(predicted, T: int, size) -> np.ndarray:
    predicted = np.asarray(predicted)
    want = (T, *size, 3) if size else None
    if predicted.ndim != 4 or predicted.shape[0] != T or predicted.shape[-1] != 3 or predicted.dtype != np.uint8 \
            or (want and predicted.shape != want):
        raise ValueError(f"predict_frames: expected ({T}, H, W, 3) uint8 frames"
                         f"{f' with (H, W) = {size}' if size else ''}, got {predicted.shape} {predicted.dtype}")
    return predicted


def play(hand, trajectory: Trajectory, camera=None, predict_frames=None,
         approach_speed: float = 0.5, background=None, time_scale: float = 1.0, on_step=None) -> PlaybackResult:
    """Play `trajectory` open loop on a connected `hardware.dynamixel.LeapHand`.

    camera: a `hardware.realsense.RealSenseCamera` (frames recorded) or None. predict_frames:
    optional callable joint_targets (T, 16) -> (T, H, W, 3) uint8, the world model's frames for
    the plan; called before anything moves, and the result's psnr compares them with the camera's.
    approach_speed: rad/s for the move from the present pose to the first target. background:
    optional callable () -> Still, called once the hand holds the first target, before the
    playback: the empty scene (the object taken away and put back, or hidden in a simulation).
    time_scale: wall-clock seconds per second of the plan, for a virtual plant that runs slower
    than real time (hardware.virtual.MujocoMotors' time_scale); the result's times are the plan's.
    on_step: optional callable(k) after target k was sent and the step before it observed (a
    progress bar's update); it runs inside the timed loop, so it must take microseconds.
    """
    traj = validate_trajectory(trajectory.times, trajectory.joint_targets, hand.config.max_joint_speed)
    T = len(traj.times)
    predicted = None
    if predict_frames is not None:
        if camera is None:
            raise ValueError("predict_frames: comparing with predictions needs a camera")
        predicted = _check_predicted(predict_frames(traj.joint_targets.copy()), T, (camera.height, camera.width))
    if not approach_speed > 0:
        raise ValueError(f"approach_speed: expected a positive speed (rad/s), got {approach_speed!r}")
    _approach(hand, traj.joint_targets[0], approach_speed)
    still = background() if background is not None else None

    if not time_scale > 0:
        raise ValueError(f"time_scale: expected a positive factor, got {time_scale!r}")
    rel = (traj.times - traj.times[0]) * time_scale
    ends = np.append(rel[1:], rel[-1] + (rel[-1] - rel[-2]))  # when each target's step ends
    sent_times, commands, measured = np.empty(T), np.empty((T, hand_mjcf.N_JOINTS)), np.empty((T, hand_mjcf.N_JOINTS))
    seen = _Seen(T)
    start = time.monotonic() + 0.01
    wall_start = time.time() + (start - time.monotonic())  # the camera's timestamps are wall-clock ms
    for k in range(T):
        _sleep_until(start + rel[k])
        sent_times[k] = time.monotonic() - start
        commands[k] = hand.command(traj.joint_targets[k])
        if k:  # after the command, so that commands keep their times
            seen.observe(hand, camera, measured, k - 1, start, wall_start)
        if on_step is not None:
            on_step(k)
    _sleep_until(start + ends[-1])
    seen.observe(hand, camera, measured, T - 1, start, wall_start)
    sent_times /= time_scale
    seen.measured_times /= time_scale
    seen.frame_times /= time_scale
    jitter = jitter_stats(rel / time_scale, sent_times)
    clamped = int((np.abs(commands - traj.joint_targets) > 1e-6).any(axis=1).sum())
    log.info("played %d steps over %.3f s: jitter mean %.3f ms, std %.3f ms, max |.| %.3f ms; %d steps clamped",
             T, ends[-1], jitter["mean_ms"], jitter["std_ms"], jitter["max_abs_ms"], clamped)
    frames = np.stack(seen.frames) if camera is not None else None
    depths = np.stack(seen.depths) if camera is not None and seen.depths[0] is not None else None
    result = PlaybackResult(traj.times, sent_times, traj.joint_targets, commands, measured, frames, jitter, clamped,
                            measured_times=seen.measured_times,
                            frame_times=seen.frame_times if camera is not None else None,
                            frame_numbers=seen.frame_numbers if camera is not None else None,
                            depths=depths, background=still)
    if predicted is not None:
        result = replace(result, psnr=frame_psnr(frames, predicted))
    return result


def _approach(hand, target: np.ndarray, speed: float) -> None:
    """Move from the present pose to `target` at `speed` rad/s (straight line in joint space)."""
    start = hand.read().q
    distance = np.abs(target - start).max()
    steps = max(1, math.ceil(distance / (speed * APPROACH_PERIOD)))
    t0 = time.monotonic()
    for i in range(1, steps + 1):
        _sleep_until(t0 + i * APPROACH_PERIOD)
        hand.command(start + (target - start) * (i / steps))
    for i in range(steps + 1, steps + 11):  # let the motors settle on the first target (0.2 s)
        _sleep_until(t0 + i * APPROACH_PERIOD)
        hand.command(target)


class _Seen:
    """What play records at each step: the joints and when they were read, and the newest camera
    frame with its timestamp (on the playback's clock, s) and frame number."""

    def __init__(self, T: int):
        self.measured_times, self.frame_times = np.empty(T), np.empty(T)
        self.frame_numbers = np.zeros(T, np.int64)
        self.frames, self.depths = [], []

    def observe(self, hand, camera, measured, k: int, start: float, wall_start: float) -> None:
        measured[k] = hand.read().q
        self.measured_times[k] = time.monotonic() - start
        if camera is not None:
            frame = camera.read()
            self.frames.append(frame.color)
            self.depths.append(frame.depth)
            self.frame_times[k] = frame.timestamp / 1000.0 - wall_start
            self.frame_numbers[k] = frame.frame_number


def background_still(camera, hand, frames: int = 8, timeout: float = 2.0) -> Still:
    """A Still of the scene now: the mean of `frames` new colour frames, the median of their
    measured depths (0 where none measured), and the hand's joints."""
    shots, last, deadline = [], None, time.monotonic() + timeout
    while len(shots) < frames:
        frame = camera.read()
        if frame.frame_number != last:
            shots.append(frame)
            last = frame.frame_number
        elif time.monotonic() > deadline:
            raise RealSenseError(f"background: no new camera frame within {timeout} s")
        else:
            time.sleep(0.005)
    depths = None if shots[0].depth is None else [f.depth for f in shots]
    color, depth = average_still([f.color for f in shots], depths)
    return Still(color, depth, np.asarray(hand.read().q, dtype=np.float64))


def save_playback(result: PlaybackResult, path, camera: Camera | None, object_name: str = "unknown",
                  meta: dict | None = None, depth_camera: Camera | None = None, T_color_depth=None) -> Path:
    """Write playback.json (jitter, clamps, tracking error, PSNR) into folder `path` and, with
    frames, the recording as a dataset there (docs/datasets.md, "Recordings"): frames, empty
    masks, states.npz, depth.npz (with depths: on depth_camera's grid, T_color_depth from the
    streams' extrinsics), background.png and background_depth.npz (with a background).
    states.npz: times (the plan's, from 0), joint_pos (the measured joints interpolated to each
    frame's capture time), joint_target (row k: the target held from frame k to frame k + 1,
    which is the plan's k + 1, the last held), and as recorded: joint_measured and
    measured_time, joint_command, sent_time, frame_time (the capture times on the playback's
    clock, s) and frame_number (the camera's; a repeated one is a frame the camera dropped).
    camera: the Camera the frames were taken with (intrinsics and calibrated pose)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    summary = {"steps": int(len(result.times)), "duration_s": float(result.times[-1] - result.times[0]),
               "jitter": result.jitter, "clamped_steps": result.clamped_steps,
               "tracking_error_rad": {"mean": float(np.abs(result.measured - result.targets).mean()),
                                      "max": float(np.abs(result.measured - result.targets).max())},
               "psnr_db": None if result.psnr is None else [float(x) for x in result.psnr], **(meta or {})}
    (path / "playback.json").write_text(json.dumps(summary, indent=1))
    if result.frames is None:
        return path
    if camera is None:
        raise ValueError("camera: recorded frames need the Camera they were taken with")
    fps = 1.0 / float(np.diff(result.times).mean())
    T = len(result.times)
    at_frames = np.stack([np.interp(result.frame_times, result.measured_times, result.measured[:, j])
                          for j in range(hand_mjcf.N_JOINTS)], axis=1)
    states = {"times": result.times - result.times[0], "joint_pos": at_frames,
              "joint_target": result.targets[np.minimum(np.arange(T) + 1, T - 1)],
              "joint_measured": result.measured, "measured_time": result.measured_times,
              "joint_command": result.commands, "sent_time": result.sent_times,
              "frame_time": result.frame_times, "frame_number": result.frame_numbers}
    record = {"scenario": "hand_playback", "object": object_name, "fps": fps, "cameras": [camera_to_meta(camera)],
              "masks_empty": True, **(meta or {})}
    if result.depths is not None:
        record["depth"] = DEPTH_FILE
    if result.background is not None:
        record["background_joint_pos"] = [float(x) for x in result.background.joint_pos]
    save_dataset(path, record, result.frames, np.zeros(result.frames.shape[:3], bool), states)
    if result.depths is not None:
        if depth_camera is None:
            raise ValueError("depth_camera: recorded depth needs the depth stream's Camera")
        save_depth(path / DEPTH_FILE, result.depths, depth_camera, T_color_depth)
    if result.background is not None:
        save_background(path, result.background.color)
        if result.background.depth is not None:
            save_depth(path / BACKGROUND_DEPTH_FILE, result.background.depth, depth_camera, T_color_depth)
    return path


def scene_reference(model, data, camera_name: str, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """What a user records before a playback, from a MuJoCo scene (the virtual plant): the
    camera's view of the empty scene (the object and the hand hidden), (H, W, 3) uint8, and the
    colours (N, 3) in [0, 1] of the hand's Gaussians (cgwm_env.physics.hand.hand_gaussians): each MJCF
    colour of the hand becomes the median colour the camera sees of the hand's geoms that have it
    (the MJCF's own where none is seen)."""
    import mujoco

    _, look = hand_model.hand_gaussians()
    colors = look.colors.numpy().copy()
    obj = model.body("object").id
    hand_geoms = np.flatnonzero((model.geom_bodyid != obj) & (model.geom_bodyid != 0))
    renderer = mujoco.Renderer(model, height, width)
    rgba = model.geom_rgba.copy()
    try:
        renderer.update_scene(data, camera=camera_name)
        view = renderer.render().astype(np.float32) / 255.0
        renderer.enable_segmentation_rendering()
        renderer.update_scene(data, camera=camera_name)
        seg = renderer.render()
        renderer.disable_segmentation_rendering()
        seen = np.where(seg[..., 1] == mujoco.mjtObj.mjOBJ_GEOM, seg[..., 0], -1)
        for color in np.unique(rgba[hand_geoms, :3], axis=0):
            geoms = hand_geoms[np.all(rgba[hand_geoms, :3] == color, axis=1)]
            pixels = view[np.isin(seen, geoms)]
            if len(pixels):
                colors[np.all(np.isclose(colors, color, atol=1e-6), axis=1)] = np.median(pixels, axis=0)
        model.geom_rgba[hand_geoms, 3] = 0.0
        model.geom_rgba[model.geom_bodyid == obj, 3] = 0.0
        renderer.update_scene(data, camera=camera_name)
        empty = renderer.render().copy()
    finally:
        model.geom_rgba[:] = rgba
        renderer.close()
    return empty, colors


def virtual_motors(object_name: str | None, image_size: int, software: SoftwareCamera | None = None,
                   time_scale: float = 1.0):
    """The virtual plant's MuJoCo hand (hardware.virtual.MujocoMotors): the palm-up scene with the
    library object `object_name` (cgwm_env.data.objects; a ValueError names `object` for another
    name) upright on the palm at the task's start, as the MuJoCo twin and `cgwm synth --scenario
    leap` show it (flat lighting), or the scene's own red cube where object_name is None.
    image_size: px, the renderer's buffer. software: dress the scene for that software camera
    (cgwm_env.data.camera_model.prepare_spec); time_scale: MujocoMotors' (wall-clock seconds per
    simulated second)."""
    if object_name is not None:
        obj = get_object(object_name)
        spec = scene_spec(obj, image_size)
        lowest = obj.sample_surface(4000, seed=0)[:, 2].min()
        spec.body("object").pos = (*leap_task.OBJECT_XY, hand_mjcf.PALM_Z + 0.001 - lowest)
    elif software is None:
        return MujocoMotors(time_scale=time_scale)
    else:
        import mujoco

        spec = mujoco.MjSpec.from_file(str(hand_mjcf.SCENE_XML))
        spec.visual.global_.offwidth = max(spec.visual.global_.offwidth, image_size)
        spec.visual.global_.offheight = max(spec.visual.global_.offheight, image_size)
    if software is not None:
        prepare_spec(spec, software, table_geoms=("floor",))
    return MujocoMotors(spec.compile(), time_scale=time_scale)
