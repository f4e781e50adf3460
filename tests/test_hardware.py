"""The hardware layer against the virtual bus (dynamixel-sdk over a pty), the software RealSense,
ArUco calibration on a synthetic image, and open-loop playback."""

import json
import math
import os
import signal
import threading
import time

import cv2
import numpy as np
import pytest
import torch
import yaml

from cgwm_env.cli import main
from cgwm_env.data.dataset import load_dataset
from cgwm_env.physics.hand import LOWER, UPPER
from cgwm_env.render.camera import Camera, from_mujoco, look_at
from hardware import dynamixel as dx
from hardware.calibration import MarkerLayout, estimate_camera_pose, load_camera, opencv_matrix
from hardware.config import load_config
from hardware.dynamixel import CommunicationError, HandConfig, LeapHand, MotorHardwareError
from hardware.playback import Trajectory, frame_psnr, load_trajectory, play, save_trajectory, validate_trajectory
from hardware.realsense import RealSenseCamera, RealSenseError, find_device, record
from hardware.virtual import OVERLOAD, VirtualBus, VirtualRealSense, crc16, stuff, unstuff

# From the LEAP Hand facts: sim joint j (mcp, rot, pip, dip per finger) drives motor ID MOTOR_OF_JOINT[j].
MOTOR_OF_JOINT = (1, 0, 2, 3, 5, 4, 6, 7, 9, 8, 10, 11, 12, 13, 14, 15)
MID = ((LOWER + UPPER) / 2).double().numpy()


def fast(**kwargs) -> dict:
    """Settings for quick failures in tests."""
    return {"retries": 1, "retry_delay": 0.0, "reconnect_timeout": 0.5, **kwargs}


def sync_writes(bus: VirtualBus, address: int) -> list[dict]:
    """Decoded sync writes (0x83) to `address`: a list of {ID: value}, oldest first."""
    bus.settle()
    out = []
    for inst in bus.log:
        if inst.instruction == 0x83 and int.from_bytes(inst.params[:2], "little") == address:
            size = int.from_bytes(inst.params[2:4], "little")
            rows = [inst.params[k:k + 1 + size] for k in range(4, len(inst.params), size + 1)]
            out.append({r[0]: int.from_bytes(r[1:], "little", signed=True) for r in rows})
    return out


def all_torque(bus: VirtualBus) -> list[bool]:
    return [bus.torque_enabled(i) for i in range(16)]


# ----------------------------------------------------------------------------- protocol


def test_crc_and_byte_stuffing():
    # A Protocol 2.0 ping to ID 1 as dynamixel-sdk sends it: ff ff fd 00 01 03 00 01 19 4e.
    assert crc16(bytes.fromhex("fffffd0001030001")) == 0x4E19
    from dynamixel_sdk import PacketHandler

    data = np.random.default_rng(0).integers(0, 256, 300).astype(np.uint8).tolist()
    assert crc16(bytes(data)) == PacketHandler(2.0).updateCRC(0, data, len(data))  # the SDK's table
    body = bytes([0x55, 0x00, 0xFF, 0xFF, 0xFD, 0x07, 0xFF, 0xFF, 0xFD, 0xFD])
    assert stuff(body) == bytes([0x55, 0x00, 0xFF, 0xFF, 0xFD, 0xFD, 0x07, 0xFF, 0xFF, 0xFD, 0xFD, 0xFD])
    assert unstuff(stuff(body)) == body
    # A motor answers an instruction whose CRC is wrong with a status packet carrying error 3.
    import serial

    with VirtualBus() as bus, serial.Serial(bus.port, 4_000_000, timeout=1.0) as port:
        port.write(bytes.fromhex("fffffd0001030001194f"))  # a ping to ID 1, CRC off by one
        reply = port.read(11)
        assert reply[:9] == bytes.fromhex("fffffd0001040055") + bytes([3])  # ID 1, status, CRC error
        assert int.from_bytes(reply[9:], "little") == crc16(reply[:9]) and bus.bad_packets == 1
        port.write(bytes.fromhex("fffffd0001030001194e"))  # the same ping, right
        reply = port.read(14)
        assert reply[8] == 0 and int.from_bytes(reply[9:11], "little") == 1240  # no error, model number (XC330-M288)


def test_connect_configures_the_motors_and_maps_goals_to_ticks():
    q = LOWER.double().numpy() + (UPPER - LOWER).double().numpy() * np.linspace(0.1, 0.9, 16)
    with VirtualBus() as bus:
        with LeapHand(HandConfig(port=bus.port, max_joint_speed=100.0, max_command_gap=1.0)) as hand:
            assert hand.fast_read
            assert sync_writes(bus, 11) == [{i: 5 for i in range(16)}]  # current-based position mode
            side = {0, 4, 8}
            assert sync_writes(bus, 84) == [{i: 450 if i in side else 600 for i in range(16)}]  # P
            assert sync_writes(bus, 82) == [{i: 0 for i in range(16)}]  # I
            assert sync_writes(bus, 80) == [{i: 150 if i in side else 200 for i in range(16)}]  # D
            assert sync_writes(bus, 102) == [{i: 350 for i in range(16)}]  # goal current, 1 mA units
            assert sync_writes(bus, 64) == [{i: 0 for i in range(16)}, {i: 1 for i in range(16)}]  # off, then on
            assert sync_writes(bus, 116) == [{i: 2048 for i in range(16)}]  # hold the present (flat) pose
            mode = next(i for i in bus.log if i.instruction == 0x83 and i.params[:2] == b"\x0b\x00")
            assert mode.raw[:8] == bytes.fromhex("fffffd00fe270083")  # broadcast, length 39, sync write
            assert mode.raw[8:12] == bytes.fromhex("0b000100")  # address 11, 1 byte per motor
            assert mode.raw[12:44] == bytes(b for i in range(16) for b in (i, 5))
            assert int.from_bytes(mode.raw[-2:], "little") == crc16(mode.raw[:-2])
            assert all(all_torque(bus))

            sent = hand.command(q)
            np.testing.assert_allclose(sent, q)
            expected = {MOTOR_OF_JOINT[j]: round((q[j] + math.pi) * 4096 / (2 * math.pi)) for j in range(16)}
            assert sync_writes(bus, 116)[-1] == expected
            time.sleep(0.3)  # ten time constants of the first-order motors
            state = hand.read()
            np.testing.assert_allclose(state.q, q, atol=2 * 2 * math.pi / 4096)
            assert np.abs(state.dq).max() < 0.05 and state.current.shape == (16,)
        assert not any(all_torque(bus))


class SlowReverse:
    """Motors creeping backwards (-1 velocity unit) at tick 2045: the reply bytes FF FF FF FF FD 07
    hold FF FF FD, which a sync read's status packets byte-stuff (a fast sync read's are not)."""

    def set_goal(self, motor, ticks):
        pass

    def set_torque(self, motor, on):
        pass

    def advance(self, now):
        pass

    def present(self, motor):
        return -3, -1, 2045


@pytest.mark.parametrize("firmware_fast, fast_read", [(True, True), (False, False)])
def test_reads_decode_stuffed_replies_and_fall_back_without_fast_sync_read(firmware_fast, fast_read):
    with VirtualBus(SlowReverse(), fast_sync_read=firmware_fast) as bus, LeapHand(HandConfig(port=bus.port)) as hand:
        assert hand.fast_read == fast_read
        assert any(i.instruction == 0x8A for i in bus.log)  # fast sync read was tried
        state = hand.read()
        np.testing.assert_allclose(state.q, 2045 * 2 * math.pi / 4096 - math.pi)
        np.testing.assert_allclose(state.dq, -0.229 * 2 * math.pi / 60)
        np.testing.assert_allclose(state.current, -3e-3)  # 1.0 mA per unit (XC330 control table)


def test_commands_are_clamped_to_limits_and_speed_and_bad_ones_refused():
    with VirtualBus() as bus, LeapHand(HandConfig(port=bus.port, max_joint_speed=5.0, max_command_gap=0.02)) as hand:
        time.sleep(0.1)
        sent = hand.command(np.full(16, 10.0))  # beyond every upper limit, and far away
        np.testing.assert_allclose(sent, 0.1, atol=1e-9)  # 5 rad/s for at most 0.02 s from the flat pose
        for _ in range(30):
            time.sleep(0.02)
            sent = hand.command(np.full(16, 10.0))
        np.testing.assert_allclose(sent, UPPER.double().numpy())  # then held at the limits
        writes = len(sync_writes(bus, 116))
        with pytest.raises(ValueError, match="q: expected finite"):
            hand.command(np.full(16, np.nan))
        with pytest.raises(ValueError, match=r"q: expected shape \(16,\)"):
            hand.command(np.zeros(15))
        assert len(sync_writes(bus, 116)) == writes


# ----------------------------------------------------------------------------- faults


def test_a_motor_that_does_not_answer_stops_the_hand():
    with VirtualBus() as bus:
        with pytest.raises(CommunicationError) as err:
            with LeapHand(HandConfig(port=bus.port, **fast())) as hand:
                bus.silent.add(5)
                hand.read()
        message = str(err.value)
        assert "read present state failed after 2 tries" in message
        assert "motor 5 (There is no status packet!)" in message
        assert "NOT confirmed (motors [5] do not answer)" in message
        assert not any(all_torque(bus))  # the broadcast torque off reached motor 5 too
        bus.silent.add(9)
        with pytest.raises(CommunicationError, match=r"motors \[5, 9\] do not answer a ping"):
            LeapHand(HandConfig(port=bus.port, **fast())).connect()
        assert not any(all_torque(bus))


def test_crc_errors_are_retried_then_stop_the_hand():
    with VirtualBus() as bus:
        with LeapHand(HandConfig(port=bus.port, retries=3, retry_delay=0.0)) as hand:
            bus.settle()
            reads = sum(i.instruction == 0x8A for i in bus.log)
            bus.bad_crc_count = 2  # two corrupt replies, then good ones
            hand.read()
            bus.settle()
            assert sum(i.instruction == 0x8A for i in bus.log) == reads + 3
            assert all(all_torque(bus))
        with pytest.raises(CommunicationError) as err:
            with LeapHand(HandConfig(port=bus.port, **fast())) as hand:
                bus.bad_crc.add(3)
                hand.read()
        assert "Incorrect status packet" in str(err.value) and "motor 3 (Incorrect status packet!)" in str(err.value)
        assert not any(all_torque(bus))


def test_a_hardware_error_is_reported_by_motor_and_stops_the_hand():
    with VirtualBus() as bus:
        with pytest.raises(MotorHardwareError) as err:
            # the hand's default 3 retries: on a loaded machine a read-back reply can miss its packet timeout
            with LeapHand(HandConfig(port=bus.port, **fast(retries=3))) as hand:
                hand.read()
                bus.set_hardware_error(5, OVERLOAD)
                hand.read()
        assert err.value.status == {5: OVERLOAD}
        assert "motor 5: overload (status 0x20)" in str(err.value) and "torque is off on all motors" in str(err.value)
        assert not any(all_torque(bus))


def test_a_port_that_disappears_gives_a_clear_error():
    with VirtualBus() as bus:
        # Back after 0.3 s (a USB adapter re-enumerating): the safe stop reopens it and turns torque off.
        with pytest.raises(CommunicationError) as err:
            with LeapHand(HandConfig(port=bus.port, **fast(reconnect_timeout=3.0))) as hand:
                bus.unplug()
                threading.Timer(0.3, bus.replug).start()
                hand.read()
        assert f"port {bus.port}" in str(err.value) and "torque is off on all motors" in str(err.value)
        assert not any(all_torque(bus))
        # Gone for good: torque cannot be turned off, and the error says so.
        with pytest.raises(CommunicationError) as err:
            with LeapHand(HandConfig(port=bus.port, **fast(reconnect_timeout=0.2))) as hand:
                bus.unplug()
                hand.read()
        assert "torque could NOT be turned off" in str(err.value) and "cut the motors' power" in str(err.value)
        assert all(all_torque(bus))  # the motors are powered and unreachable: they hold
    with pytest.raises(CommunicationError, match="cannot open it"):
        LeapHand(HandConfig(port="/nonexistent/ttyUSB9")).connect()


def test_sigint_turns_torque_off():
    handler = signal.getsignal(signal.SIGINT)
    with VirtualBus() as bus:
        with pytest.raises(KeyboardInterrupt):
            with LeapHand(HandConfig(port=bus.port)) as hand:
                assert all(all_torque(bus))
                threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGINT)).start()
                deadline = time.monotonic() + 5.0
                while time.monotonic() < deadline:  # busy with the bus when the signal comes
                    hand.read()
                    hand.command(np.zeros(16))
        assert not any(all_torque(bus))
    assert signal.getsignal(signal.SIGINT) is handler


# ----------------------------------------------------------------------------- playback


def test_bad_trajectories_are_refused_before_any_motor_moves(tmp_path):
    t = np.arange(10) / 30.0
    good = np.tile(MID, (10, 1))
    cases = {
        "times: expected shape": (t[:, None], good),
        "joint_targets: expected shape": (t, good[:, :15]),
        "joint_targets: NaN or inf at step 4": (t, np.where(np.arange(10)[:, None] == 4, np.nan, good)),
        r"joint_targets: step 0, joint 0 \(if_mcp\) = 2.5000 rad is outside": (t, np.where(
            np.arange(16) == 0, 2.5, good)),
        r"joint_targets: joint 2 \(if_pip\) moves at 6.000 rad/s between steps 4 and 5": (t, good + np.where(
            (np.arange(10)[:, None] >= 5) & (np.arange(16) == 2), 0.2, 0.0)),
        "times: expected strictly increasing": (np.r_[t[:5], t[4:9]], good),
        "times: expected times >= 0": (t - 0.1, good),
    }
    with VirtualBus() as bus, LeapHand(HandConfig(port=bus.port)) as hand:
        goals = len(sync_writes(bus, 116))
        for message, (times, targets) in cases.items():
            with pytest.raises(ValueError, match=message):
                play(hand, Trajectory(times, targets))
        with pytest.raises(ValueError, match="predict_frames: expected"):
            play(hand, Trajectory(t, good), camera=_FakeCamera(), predict_frames=lambda q: np.zeros((10, 4, 4, 3)))
        assert len(sync_writes(bus, 116)) == goals  # nothing moved
    save_trajectory(tmp_path / "fast.npz", *cases[r"joint_targets: joint 2 \(if_pip\) moves at 6.000 rad/s between "
                                                   "steps 4 and 5"])
    assert main(["play", "--trajectory", str(tmp_path / "fast.npz"), "--virtual", "--no-camera"]) == 2
    np.savez(tmp_path / "pickled.npz", times=t, joint_targets=np.array([good, None], dtype=object))
    with pytest.raises(ValueError, match="without pickles"):
        load_trajectory(tmp_path / "pickled.npz")
    with pytest.raises(ValueError, match="times: a recording needs evenly spaced times"):
        validate_trajectory(np.r_[t[:5], t[5:] + 0.02], good, 3.0, uniform=True)


class _FakeCamera:
    height, width = 48, 64


def test_playback_on_the_virtual_bus_follows_the_plan():
    rate, T = 50.0, 25
    times = 0.2 + np.arange(T) / rate
    targets = np.tile(0.3 * np.sin(np.pi * np.arange(T) / T)[:, None], (1, 16))  # from the flat pose
    with VirtualBus() as bus, LeapHand(HandConfig(port=bus.port)) as hand:
        steps = []
        result = play(hand, Trajectory(times, targets), on_step=steps.append)
        sent = sync_writes(bus, 116)[-T:]
    assert result.clamped_steps == 0 and steps == list(range(T))  # on_step once per target, in order
    np.testing.assert_allclose(result.commands, targets)
    assert sent[-1] == {MOTOR_OF_JOINT[j]: round((targets[-1, j] + math.pi) * 4096 / (2 * math.pi)) for j in range(16)}
    # First-order motors (tau 30 ms), read one step (20 ms) after each target: a ramp of plan steps d
    # leaves them e = d exp(-20/30) / (1 - exp(-20/30)) = 1.05 d behind. The virtual motors run on
    # the wall clock, so on a loaded machine a read can land a step late: at most 2.5 steps behind.
    lag = np.abs(result.measured - targets).max()
    assert 0 < lag < 2.5 * np.abs(np.diff(targets, axis=0)).max()
    assert abs(result.sent_times[-1] - (times[-1] - times[0])) < 0.05
    assert set(result.jitter) == {"mean_ms", "std_ms", "max_abs_ms", "p99_abs_ms"} and result.frames is None


def test_frame_psnr():
    a = np.zeros((2, 4, 4, 3), np.uint8)
    b = a.copy()
    b[1] = 51  # MSE (0.2)^2 -> 10 log10(1 / 0.04) = 13.98 dB
    np.testing.assert_allclose(frame_psnr(a, b), [np.inf, 10 * math.log10(25)])
    with pytest.raises(ValueError, match="predicted: expected the recorded frames' shape"):
        frame_psnr(a, b[:1])


def test_playback_records_frames_and_compares_them_with_predictions():
    T = 10
    plan = Trajectory(np.arange(T) / 30.0, np.tile(0.2 * np.sin(np.pi * np.arange(T) / T)[:, None], (1, 16)))
    calls = []

    def predict_frames(joint_targets):
        calls.append((joint_targets.copy(), len(sync_writes(bus, 116))))
        return np.full((T, 48, 64, 3), 128, np.uint8)

    with VirtualBus("mujoco") as bus:
        with bus.motors.lock:
            camera = from_mujoco(bus.motors.model, bus.motors.data, "palm_cam", 64, 48)
        with VirtualRealSense(camera, fps=30) as source, RealSenseCamera(source.device, 64, 48, 30) as rs_camera, \
                LeapHand(HandConfig(port=bus.port)) as hand:
            source.stream_mujoco(bus.motors)
            goals_before = len(sync_writes(bus, 116))
            result = play(hand, plan, rs_camera, predict_frames)
    assert len(calls) == 1 and calls[0][1] == goals_before  # predicted before anything moved
    np.testing.assert_allclose(calls[0][0], plan.joint_targets)
    assert result.frames.shape == (T, 48, 64, 3) and result.frames.std() > 5  # rendered scenes
    np.testing.assert_allclose(result.psnr, frame_psnr(result.frames, np.full((T, 48, 64, 3), 128, np.uint8)))
    assert np.isfinite(result.psnr).all() and result.psnr.shape == (T,)


def test_cgwm_play_virtual_records_a_dataset(tmp_path, capsys):
    (tmp_path / "hw.yaml").write_text("camera: {width: 64, height: 48, fps: 30}\n")
    T = 12
    times = np.arange(T) / 30.0
    targets = np.tile(0.2 * np.sin(np.pi * np.arange(T) / T)[:, None], (1, 16))  # from the flat pose
    save_trajectory(tmp_path / "plan.npz", times, targets)
    out = tmp_path / "run"
    assert main(["play", "--trajectory", str(tmp_path / "plan.npz"), "--virtual", "--config", str(tmp_path / "hw.yaml"),
                 "--out", str(out), "--object", "cube"]) == 0
    data = load_dataset(out)
    assert len(data) == T and data.images.shape == (T, 48, 64, 3) and data.meta["object"] == "cube"
    # frame k is taken after target k was sent: the target it leads into is the plan's k + 1
    np.testing.assert_allclose(data.states["joint_target"], targets[np.minimum(np.arange(T) + 1, T - 1)])
    np.testing.assert_allclose(data.states["joint_command"], targets)
    assert (np.diff(data.states["frame_number"]) >= 0).all() and np.isfinite(data.states["frame_time"]).all()
    # MuJoCo's hand tracked the plan: its error is under half a hand's that stayed where it started
    # (0.048 rad against 0.12 measured; the virtual hand follows the wall clock, so load adds lag).
    measured = data.states["joint_measured"]
    still = np.abs(measured[:1] - targets).mean()
    assert np.abs(measured - targets).mean() < 0.5 * still
    # joint_pos: the measured joints at each frame's capture time
    st = data.states
    np.testing.assert_allclose(st["joint_pos"][:, 3], np.interp(st["frame_time"], st["measured_time"], measured[:, 3]),
                               atol=1e-6)
    assert data.images.std() > 0.02  # a rendered scene, not a blank
    summary = json.loads((out / "playback.json").read_text())
    assert summary["steps"] == T and summary["virtual"] and summary["clamped_steps"] == 0
    said = capsys.readouterr()  # stderr is not a terminal here: plain progress lines, then the summary
    assert f"play: 0.4 s on the virtual hand: done, {T}/{T} steps" in said.err and "\r" not in said.err
    assert said.out.startswith(f"play: {T} steps, joint tracking error")


# ----------------------------------------------------------------------------- camera


def test_software_realsense_round_trip(tmp_path, monkeypatch):
    camera = Camera(100.0, 101.0, 32.25, 24.0, 64, 48, torch.eye(4))
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    depth = rng.uniform(0.1, 2.0, (48, 64))
    with VirtualRealSense(camera, fps=30, depth=True) as source, \
            RealSenseCamera(source.device, 64, 48, 30, depth=True) as rs_camera:
        source.push(rgb, depth)
        frames = rs_camera.read()
        np.testing.assert_array_equal(frames.color, rgb)
        np.testing.assert_allclose(frames.depth, depth, atol=0.0005 + 1e-6)  # z16 in mm
        ours = rs_camera.camera()
        assert (ours.width, ours.height) == (64, 48)
        np.testing.assert_allclose([float(ours.fx), float(ours.fy), float(ours.cx), float(ours.cy)],
                                   [100.0, 101.0, 32.25, 24.0])
        # Frames stamped 1/30 s apart, pushed slowly enough that a busy machine drops none.
        feeder = threading.Thread(target=lambda: [(source.push(rgb, depth, timestamp=k * 1000 / 30), time.sleep(0.1))
                                                  for k in range(8)])
        feeder.start()
        path = record(rs_camera, tmp_path / "clip", 4, T_cw=look_at((0.3, 0.0, 0.2), (0.0, 0.0, 0.0)))
        feeder.join()
        with pytest.raises(RealSenseError, match=r"no color rgb8 stream at 640x480@30; it offers \['64x48@30'\]"):
            RealSenseCamera(source.device, 640, 480, 30, depth=True)
    data = load_dataset(path)
    assert len(data) == 4 and data.meta["masks_empty"] and data.meta["depth"] == "depth.npz"
    np.testing.assert_array_equal((data.images[0].numpy() * 255).round().astype(np.uint8), rgb)
    import pyrealsense2 as rs

    monkeypatch.setattr(rs, "context", lambda: type("NoDevices", (), {"query_devices": lambda self: []})())
    with pytest.raises(RealSenseError, match="no RealSense device connected"):
        find_device()


def render_markers(camera: Camera, layout: MarkerLayout, supersample: int = 4) -> np.ndarray:
    """An RGB image of the layout's markers (a one-module white margin, grey table) seen by
    `camera`: each marker is warped into a supersampled canvas, then area-averaged down."""
    s = supersample
    K = np.array([[s * float(camera.fx), 0, s * float(camera.cx) - 0.5],  # OpenCV pixel centres
                  [0, s * float(camera.fy), s * float(camera.cy) - 0.5], [0, 0, 1]])
    T_cw = camera.T_cw.double().numpy()
    canvas = np.full((camera.height * s, camera.width * s), 150, np.uint8)
    dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, layout.dictionary))
    for marker_id, (length, T_wm) in layout.markers.items():
        side = 40 * (dictionary.markerSize + 2)  # px, the black square
        pad = side // (dictionary.markerSize + 2)
        image = cv2.copyMakeBorder(cv2.aruco.generateImageMarker(dictionary, marker_id, side), pad, pad, pad, pad,
                                   cv2.BORDER_CONSTANT, value=255)
        # Marker image (OpenCV pixel centres) -> marker plane (m, x right, y up, centred) -> image.
        to_plane = np.array([[length / side, 0, (0.5 - pad) * length / side - length / 2],
                             [0, -length / side, length / 2 - (0.5 - pad) * length / side], [0, 0, 1]])
        T_cm = T_cw @ T_wm
        H = K @ T_cm[:3][:, [0, 1, 3]] @ to_plane
        size = (canvas.shape[1], canvas.shape[0])
        warped = cv2.warpPerspective(image, H, size, flags=cv2.INTER_LINEAR)
        inside = cv2.warpPerspective(np.full_like(image, 255), H, size, flags=cv2.INTER_NEAREST)
        canvas = np.where(inside > 0, warped, canvas).astype(np.uint8)
    small = cv2.resize(canvas, (camera.width, camera.height), interpolation=cv2.INTER_AREA)
    return np.repeat(small[..., None], 3, axis=2)


def test_calibration_recovers_a_known_camera_pose(tmp_path):
    c, s = math.cos(math.radians(10)), math.sin(math.radians(10))
    quats = {0: [1, 0, 0, 0], 3: [math.sqrt(0.5), 0, 0, math.sqrt(0.5)],  # turned 90 degrees
             7: [c, s, 0, 0], 9: [0, 0, 0, 1]}  # tilted 20 degrees; upside down
    markers = [{"id": 0, "length": 0.04, "pos": [-0.06, -0.06, 0.0], "quat": quats[0]},
               {"id": 3, "length": 0.04, "pos": [0.07, -0.05, 0.0], "quat": quats[3]},
               {"id": 7, "length": 0.05, "pos": [0.06, 0.07, 0.01], "quat": quats[7]},
               {"id": 9, "length": 0.03, "pos": [-0.05, 0.06, 0.0], "quat": quats[9]}]
    layout = MarkerLayout.from_mapping({"dictionary": "DICT_4X4_50", "markers": markers})
    truth = look_at((0.18, -0.22, 0.33), (0.01, 0.0, 0.0)).double()
    camera = Camera.from_fovy(math.radians(50), 640, 480, truth)
    image = render_markers(camera, layout)
    fit = estimate_camera_pose(image, camera, layout)
    assert fit.ids == (0, 3, 7, 9) and fit.rmse_px < 0.5
    T0 = truth.numpy()
    angle = math.degrees(math.acos(np.clip((np.trace(fit.T_cw[:3, :3] @ T0[:3, :3].T) - 1) / 2, -1, 1)))
    centre = -fit.T_cw[:3, :3].T @ fit.T_cw[:3, 3]
    assert angle < 0.5 and np.linalg.norm(centre - (-T0[:3, :3].T @ T0[:3, 3])) < 0.002
    # One marker alone also gives the pose (IPPE_SQUARE), less tightly.
    single = estimate_camera_pose(image, camera, MarkerLayout("DICT_4X4_50", {7: layout.markers[7]}))
    assert np.linalg.norm(single.T_cw[:3, 3] - T0[:3, 3]) < 0.01
    # The CLI writes a camera JSON that loads back as the posed Camera.
    import imageio.v3 as iio

    iio.imwrite(tmp_path / "markers.png", image)
    (tmp_path / "intrinsics.json").write_text(json.dumps(
        {"width": 640, "height": 480, "fx": float(camera.fx), "fy": float(camera.fy), "cx": float(camera.cx),
         "cy": float(camera.cy), "T_cw": np.eye(4).tolist()}))
    calibration = {"dictionary": "DICT_4X4_50", "markers": markers}
    (tmp_path / "hw.yaml").write_text(yaml.safe_dump({"calibration": calibration}))
    assert main(["calibrate", "--config", str(tmp_path / "hw.yaml"), "--image", str(tmp_path / "markers.png"),
                 "--intrinsics", str(tmp_path / "intrinsics.json"), "--camera", str(tmp_path / "camera.json")]) == 0
    loaded = load_camera(tmp_path / "camera.json")
    np.testing.assert_allclose(loaded.T_cw.double().numpy(), fit.T_cw, atol=1e-6)
    np.testing.assert_allclose(opencv_matrix(loaded), opencv_matrix(camera), atol=1e-5)
    blank = np.full_like(image, 150)
    with pytest.raises(ValueError, match="none of the markers"):
        estimate_camera_pose(blank, camera, layout)


def test_settings_are_checked_by_name(tmp_path):
    config = load_config(None)
    assert config.hand.port == "/dev/ttyUSB0" and config.hand.baud == 4_000_000 and config.markers is None
    repo = load_config(os.path.join(os.path.dirname(__file__), "..", "configs", "hardware.yaml"))
    assert repo.hand == HandConfig() and sorted(repo.markers.markers) == [0, 1, 2, 3]
    bad = tmp_path / "bad.yaml"
    for text, message in (("hand: {gain: 3}\n", "hand.gain: unknown setting"),
                          ("hand: {baud: 115201}\n", "baud: expected one of"),
                          ("hand: {max_joint_speed: 0}\n", "max_joint_speed: expected a positive"),
                          ("camera: {fps: 0}\n", "camera.fps"),
                          ("calibration: {dictionary: DICT_NOPE, markers: []}\n", "dictionary: expected a cv2.aruco"),
                          ("robot: {}\n", "robot: unknown section")):
        bad.write_text(text)
        with pytest.raises(ValueError, match=message):
            load_config(bad)
    assert dx.describe_hardware_error(0x24) == "overheating, overload"


def test_predicted_frames_over_the_empty_scene_match_the_camera_better():
    """scene_reference's background and hand colours bring the world model's predicted frame of
    the scene's start close to MuJoCo's camera image; bad ones are refused by name."""
    import mujoco

    from cgwm_env.envs.leap.world_model_env import predict_frames
    from cgwm_env.physics.hand_mjcf import SCENE_XML
    from hardware.playback import scene_reference

    m = mujoco.MjModel.from_xml_path(str(SCENE_XML))
    d = mujoco.MjData(m)
    mujoco.mj_forward(m, d)
    camera = from_mujoco(m, d, "palm_cam", 64, 48)
    background, colors = scene_reference(m, d, "palm_cam", 64, 48)
    renderer = mujoco.Renderer(m, 48, 64)
    renderer.update_scene(d, camera="palm_cam")
    view = renderer.render()[None]
    renderer.close()
    assert (np.abs(background.astype(int) - view[0]).max(-1) > 30).mean() > 0.1  # the hand and cube are hidden
    targets = np.zeros((2, 16), np.float32)
    plain = frame_psnr(view, predict_frames(targets, camera)[:1])[0]
    matched = frame_psnr(view, predict_frames(targets, camera, background=background, hand_colors=colors)[:1])[0]
    print(f"PSNR of the start frame: {plain:.1f} dB plain, {matched:.1f} dB over the empty scene")
    assert matched > plain + 5.0
    with pytest.raises(ValueError, match="background: expected"):
        predict_frames(targets, camera, background=background[:10])
    with pytest.raises(ValueError, match="hand_colors: expected"):
        predict_frames(targets, camera, hand_colors=colors[:5])
