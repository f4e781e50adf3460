"""`cgwm bench hardware`: bus rates through the virtual bus and open-loop playback jitter.

Rates: the LeapHand driver (dynamixel-sdk) against `hardware.virtual.VirtualBus` on a pty in the
same process: reads of present current, velocity and position (one group sync read, fast or not),
goal-position writes (one group sync write) and read+write cycles, per second. Jitter: send time
minus planned time of every step of a 2 s (0.5 s with --quick) sinusoidal plan, on the
first-order virtual motors with no camera, and on MuJoCo's hand with the software RealSense
streaming 640x480 renders (what `cgwm play --virtual` runs).
"""

from __future__ import annotations

import json
import platform
import time
from contextlib import ExitStack
from importlib.metadata import version
from pathlib import Path

import numpy as np

from cgwm_env import hand as hand_model
from hardware.dynamixel import HandConfig, LeapHand
from hardware.playback import Trajectory, play
from hardware.virtual import VirtualBus


def _targets(n: int, period: float) -> np.ndarray:
    """(n, 16) rad: every joint swinging 0.1 rad about the middle of its range, 1 Hz."""
    mid = ((hand_model.LOWER + hand_model.UPPER) / 2).double().numpy()
    t = np.arange(n)[:, None] * period
    return mid + 0.1 * np.sin(2 * np.pi * t + np.arange(hand_model.N_JOINTS))


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
            from cgwm_env.camera import from_mujoco
            from hardware.realsense import RealSenseCamera
            from hardware.virtual import VirtualRealSense

            with bus.motors.lock:
                cam = from_mujoco(bus.motors.model, bus.motors.data, "palm_cam", 640, 480)
            source = stack.enter_context(VirtualRealSense(cam, 30))
            source.stream_mujoco(bus.motors)
            rs_camera = stack.enter_context(RealSenseCamera(source.device, 640, 480, 30))
        hand = stack.enter_context(LeapHand(HandConfig(port=bus.port)))
        result = play(hand, trajectory, rs_camera)
    return {"motors": motors, "camera": "virtual D456 640x480@30" if camera else "none", "rate_hz": rate,
            "steps": T, **result.jitter}


def run(out: str | None = None, quick: bool = False) -> dict:
    """Measure, print two tables, write JSON to `out` if given; returns the figures."""
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
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=2))
        print(f"wrote {out}")
    return result
