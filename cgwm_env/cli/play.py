"""`cgwm play`: a joint trajectory played open loop on the LEAP Hand (or the virtual bus), recorded
and compared with the world model's predicted frames (hardware.playback.play)."""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import replace

import numpy as np

from cgwm_env import progress
from cgwm_env.data.objects import get_object
from cgwm_env.envs.leap.world_model_env import predict_frames
from cgwm_env.learn.world_model import WorldModel
from cgwm_env.physics.hand import hand_scene
from cgwm_env.render.camera import from_mujoco
from hardware.calibration import load_camera
from hardware.config import load_config
from hardware.dynamixel import HardwareError, LeapHand
from hardware.playback import load_trajectory, play, save_playback, scene_reference, validate_trajectory, virtual_motors
from hardware.realsense import RealSenseCamera, RealSenseError
from hardware.virtual import VirtualBus, VirtualRealSense


def main(args) -> None:
    """`cgwm play`: validate, connect, play, record. Hardware failures print a clear message and
    exit with status 3 (torque is off by then, or the message says it could not be turned off)."""
    _check_flags(args)
    config = load_config(args.config)
    cam_cfg = config.camera
    use_camera = not args.no_camera
    traj = load_trajectory(args.trajectory)
    validate_trajectory(traj.times, traj.joint_targets, config.hand.max_joint_speed, uniform=use_camera)
    hand_config = config.hand if args.port is None else replace(config.hand, port=args.port)
    try:
        with _devices(args.virtual, hand_config, cam_cfg, use_camera, args.camera, args.object) as (
                hand_config, rs_camera, camera, reference):
            predicted = None
            if camera is not None:  # before the hand is connected: the world model takes a while
                background, hand_colors = reference
                predicted = _predicted_frames(traj.joint_targets.copy(), camera,
                                              float(traj.times[1] - traj.times[0]), args.model, background, hand_colors)
            with LeapHand(hand_config) as hand:
                seconds = traj.times[-1] - traj.times[0]
                with progress.bar(len(traj.times), f"play: {seconds:.1f} s on the "
                                  f"{'virtual' if args.virtual else 'real'} hand", unit="step") as bar:
                    result = play(hand, traj, rs_camera, on_step=lambda k: bar.update(),
                                  predict_frames=None if predicted is None else lambda targets: predicted)
    except (HardwareError, RealSenseError) as err:
        print(f"cgwm play: hardware error: {err}", file=sys.stderr)
        raise SystemExit(3) from err
    meta = {"trajectory": str(args.trajectory), "virtual": bool(args.virtual),
            "max_joint_speed": hand_config.max_joint_speed}
    out = save_playback(result, args.out, camera, object_name=args.object or "unknown", meta=meta)
    j = result.jitter
    err = np.abs(result.measured - result.targets)
    progress.say(f"{'steps':>6} {'seconds':>8} {'jitter mean ms':>15} {'std ms':>7} {'max ms':>7} {'clamped':>8} "
                 f"{'track err mean rad':>19} {'max rad':>8}")
    progress.say(f"{len(result.times):6d} {result.times[-1] - result.times[0]:8.3f} {j['mean_ms']:15.3f} "
                 f"{j['std_ms']:7.3f} {j['max_abs_ms']:7.3f} {result.clamped_steps:8d} {err.mean():19.4f} "
                 f"{err.max():8.4f}")
    psnr = (f", PSNR against the world model's frames {result.psnr.mean():.2f} dB mean, {result.psnr.min():.2f} min"
            if result.psnr is not None else "")
    progress.summary(f"play: {len(result.times)} steps, joint tracking error {err.mean():.4f} rad mean, jitter "
                     f"{j['max_abs_ms']:.2f} ms max{psnr} -> {out}"
                     + (" (dataset and playback.json)" if result.frames is not None else " (playback.json)"))


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
        for flag, given in (("--camera", args.camera), ("--model", args.model)):
            if given is not None:
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


@contextlib.contextmanager
def _devices(virtual: bool, hand_config, cam_cfg, use_camera: bool, camera_json, object_name: str | None = None):
    """(hand settings, RealSenseCamera or None, posed Camera or None, (background, hand colours))
    for a virtual or a real run (scene_reference's for the virtual plant's camera, else Nones);
    the virtual plant holds `object_name` (virtual_motors; None: the scene's cube); the virtual bus and camera, or the
    real camera, are closed on leaving."""
    with contextlib.ExitStack() as stack:
        if virtual:
            bus = stack.enter_context(VirtualBus(virtual_motors(object_name, max(cam_cfg.width, cam_cfg.height))))
            hand_config = replace(hand_config, port=bus.port)
            camera = rs_camera = None
            reference = (None, None)
            if use_camera:
                sim = bus.motors
                with sim.lock:
                    camera = from_mujoco(sim.model, sim.data, "palm_cam", cam_cfg.width, cam_cfg.height)
                    reference = scene_reference(sim.model, sim.data, "palm_cam", cam_cfg.width, cam_cfg.height)
                source = stack.enter_context(VirtualRealSense(camera, cam_cfg.fps, cam_cfg.depth))
                source.stream_mujoco(sim, "palm_cam")
                rs_camera = stack.enter_context(RealSenseCamera(source.device, cam_cfg.width, cam_cfg.height,
                                                                cam_cfg.fps, cam_cfg.depth))
        else:
            camera = rs_camera = None
            reference = (None, None)
            if use_camera:
                posed = load_camera(camera_json)
                rs_camera = stack.enter_context(RealSenseCamera(None, cam_cfg.width, cam_cfg.height, cam_cfg.fps,
                                                                cam_cfg.depth))
                camera = rs_camera.camera(posed.T_cw)
                if (camera.width, camera.height) != (posed.width, posed.height):
                    raise ValueError(f"--camera: calibrated at {posed.width}x{posed.height}, streaming "
                                     f"{camera.width}x{camera.height}; calibrate at the streaming size")
        yield hand_config, rs_camera, camera, reference
