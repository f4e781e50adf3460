"""The LEAP Hand driver against bus faults it must not miss (issue 29): each fault is switched on
in the virtual bus, and the driver must stop the hand, refuse, or read through it, and say what
happened naming the motor, register or joint."""

import math
import zipfile

import numpy as np
import pytest

from cgwm_env.cli import main
from cgwm_env.physics.hand import LOWER, UPPER
from hardware import dynamixel as dx
from hardware.dynamixel import CommunicationError, HandConfig, HardwareError, LeapHand
from hardware.playback import load_trajectory, save_trajectory
from hardware.virtual import FirstOrderMotors, VirtualBus
from test_hardware import MID, MOTOR_OF_JOINT, SlowReverse, all_torque, fast, sync_writes

TICKS_PER_RAD = 4096 / (2 * math.pi)


def ticks_of(q) -> np.ndarray:
    """Motor positions (16,) ticks by motor ID of sim joint angles q (16,) rad (the LEAP mapping)."""
    ticks = np.zeros(16)
    ticks[list(MOTOR_OF_JOINT)] = (np.asarray(q) + math.pi) * TICKS_PER_RAD
    return ticks


# ----------------------------------------------------------------------------- configuration


@pytest.mark.parametrize("address, text", [
    (11, r"Operating Mode \(register 11\) reads 3, expected 5"),
    (9, r"Return Delay Time \(register 9\) reads 250, expected 0"),
    (84, r"Position P Gain \(register 84\) reads 800, expected 600"),
    (80, r"Position D Gain \(register 80\) reads 0, expected 200"),
    (102, r"Goal Current \(register 102\) reads 0, expected 350"),
])
def test_a_missed_configuration_write_is_caught_by_reading_it_back(address, text):
    with VirtualBus() as bus:
        bus.missed_sync_writes.add((5, address))  # motor 5 keeps its power-up value
        with pytest.raises(HardwareError, match="motor 5: " + text):
            LeapHand(HandConfig(port=bus.port, **fast())).connect()
        assert not any(all_torque(bus))
        assert sync_writes(bus, 116) == []  # no goal was sent


# ----------------------------------------------------------------------------- fast sync read


@pytest.mark.parametrize("fault", ["flipped bit", "bad block CRC"])
def test_fast_sync_read_checks_every_motors_crc(fault):
    with VirtualBus() as bus:
        with pytest.raises(CommunicationError) as err:
            with LeapHand(HandConfig(port=bus.port, fast_read=True, **fast())) as hand:
                if fault == "flipped bit":
                    bus.flipped_bits[5] = 56  # bit 8 of Present Position: 256 ticks, 0.39 rad
                else:
                    bus.bad_block_crc.add(5)
                hand.read()
        assert "motor 5's block fails its CRC" in str(err.value)
        assert not any(all_torque(bus))


class Pattern(SlowReverse):
    """Motors reading current -1 and velocity -515: the bytes FF FF FD FD, which a Fast Sync Read
    reply carries as they are (the e-manual: its status packet is not byte-stuffed)."""

    def present(self, motor):
        return -1, -515, 2048 + motor


def test_fast_sync_read_replies_are_not_unstuffed():
    with VirtualBus(Pattern()) as bus, LeapHand(HandConfig(port=bus.port, fast_read=True, **fast())) as hand:
        state = hand.read()
    np.testing.assert_allclose(state.current, -1e-3)
    np.testing.assert_allclose(state.dq, -515 * 0.229 * 2 * math.pi / 60)
    np.testing.assert_allclose(state.q, (2048 + np.array(MOTOR_OF_JOINT)) / TICKS_PER_RAD - math.pi)


# ----------------------------------------------------------------------------- after a failed stop


def test_no_command_is_accepted_after_a_stop_that_was_not_confirmed():
    with VirtualBus() as bus:
        with LeapHand(HandConfig(port=bus.port, **fast())) as hand:
            assert all(all_torque(bus))
            bus.disconnected.add(5)  # a loose cable: motor 5 neither hears the stop nor answers
            with pytest.raises(CommunicationError, match=r"NOT confirmed \(motors \[5\] do not answer\)"):
                hand.read()
            bus.disconnected.discard(5)  # it is back, and it never heard the torque off
            assert all_torque(bus) == [i == 5 for i in range(16)]
            goals = len(sync_writes(bus, 116))
            with pytest.raises(HardwareError, match="command refused: the hand was stopped"):
                hand.command(MID)
            assert len(sync_writes(bus, 116)) == goals  # motor 5 was not moved
            hand.connect()  # an explicit reconnect clears the fault
            np.testing.assert_allclose(hand.command(np.zeros(16)), 0.0, atol=1e-3)
        assert not any(all_torque(bus))


# ----------------------------------------------------------------------------- joint limits


def test_a_hand_found_outside_its_joint_limits_is_refused_by_joint():
    q = np.zeros(16)
    q[0] = float(LOWER[0]) - 0.3  # if_mcp, 0.3 rad below its lower limit
    with VirtualBus(FirstOrderMotors(start_ticks=ticks_of(q))) as bus:
        with pytest.raises(HardwareError, match=r"joint 0 \(if_mcp\) is at -0.61\d rad, outside its limits "
                                                r"\[-0.314, 2.230\]"):
            LeapHand(HandConfig(port=bus.port, **fast())).connect()
        assert not any(all_torque(bus))
        assert sync_writes(bus, 116) == []


def test_a_hand_just_outside_its_limits_is_held_at_them_and_every_goal_is_within():
    q = np.zeros(16)
    q[0] = float(LOWER[0]) - 0.015  # if_mcp, within LIMIT_SLACK of its limit
    q[14] = float(UPPER[14]) + 0.015  # th_mcp
    with VirtualBus(FirstOrderMotors(start_ticks=ticks_of(q))) as bus:
        with LeapHand(HandConfig(port=bus.port)) as hand:
            for _ in range(5):
                hand.command(q)  # asks to stay outside
        goals = sync_writes(bus, 116)
    lower, upper = ticks_of(LOWER.double().numpy()), ticks_of(UPPER.double().numpy())
    for goal in goals:
        ticks = np.array([goal[i] for i in range(16)])
        assert (ticks >= np.floor(lower)).all() and (ticks <= np.ceil(upper)).all()
    assert goals[0][MOTOR_OF_JOINT[0]] == round(lower[MOTOR_OF_JOINT[0]])  # held at the limit


# ----------------------------------------------------------------------------- model number


def test_a_motor_of_another_model_is_refused_at_connect():
    with VirtualBus() as bus:
        bus.set_model_number(5, 1200)  # an XL330-M288, not an XC330
        with pytest.raises(HardwareError, match=r"motor 5 reports model number 1200, which this driver does "
                                                r"not support \(it drives XC330 motors: 1210 \(XC330-T181\)"):
            LeapHand(HandConfig(port=bus.port, **fast())).connect()
        assert not any(all_torque(bus)) and sync_writes(bus, 11) == []


# ----------------------------------------------------------------------------- late replies, lost port


def test_a_late_reply_is_not_read_as_the_next_answer():
    """Motor 5 answers 50 ms late: after dynamixel-sdk's 35 ms timeout, so during the retry. Read
    as the retry's answer, the old packet would pass for a fresh one; it must be dropped instead."""
    with VirtualBus() as bus:
        with pytest.raises(CommunicationError) as err:
            with LeapHand(HandConfig(port=bus.port, fast_read=True, **fast())) as hand:
                bus.settle()
                bus.late[5] = 0.05
                hand.read()
    message = str(err.value)
    assert "ping fails for motor 5 (There is no status packet!);" in message  # and for no other motor
    assert "NOT confirmed (motors [5] do not answer)" in message


class FakeClock:
    """Stands in for the time module in hardware.dynamixel: sleeping advances it, nothing waits."""

    def __init__(self):
        self.now = 1000.0

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_a_lost_port_reaches_the_caller_within_one_reconnect_timeout(monkeypatch):
    clock = FakeClock()
    with VirtualBus() as bus:
        with pytest.raises(CommunicationError, match="torque could NOT be turned off"):
            with LeapHand(HandConfig(port=bus.port, **fast(reconnect_timeout=1.0))) as hand:
                monkeypatch.setattr(dx, "time", clock)
                bus.unplug()
                hand.read()
    assert 1.0 <= clock.now - 1000.0 < 1.2  # one reconnect timeout spent waiting for the port, not two


# ----------------------------------------------------------------------------- trajectory files


def _bad_files(folder) -> dict:
    good = save_trajectory(folder / "good.npz", np.arange(4) / 30.0, np.zeros((4, 16)))
    raw = good.read_bytes()
    files = {"truncated.npz": raw[:len(raw) // 2], "empty.npz": b"", "text.npz": b"times,joint_targets\n0,0\n"}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    np.save(folder / "array.npy", np.zeros((4, 16)))
    np.savez(folder / "missing.npz", times=np.arange(4) / 30.0)
    np.savez(folder / "strings.npz", times=np.array(["0", "1"]), joint_targets=np.zeros((2, 16)))
    np.savez(folder / "booleans.npz", times=np.arange(2) / 30.0, joint_targets=np.zeros((2, 16), bool))
    corrupt = bytearray(raw)
    with zipfile.ZipFile(good) as z:  # a flipped byte inside the stored times: the member's CRC-32 fails
        info = z.getinfo("times.npy")
    corrupt[info.header_offset + 30 + len(info.filename) + 100] ^= 0xFF
    (folder / "corrupt.npz").write_bytes(bytes(corrupt))
    return {name: folder / name for name in
            ("truncated.npz", "empty.npz", "text.npz", "array.npy", "missing.npz", "strings.npz", "booleans.npz",
             "corrupt.npz")}


def test_every_unreadable_trajectory_file_is_a_value_error_naming_it(tmp_path, capsys):
    for name, path in _bad_files(tmp_path).items():
        with pytest.raises(ValueError, match=f"trajectory: .*{path.name}"):
            load_trajectory(path)
        assert main(["play", "--trajectory", str(path), "--virtual", "--no-camera", "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert f"cgwm play: error: --trajectory: {path}" in err and "Traceback" not in err, (name, err)
    assert not (tmp_path / "out").exists()  # nothing was played or written
