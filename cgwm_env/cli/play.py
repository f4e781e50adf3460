"""`cgwm play`: a joint trajectory played open loop on the LEAP Hand (or the virtual bus), recorded
and compared with the world model's predicted frames (hardware.playback.play)."""

from __future__ import annotations

import contextlib
import functools
import sys
from dataclasses import replace

import numpy as np

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
    config = load_config(args.config)
    cam_cfg = config.camera
    use_camera = not args.no_camera
    traj = load_trajectory(args.trajectory)
    validate_trajectory(traj.times, traj.joint_targets, config.hand.max_joint_speed, uniform=use_camera)
    hand_config = config.hand if args.port is None else replace(config.hand, port=args.port)
    if use_camera and not args.virtual and args.camera is None:
        raise ValueError("--camera: recording on the real hand needs the camera JSON from `cgwm calibrate` "
                         "(or pass --no-camera)")
    try:
        with _devices(args.virtual, hand_config, cam_cfg, use_camera, args.camera, args.object) as (
                hand_config, rs_camera, camera, reference):
            predict = None
            if camera is not None:
                background, hand_colors = reference
                predict = functools.partial(_predicted_frames, camera=camera, frame_dt=float(traj.times[1] - traj.times[0]),
                                            model_path=args.model, background=background, hand_colors=hand_colors)
            with LeapHand(hand_config) as hand:
                result = play(hand, traj, rs_camera, predict_frames=predict)
    except (HardwareError, RealSenseError) as err:
        print(f"cgwm play: hardware error: {err}", file=sys.stderr)
        raise SystemExit(3) from err
    meta = {"trajectory": str(args.trajectory), "virtual": bool(args.virtual),
            "max_joint_speed": hand_config.max_joint_speed}
    out = save_playback(result, args.out, camera, object_name=args.object, meta=meta)
    j = result.jitter
    err = np.abs(result.measured - result.targets)
    print(f"{'steps':>6} {'seconds':>8} {'jitter mean ms':>15} {'std ms':>7} {'max ms':>7} {'clamped':>8} "
          f"{'track err mean rad':>19} {'max rad':>8}")
    print(f"{len(result.times):6d} {result.times[-1] - result.times[0]:8.3f} {j['mean_ms']:15.3f} {j['std_ms']:7.3f} "
          f"{j['max_abs_ms']:7.3f} {result.clamped_steps:8d} {err.mean():19.4f} {err.max():8.4f}")
    if result.psnr is not None:
        print(f"PSNR of the recorded frames against the world model's: mean {result.psnr.mean():.2f} dB, "
              f"min {result.psnr.min():.2f} dB over {len(result.psnr)} frames")
    print(f"wrote {out}" + (" (dataset and playback.json)" if result.frames is not None else " (playback.json)"))


def _predicted_frames(joint_targets, camera, frame_dt: float, model_path, background=None,
                      hand_colors=None) -> np.ndarray:
    """The world model's frames for the plan (cgwm_env.envs.leap.world_model_env.predict_frames), drawn over
    `background` with the hand in `hand_colors` where given."""
    model = None if model_path is None else WorldModel.load(model_path).model(**hand_scene())
    return predict_frames(joint_targets, camera, frame_dt, model, background, hand_colors)


@contextlib.contextmanager
def _devices(virtual: bool, hand_config, cam_cfg, use_camera: bool, camera_json, object_name: str = "unknown"):
    """(hand settings, RealSenseCamera or None, posed Camera or None, (background, hand colours))
    for a virtual or a real run (scene_reference's for the virtual plant's camera, else Nones);
    the virtual plant holds `object_name` (virtual_motors); the virtual bus and camera, or the
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
