"""`cgwm bench hardware`: bus rates through the virtual bus and open-loop playback jitter.

Rates: the LeapHand driver (dynamixel-sdk) against `hardware.virtual.VirtualBus` on a pty in the
same process: reads of present current, velocity and position (one group sync read, fast or not),
goal-position writes (one group sync write) and read+write cycles, per second. Jitter: send time
minus planned time of every step of a 2 s (0.5 s with --quick) sinusoidal plan, on the
first-order virtual motors with no camera, and on MuJoCo's hand with the software RealSense
streaming 640x480 renders (what `cgwm play --virtual` runs). Playback PSNR (the paper's Table
IV on the virtual plant): MPC plans turning the cube by +90 and -90 degrees, made on the learned
cube (assets/world_models/cube, the default) and played open loop, the recorded frames against the
frames predicted by that model, by its No_opt (the parameters and Gaussians learning started
from) and by the hand-made cube (envs.leap.world_model_env.handmade_cube_model), all drawn over the camera's view of
the empty scene with the hand coloured from it (playback.scene_reference).
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform
import time
from contextlib import ExitStack
from importlib.metadata import version
from pathlib import Path

import numpy as np

from cgwm_env import progress
from cgwm_env.bench.mpc import WORLD_MODELS
from cgwm_env.envs.leap.world_model_env import PredictionDiverged, handmade_cube_model, predict_frames
from cgwm_env.learn.world_model import WorldModel
from cgwm_env.physics import hand as hand_model
from cgwm_env.physics import hand_mjcf
from cgwm_env.physics.hand import hand_scene
from cgwm_env.render.camera import from_mujoco
from controllers.mpc import ReorientationMPC, load_settings
from controllers.tasks import world_model_plan
from hardware.dynamixel import HandConfig, LeapHand
from hardware.playback import Trajectory, frame_psnr, play, scene_reference, virtual_motors
from hardware.realsense import RealSenseCamera
from hardware.virtual import VirtualBus, VirtualRealSense


def _targets(n: int, period: float) -> np.ndarray:
    """(n, 16) rad: every joint swinging 0.1 rad about the middle of its range, 1 Hz."""
    mid = ((hand_model.LOWER + hand_model.UPPER) / 2).double().numpy()
    t = np.arange(n)[:, None] * period
    return mid + 0.1 * np.sin(2 * np.pi * t + np.arange(hand_mjcf.N_JOINTS))


def _rates(motors: str, fast: bool, n: int) -> dict:
    with VirtualBus(motors) as bus, LeapHand(HandConfig(port=bus.port, fast_read=fast)) as hand:
        targets = _targets(n, 0.001)
        start = time.perf_counter()
        for _ in range(n):
            hand.read()
        read = time.perf_counter() - start
        start = time.perf_counter()
        for k in range(n):
            hand.command(targets[k])
        write = time.perf_counter() - start
        start = time.perf_counter()
        for k in range(n):
            hand.read()
            hand.command(targets[k])
        cycle = time.perf_counter() - start
    return {"motors": motors, "read": "fast sync read" if fast else "sync read", "repeats": n,
            "read_hz": n / read, "write_hz": n / write, "cycle_hz": n / cycle}


def _jitter(motors: str, rate: float, seconds: float, camera: bool) -> dict:
    T = int(seconds * rate)
    trajectory = Trajectory(np.arange(T) / rate, _targets(T, 1.0 / rate))
    with ExitStack() as stack:
        bus = stack.enter_context(VirtualBus(motors))
        rs_camera = None
        if camera:
            with bus.motors.lock:
                cam = from_mujoco(bus.motors.model, bus.motors.data, "palm_cam", 640, 480)
            source = stack.enter_context(VirtualRealSense(cam, 30))
            source.stream_mujoco(bus.motors)
            rs_camera = stack.enter_context(RealSenseCamera(source.device, 640, 480, 30))
        hand = stack.enter_context(LeapHand(HandConfig(port=bus.port)))
        result = play(hand, trajectory, rs_camera)
    return {"motors": motors, "camera": "virtual D456 640x480@30" if camera else "none", "rate_hz": rate,
            "steps": T, **result.jitter}


def playback_psnr(model_dir, object_name: str = "cube", width: int = 160, height: int = 120,
                  frames: int = 240, turn: float = 90.0) -> dict:
    """Per-model PSNR (dB, mean and min over the frames) of the virtual plant's recording of an
    open-loop plan against the frames predicted for it by the world model `model_dir` ("learned"),
    by its No_opt (the parameters and Gaussians learning started from) and by the hand-made cube,
    each over the empty scene with the hand coloured from it; a model whose prediction diverges is
    not scored ({"diverged_at_frame": k}). The plan: `frames` control steps
    (30 Hz) of the MPC (MPCSettings()) turning the object by `turn` degrees about +z, planned
    in closed loop on the learned model itself (controllers.tasks.world_model_plan), played on
    the virtual plant with `object_name` on the palm (playback.virtual_motors)."""
    wm = WorldModel.load(model_dir)
    if wm.initial_params is None:
        raise ValueError(f"model_dir: {model_dir} holds no initial parameters (a learned bundle has them)")
    scene = hand_scene()
    initial_g = wm.gaussians if wm.initial_gaussians is None else wm.initial_gaussians
    models = {"learned": wm.model(**scene), "No_opt": wm.model(params=wm.initial_params, gaussians=initial_g, **scene),
              "hand-made": dataclasses.replace(handmade_cube_model(), **scene)}
    planner = ReorientationMPC(models["learned"], load_settings()[0])
    targets = world_model_plan(models["learned"], planner, frames - 1, math.radians(turn))
    trajectory = Trajectory(np.arange(frames) / 30.0, targets)
    with ExitStack() as stack:
        bus = stack.enter_context(VirtualBus(virtual_motors(object_name, max(width, height))))
        with bus.motors.lock:
            cam = from_mujoco(bus.motors.model, bus.motors.data, "palm_cam", width, height)
            background, colors = scene_reference(bus.motors.model, bus.motors.data, "palm_cam", width, height)
        source = stack.enter_context(VirtualRealSense(cam, 30))
        source.stream_mujoco(bus.motors)
        rs_camera = stack.enter_context(RealSenseCamera(source.device, width, height, 30))
        hand = stack.enter_context(LeapHand(HandConfig(port=bus.port)))
        recorded = play(hand, trajectory, rs_camera).frames
    rows = {}
    for name, model in models.items():
        try:
            predicted = predict_frames(trajectory.joint_targets, cam, 1.0 / 30.0, model, background, colors)
        except PredictionDiverged as err:  # unstable parameters under this plan: no score, and said so
            rows[name] = {"diverged_at_frame": err.frame}
            continue
        psnr = frame_psnr(recorded, predicted)
        rows[name] = {"mean_db": float(psnr.mean()), "min_db": float(psnr.min())}
    return {"model": str(model_dir), "object": object_name, "size": [width, height], "frames": frames, "turn_deg": turn,
            "plan": "MPC, planned on the learned model", "psnr": rows}


def run(out: str | None = None, quick: bool = False) -> dict:
    """Measure, print three tables, write JSON to `out` if given; returns the figures."""
    n = 200 if quick else 1000
    seconds = 0.5 if quick else 2.0
    rates = [_rates("first_order", True, n), _rates("first_order", False, n), _rates("mujoco", True, n)]
    jitter = [_jitter("first_order", 30.0, seconds, False), _jitter("first_order", 100.0, seconds, False),
              _jitter("mujoco", 30.0, seconds, True)]
    print(f"{'motors':<12} {'read':<15} {'read Hz':>8} {'write Hz':>9} {'read+write Hz':>14}")
    for r in rates:
        print(f"{r['motors']:<12} {r['read']:<15} {r['read_hz']:8.0f} {r['write_hz']:9.0f} {r['cycle_hz']:14.0f}")
    print()
    print(f"{'motors':<12} {'camera':<24} {'rate Hz':>7} {'steps':>6} {'mean ms':>8} {'std ms':>7} "
          f"{'p99 |.| ms':>10} {'max |.| ms':>10}")
    for j in jitter:
        print(f"{j['motors']:<12} {j['camera']:<24} {j['rate_hz']:7.0f} {j['steps']:6d} {j['mean_ms']:8.3f} "
              f"{j['std_ms']:7.3f} {j['p99_abs_ms']:10.3f} {j['max_abs_ms']:10.3f}")
    result = {"machine": platform.processor() or platform.machine(), "python": platform.python_version(),
              "dynamixel_sdk": version("dynamixel-sdk"), "quick": quick, "rates": rates, "jitter": jitter}

    learned_cube = WORLD_MODELS / "cube"
    frames = 20 if quick else 240
    progress.say(f"bench hardware: {learned_cube.name}'s MPC plans of +-90 degrees played on the virtual plant, "
                 f"{frames} frames each ...")
    result["playback_psnr"] = [playback_psnr(learned_cube, frames=frames, turn=turn) for turn in (90.0, -90.0)]
    print(f"\n{'turn deg':<12} {'world model':<12} {'PSNR mean dB':>12} {'min dB':>7}   (virtual plant, {frames} frames "
          f"at 160x120, planned on {learned_cube.name})")
    for psnr in result["playback_psnr"]:
        for name, row in psnr["psnr"].items():
            if "diverged_at_frame" in row:
                print(f"{psnr['turn_deg']:<+12.0f} {name:<12} diverged at frame {row['diverged_at_frame']}")
            else:
                print(f"{psnr['turn_deg']:<+12.0f} {name:<12} {row['mean_db']:12.2f} {row['min_db']:7.2f}")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=2))
        print(f"wrote {out}")
    return result
