"""`cgwm play`: a joint trajectory played open loop on the LEAP Hand (or the virtual bus), recorded
and compared with the world model's predicted frames (hardware.playback.play)."""

from __future__ import annotations

import contextlib
import functools
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from cgwm_env import progress
from cgwm_env.data.camera_model import SoftwareCamera, calibrated, depth_camera
from cgwm_env.data.objects import get_object
from cgwm_env.envs.leap.world_model_env import predict_frames
from cgwm_env.learn.world_model import WorldModel
from cgwm_env.physics.hand import hand_scene
from cgwm_env.render.camera import from_mujoco
from hardware.calibration import load_camera
from hardware.config import load_config
from hardware.dynamixel import HardwareError, LeapHand
from hardware.playback import (background_still, load_trajectory, play, save_playback, scene_reference,
                               validate_trajectory, virtual_motors)
from hardware.realsense import RealSenseCamera, RealSenseError
from hardware.virtual import VirtualBus, VirtualRealSense


def main(args) -> None:
    """`cgwm play`: validate, connect, play, record. Hardware failures print a clear message and
    exit with status 3 (torque is off by then, or the message says it could not be turned off)."""
    _check_flags(args)
    config = load_config(args.config)
    use_camera = not args.no_camera
    traj = load_trajectory(args.trajectory)
    validate_trajectory(traj.times, traj.joint_targets, config.hand.max_joint_speed, uniform=use_camera)
    hand_config = config.hand if args.port is None else replace(config.hand, port=args.port)
    try:
        with _devices(args.virtual, hand_config, config, use_camera, args.camera, args.object) as rig:
            predicted = None
            if rig.camera is not None and rig.compare:  # before the hand is connected: the world model takes a while
                background, hand_colors = rig.reference
                predicted = _predicted_frames(traj.joint_targets.copy(), rig.camera,
                                              float(traj.times[1] - traj.times[0]), args.model, background, hand_colors)
            with LeapHand(rig.hand_config) as hand:
                still = functools.partial(rig.background, hand) if args.background else None
                seconds = traj.times[-1] - traj.times[0]
                with progress.bar(len(traj.times), f"play: {seconds:.1f} s on the "
                                  f"{'virtual' if args.virtual else 'real'} hand", unit="step") as bar:
                    result = play(hand, traj, rig.rs_camera, background=still, time_scale=rig.time_scale,
                                  on_step=lambda k: bar.update(),
                                  predict_frames=None if predicted is None else lambda targets: predicted)
            truth = rig.truth(result.frame_numbers) if result.frame_numbers is not None else None
    except (HardwareError, RealSenseError) as err:
        print(f"cgwm play: hardware error: {err}", file=sys.stderr)
        raise SystemExit(3) from err
    meta = {"trajectory": str(args.trajectory), "virtual": bool(args.virtual),
            "max_joint_speed": rig.hand_config.max_joint_speed}
    out = save_playback(result, args.out, rig.camera, object_name=args.object or "unknown", meta=meta,
                        depth_camera=rig.depth_camera, T_color_depth=rig.T_color_depth)
    if truth is not None:
        np.savez(truth_file(out), **truth)
    j = result.jitter
    err = np.abs(result.measured - result.targets)
    progress.say(f"{'steps':>6} {'seconds':>8} {'jitter mean ms':>15} {'std ms':>7} {'max ms':>7} {'clamped':>8} "
                 f"{'track err mean rad':>19} {'max rad':>8}")
    progress.say(f"{len(result.times):6d} {result.times[-1] - result.times[0]:8.3f} {j['mean_ms']:15.3f} "
                 f"{j['std_ms']:7.3f} {j['max_abs_ms']:7.3f} {result.clamped_steps:8d} {err.mean():19.4f} "
                 f"{err.max():8.4f}")
    if result.frame_numbers is not None:
        repeated = int((np.diff(result.frame_numbers) == 0).sum())
        if repeated:
            progress.say(f"play: the camera delivered no new frame at {repeated} step(s) (frame_number repeats in "
                         f"states.npz)")
    psnr = (f", PSNR against the world model's frames {result.psnr.mean():.2f} dB mean, {result.psnr.min():.2f} min"
            if result.psnr is not None else "")
    progress.summary(f"play: {len(result.times)} steps, joint tracking error {err.mean():.4f} rad mean, jitter "
                     f"{j['max_abs_ms']:.2f} ms max{psnr} -> {out}"
                     + (" (dataset and playback.json)" if result.frames is not None else " (playback.json)")
                     + (f"; the truth for scoring: {truth_file(out)}" if truth is not None else ""))


def truth_file(recording) -> Path:
    """Where `cgwm play --virtual` with the real-looking camera keeps a recording's truth: beside
    its folder, as <folder>.truth.npz (never read by the pipeline)."""
    recording = Path(recording)
    return recording.with_name(recording.name + ".truth.npz")


def _check_flags(args) -> None:
    """Refuse flags the chosen mode would ignore, and a virtual object that is not in the library."""
    if args.virtual:
        for flag, given in (("--camera", args.camera), ("--port", args.port)):
            if given is not None:
                raise ValueError(f"{flag}: the virtual hand has its own {flag[2:]}; drop {flag} or --virtual")
        if args.object is not None:
            get_object(args.object)
    elif not args.no_camera and args.camera is None:
        raise ValueError("--camera: recording on the real hand needs the camera JSON from `cgwm calibrate` "
                         "(or pass --no-camera)")
    if args.no_camera:
        for flag, given in (("--camera", args.camera), ("--model", args.model), ("--background", args.background)):
            if given not in (None, False):
                raise ValueError(f"{flag}: nothing is recorded with --no-camera; drop one of them")


def _predicted_frames(joint_targets, camera, frame_dt: float, model_path, background=None,
                      hand_colors=None) -> np.ndarray:
    """The world model's frames for the plan (cgwm_env.envs.leap.world_model_env.predict_frames), drawn over
    `background` with the hand in `hand_colors` where given."""
    model = None if model_path is None else WorldModel.load(model_path).model(**hand_scene())
    start = time.perf_counter()
    progress.say(f"play: the world model's {len(joint_targets)} frames ...")
    frames = predict_frames(joint_targets, camera, frame_dt, model, background, hand_colors)
    progress.say(f"play: predicted in {time.perf_counter() - start:.1f} s; playing")
    return frames


@dataclass
class _Rig:
    """What a playback records with: the hand's settings, the RealSenseCamera (or None), the
    posed Camera written to the dataset (or None), (background image, hand colours) for the
    predictions, the depth stream's grid and pose in the colour camera, and how to take the
    empty scene (background(hand) -> Still) and the truth of recorded frames (truth(frame
    numbers) -> arrays, or None where there is no truth); compare: compare the recording with
    the world model's predicted frames (not for the real-looking software camera, whose light the
    flat-coloured model does not have); time_scale: the virtual plant's (wall-clock seconds per
    simulated second)."""

    hand_config: object
    rs_camera: object = None
    camera: object = None
    reference: tuple = (None, None)
    depth_camera: object = None
    T_color_depth: object = None
    background: object = None
    truth: object = lambda numbers: None  # noqa: E731
    compare: bool = True
    time_scale: float = 1.0


@contextlib.contextmanager
def _devices(virtual: bool, hand_config, config, use_camera: bool, camera_json, object_name: str | None = None):
    """A _Rig for a virtual or a real run; the virtual plant holds `object_name`
    (virtual_motors; None: the scene's cube) and is seen flat or through a SoftwareCamera
    (config.virtual.camera); the virtual bus and camera, or the real camera, are closed on leaving."""
    cam_cfg = config.camera
    with contextlib.ExitStack() as stack:
        if virtual:
            settings = config.virtual
            software = None
            depth_size = None if cam_cfg.depth_width is None else (cam_cfg.depth_width, cam_cfg.depth_height)
            if settings.camera == "real":
                software = SoftwareCamera(seed=settings.seed, **({} if depth_size is None else {
                    "depth_width": depth_size[0]}))
                depth_size = software.depth_size
            size = max(cam_cfg.width, cam_cfg.height, *(depth_size or ()))
            bus = stack.enter_context(VirtualBus(virtual_motors(object_name, size, software, settings.time_scale)))
            rig = _Rig(replace(hand_config, port=bus.port), time_scale=settings.time_scale)
            if use_camera:
                sim = bus.motors
                with sim.lock:
                    truth_camera = from_mujoco(sim.model, sim.data, "palm_cam", cam_cfg.width, cam_cfg.height)
                    if software is None:
                        rig.reference = scene_reference(sim.model, sim.data, "palm_cam", cam_cfg.width, cam_cfg.height)
                rig.camera = truth_camera
                kwargs = {}
                if software is not None:
                    rig.camera, rig.compare = calibrated(truth_camera, software), False
                    if cam_cfg.depth:
                        rig.depth_camera, rig.T_color_depth = depth_camera(truth_camera, software.model,
                                                                           *software.depth_size)
                        kwargs = {"depth_camera": rig.depth_camera, "T_color_depth": rig.T_color_depth}
                elif cam_cfg.depth:
                    rig.depth_camera = truth_camera
                source = stack.enter_context(VirtualRealSense(truth_camera, cam_cfg.fps, cam_cfg.depth, **kwargs))
                source.stream_mujoco(sim, "palm_cam", software, settings.drop_frames,
                                     settings.clock * settings.time_scale)
                rig.rs_camera = stack.enter_context(RealSenseCamera(source.device, cam_cfg.width, cam_cfg.height,
                                                                    cam_cfg.fps, cam_cfg.depth,
                                                                    depth_size=depth_size))
                rig.background = functools.partial(_hidden_object_still, sim, rig.rs_camera)
                if software is not None:
                    rig.truth = functools.partial(_virtual_truth, source, truth_camera)
        else:
            rig = _Rig(hand_config)
            if use_camera:
                posed = load_camera(camera_json)
                depth_size = None if cam_cfg.depth_width is None else (cam_cfg.depth_width, cam_cfg.depth_height)
                rig.rs_camera = stack.enter_context(RealSenseCamera(None, cam_cfg.width, cam_cfg.height, cam_cfg.fps,
                                                                    cam_cfg.depth, depth_size=depth_size))
                rig.camera = rig.rs_camera.camera(posed.T_cw)
                if (rig.camera.width, rig.camera.height) != (posed.width, posed.height):
                    raise ValueError(f"--camera: calibrated at {posed.width}x{posed.height}, streaming "
                                     f"{rig.camera.width}x{rig.camera.height}; calibrate at the streaming size")
                rig.depth_camera, rig.T_color_depth = rig.rs_camera.depth_camera(), rig.rs_camera.T_color_depth
                rig.background = functools.partial(_asked_still, rig.rs_camera)
        yield rig


def _hidden_object_still(sim, rs_camera, hand):
    """The virtual plant's empty scene: its object made invisible while the camera takes a Still."""
    geoms = sim.model.geom_bodyid == sim.model.body("object").id
    with sim.lock:
        alpha = sim.model.geom_rgba[geoms, 3].copy()
        sim.model.geom_rgba[geoms, 3] = 0.0
    settle = 3.0 / rs_camera.fps * sim.time_scale  # s: frames rendered before a change are still on their way
    try:
        time.sleep(settle)
        return background_still(rs_camera, hand)
    finally:
        with sim.lock:
            sim.model.geom_rgba[geoms, 3] = alpha
        time.sleep(settle)


def _asked_still(rs_camera, hand):
    """The real scene without the object: the user takes it away, the camera takes a Still, the
    user puts it back."""
    input("cgwm play: take the object off the hand (leave the hand as it is), then press Enter ")
    still = background_still(rs_camera, hand)
    input("cgwm play: put the object back on the hand, then press Enter to play ")
    return still


def _virtual_truth(source: VirtualRealSense, camera, numbers) -> dict:
    """The virtual scene's truth at the recorded frame numbers: masks and hand masks (T, H, W),
    the object's poses (T, 3), (T, 4), the camera's true T_cw (4, 4)."""
    rows = [source.truth[int(n)] for n in numbers]
    return {"masks": np.stack([r["mask"] for r in rows]), "hand_masks": np.stack([r["hand_mask"] for r in rows]),
            "object_pos": np.stack([r["object_pos"] for r in rows]),
            "object_quat": np.stack([r["object_quat"] for r in rows]), "T_cw": camera.T_cw.double().numpy()}
