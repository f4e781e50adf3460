"""LEAP Hand driver: 16 Dynamixel XC330 motors (IDs 0-15) on Protocol 2.0 through dynamixel-sdk.

Joint vectors at this API are in sim order (`cgwm_env.physics.hand_mjcf.JOINT_NAMES`), radians, shape (16,).
The bus speaks motor order and ticks; `sim_to_ticks` and `ticks_to_sim` are the one place where
the two meet (reorder by `cgwm_env.physics.hand_mjcf.MOTOR_OF_JOINT`, add pi, ticks = rad * 4096 / (2 pi)).

Safety (docs/hardware_safety.md lists every guarantee with its test). Connecting checks each
motor's model number, writes the configuration and reads it back, and refuses a hand found more
than LIMIT_SLACK outside its joint limits, all before torque comes on. `LeapHand.command` is the
safety layer: every target it sends is clamped to the joint limits (`cgwm_env.physics.hand.LOWER`/
`UPPER`) and to `max_joint_speed` from the previous target, which is itself within them; callers
that want their mistakes refused (a planner's trajectory) validate before calling it
(`hardware.playback.validate_trajectory`). Communication errors (timeouts, bad CRCs, Fast Sync
Read blocks whose own CRC fails) are retried `retries` times, then the hand is stopped (torque
off) and a `CommunicationError` says what failed and whether torque off was confirmed. A motor
whose status carries the hardware-alert bit stops the hand and raises `MotorHardwareError` naming
the motor and its Hardware Error Status bits. After any such stop the hand refuses commands until
`connect()` is called again. Use the hand as a context manager: torque goes off on leaving it, on
an exception and on SIGINT/SIGTERM.
"""

from __future__ import annotations

import logging
import math
import signal
import termios
import threading
import time
from dataclasses import dataclass
from typing import NoReturn

import dynamixel_sdk as dxl
import numpy as np
import serial

from cgwm_env.physics import hand, hand_mjcf

# X-series control table (Protocol 2.0), addresses and sizes in bytes.
ADDR_MODEL_NUMBER, LEN_MODEL_NUMBER = 0, 2
ADDR_RETURN_DELAY, ADDR_OPERATING_MODE = 9, 11  # 1 byte each (EEPROM: written with torque off)
ADDR_TORQUE_ENABLE, ADDR_HARDWARE_ERROR = 64, 70  # 1 byte each
ADDR_D_GAIN, ADDR_I_GAIN, ADDR_P_GAIN = 80, 82, 84  # 2 bytes each
ADDR_GOAL_CURRENT = 102  # 2 bytes, CURRENT_UNIT
ADDR_GOAL_POSITION = 116  # 4 bytes, ticks
ADDR_PRESENT_CURRENT, ADDR_PRESENT_VELOCITY, ADDR_PRESENT_POSITION = 126, 128, 132  # 2, 4, 4 bytes
LEN_PRESENT = 10  # current, velocity and position in one read from 126
CURRENT_BASED_POSITION = 5  # operating mode
EEPROM_END = 64  # addresses below this are EEPROM

TICKS_PER_RAD = 4096 / (2 * math.pi)
VELOCITY_UNIT = 0.229 * 2 * math.pi / 60  # rad/s per unit (0.229 rpm)
# A per unit of Goal Current (102) and Present Current (126): 1.0 mA in the control tables of the
# XC330-T181, -T288, -M181 and -M288 (ROBOTIS e-manual, emanual.robotis.com/docs/en/dxl/x/xc330-m288/
# and its siblings). The official LEAP Hand API's scale, 1.34 mA, is not an XC330 unit.
CURRENT_UNIT = 1.0e-3
# Model Number (register 0) of the motors this driver drives, from the same control tables.
SUPPORTED_MODELS = {1210: "XC330-T181", 1220: "XC330-T288", 1230: "XC330-M181", 1240: "XC330-M288"}
# Registers connect() writes and then reads back: address -> (name, size in bytes).
CONFIG_REGISTERS = {ADDR_RETURN_DELAY: ("Return Delay Time", 1), ADDR_OPERATING_MODE: ("Operating Mode", 1),
                    ADDR_P_GAIN: ("Position P Gain", 2), ADDR_I_GAIN: ("Position I Gain", 2),
                    ADDR_D_GAIN: ("Position D Gain", 2), ADDR_GOAL_CURRENT: ("Goal Current", 2)}
LIMIT_SLACK = 0.02  # rad a joint may be found outside its limits at connect (then held at the limit)
# s of silence on the line after a failed transaction before the next one: a reply that comes
# this late is dropped, not read as the next answer. USB serial adapters (the U2D2's FTDI chip)
# pass bytes on every latency-timer period, 16 ms by default, so late bytes come within about that.
LATE_REPLY_WINDOW = 0.03
SIDE_MOTORS = (0, 4, 8)  # abduction motors of the index, middle and ring fingers
MOTOR_IDS = tuple(range(hand_mjcf.N_JOINTS))  # bus IDs
ALERT_BIT = 0x80  # status error byte: the motor has a hardware error
HARDWARE_ERROR_BITS = {0: "input voltage", 2: "overheating", 3: "motor encoder", 4: "electrical shock", 5: "overload"}
STATUS_ERRORS = {1: "result fail", 2: "instruction error", 3: "CRC error", 4: "data range error",
                 5: "data length error", 6: "data limit error", 7: "access error"}
SUPPORTED_BAUDS = (9600, 57600, 115200, 1000000, 2000000, 3000000, 4000000)
# Raised by pyserial, by os calls on a pty whose other end is gone, and by termios flushes.
PORT_ERRORS = (OSError, serial.SerialException, termios.error)
_LOWER, _UPPER = hand.LOWER.double().numpy(), hand.UPPER.double().numpy()
log = logging.getLogger(__name__)


class HardwareError(RuntimeError):
    """The robot or its bus failed; the message says what happened and the state torque was left in."""


class CommunicationError(HardwareError):
    """The bus did not answer correctly after the allowed retries (timeout, corrupt packet, port lost)."""


class MotorHardwareError(HardwareError):
    """Motors reported a hardware error. status: {motor ID: Hardware Error Status byte}."""

    def __init__(self, message: str, status: dict[int, int]):
        super().__init__(message)
        self.status = status


def _crc_table() -> list[int]:
    """CRC-16 of each byte value shifted into the top of the register, bit by bit (poly 0x8005)."""
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
        table.append(crc)
    return table


_CRC_TABLE = _crc_table()


def crc16(data, crc: int = 0) -> int:
    """Dynamixel Protocol 2.0 CRC-16 (polynomial 0x8005, initial 0, MSB first, no final xor) of
    bytes `data`; pass a previous result as `crc` to continue it over more bytes."""
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC_TABLE[(crc >> 8) ^ byte]
    return crc


def describe_hardware_error(bits: int) -> str:
    """Names of the set bits of a Hardware Error Status byte (register 70)."""
    names = [name for bit, name in HARDWARE_ERROR_BITS.items() if bits & (1 << bit)]
    return ", ".join(names) if names else f"unknown bits 0x{bits:02x}"


def sim_to_ticks(q) -> np.ndarray:
    """Goal ticks by motor ID (16,) int64 of sim joint angles q (16,) rad."""
    motor = hand.sim_to_motor(np.asarray(q, dtype=np.float64)).numpy()
    return np.rint(motor * TICKS_PER_RAD).astype(np.int64)


def ticks_to_sim(ticks) -> np.ndarray:
    """Sim joint angles (16,) rad of motor positions (16,) ticks, by motor ID."""
    return hand.motor_to_sim(np.asarray(ticks, dtype=np.float64) / TICKS_PER_RAD).numpy()


def motor_to_sim_order(values) -> np.ndarray:
    """Per-motor values (16,) by motor ID -> sim order (no offset: velocities, currents)."""
    return np.asarray(values)[list(hand_mjcf.MOTOR_OF_JOINT)]


@dataclass(frozen=True)
class HandConfig:
    """Bus and motor settings (configs/hardware.yaml, section `hand`).

    Gains are the motors' Position P/I/D registers; the side motors (0, 4, 8) get their own P and
    D. goal_current: units of 1 mA (350 = 0.35 A). max_joint_speed: rad/s, the command speed
    clamp. max_command_gap: s, the longest interval the speed clamp credits between two commands.
    retries: extra tries of a failed transaction; retry_delay: s between them; reconnect_timeout:
    s spent reopening a lost port to turn torque off. fast_read: True (fast sync read), False
    (sync read) or None (fast where the firmware answers it, else sync read).
    """

    port: str = "/dev/ttyUSB0"
    baud: int = 4_000_000
    p_gain: int = 600
    p_gain_side: int = 450
    i_gain: int = 0
    d_gain: int = 200
    d_gain_side: int = 150
    goal_current: int = 350
    max_joint_speed: float = 3.0
    max_command_gap: float = 0.1
    retries: int = 3
    retry_delay: float = 0.01
    reconnect_timeout: float = 2.0
    fast_read: bool | None = None

    def __post_init__(self):
        if not isinstance(self.port, str) or not self.port:
            raise ValueError(f"port: expected a serial device path, got {self.port!r}")
        if self.baud not in SUPPORTED_BAUDS:
            raise ValueError(f"baud: expected one of {SUPPORTED_BAUDS}, got {self.baud!r}")
        for name in ("p_gain", "p_gain_side", "i_gain", "d_gain", "d_gain_side"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 16383:
                raise ValueError(f"{name}: expected an integer gain in [0, 16383], got {value!r}")
        if isinstance(self.goal_current, bool) or not isinstance(self.goal_current, int) \
                or not 0 < self.goal_current < 32768:
            raise ValueError(f"goal_current: expected a positive integer (units of 1 mA), got {self.goal_current!r}")
        for name in ("max_joint_speed", "max_command_gap", "retry_delay", "reconnect_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value < 0 or (value == 0 and name in ("max_joint_speed", "max_command_gap")):
                raise ValueError(f"{name}: expected a {'positive' if name.startswith('max') else 'non-negative'} "
                                 f"number (s or rad/s), got {value!r}")
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise ValueError(f"retries: expected a non-negative integer, got {self.retries!r}")
        if self.fast_read not in (True, False, None):
            raise ValueError(f"fast_read: expected true, false or null (auto), got {self.fast_read!r}")


@dataclass(frozen=True)
class HandState:
    """One read of the hand, sim order: q (16,) rad, dq (16,) rad/s, current (16,) A; t: monotonic s."""

    q: np.ndarray
    dq: np.ndarray
    current: np.ndarray
    t: float


def _signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value >= 1 << (bits - 1) else value


def _le(value: int, size: int) -> list[int]:
    """Little-endian bytes of a (two's complement) integer."""
    return list((int(value) & ((1 << (8 * size)) - 1)).to_bytes(size, "little"))


class LeapHand:
    """The LEAP Hand on its Dynamixel bus. `with LeapHand(config) as hand:` connects, sets
    current-based position mode, gains and goal current, turns torque on holding the present pose,
    and turns torque off when the block ends for any reason (SIGINT and SIGTERM included). After a
    stop for a fault, command() refuses until connect() is called again."""

    def __init__(self, config: HandConfig | None = None):
        self.config = config or HandConfig()
        self.ids = MOTOR_IDS
        self.fast_read = False
        self.model_numbers: dict[int, int] = {}
        self._port = dxl.PortHandler(self.config.port)
        self._ph = dxl.PacketHandler(2.0)
        self._port_ok = False
        self._torque_maybe_on = False
        self._fault: str | None = None  # why the hand was stopped; command() refuses while set
        self._last_target: np.ndarray | None = None
        self._last_time = 0.0
        self._old_handlers: dict[int, object] = {}
        self._reader = dxl.GroupSyncRead(self._port, self._ph, ADDR_PRESENT_CURRENT, LEN_PRESENT)
        for dxl_id in self.ids:
            self._reader.addParam(dxl_id)
        self._goal_writer = dxl.GroupSyncWrite(self._port, self._ph, ADDR_GOAL_POSITION, 4)

    # ----------------------------------------------------------------------------- lifecycle
    def __enter__(self) -> "LeapHand":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old_handlers[sig] = signal.signal(sig, self._on_signal)
        try:
            self.connect()
        except BaseException:
            self._restore_handlers()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.close()
            else:  # keep the exception in flight; log how the stop went (one quick try after a fault's stop)
                outcome, confirmed = self._shutdown(retry=self._fault is None)
                (log.info if confirmed else log.error)("%s after %s: %s", self.config.port, exc_type.__name__, outcome)
        finally:
            self._restore_handlers()

    def _on_signal(self, signum, frame) -> None:
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}: stopping the hand")

    def _restore_handlers(self) -> None:
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        self._old_handlers.clear()

    def connect(self) -> None:
        """Open the port, ping the 16 motors and check their model, write the configuration and
        read it back, check the hand is within its joint limits, and turn torque on holding the
        present pose (clipped to the limits). Also the way back after a stop for a fault."""
        self._fault, self._last_target = None, None
        try:
            self._open()
            self._ping_all()
            self._sync_write(ADDR_TORQUE_ENABLE, 1, {i: 0 for i in self.ids}, "Torque Enable")
            settings = self._settings()
            for address, values in settings.items():
                self._sync_write(address, CONFIG_REGISTERS[address][1], values, CONFIG_REGISTERS[address][0])
            self._verify(settings)
            self.fast_read = self._choose_read_mode()
            hold = self._hold_pose(self.read().q)
            self._write_goal(hold)
            self._last_target, self._last_time = hold, time.monotonic()
            self._torque_maybe_on = True
            self._sync_write(ADDR_TORQUE_ENABLE, 1, {i: 1 for i in self.ids}, "Torque Enable")
        except HardwareError:  # raised after a safe stop (or before the port opened)
            self._close_port()
            raise
        except BaseException:
            self._shutdown()
            raise

    def close(self) -> None:
        """Turn torque off and close the port. Raises CommunicationError when torque off could not
        be confirmed on every motor."""
        outcome, confirmed = self._shutdown()
        if not confirmed:
            raise CommunicationError(f"closing the hand on {self.config.port}: {outcome}")

    def _shutdown(self, retry: bool = True) -> tuple[str, bool]:
        """Safe stop (where the port was opened or torque may be on; retry: see _safe_stop), then
        close the port."""
        self._last_target = None
        if not self._port_ok and not self._torque_maybe_on:
            self._close_port()
            return "the port is closed", True
        result = self._safe_stop(retry)
        self._close_port()
        return result

    # ----------------------------------------------------------------------------- public I/O
    def read(self) -> HandState:
        """Present positions, velocities and currents (one group sync read of 10 bytes per motor)."""
        data = self._io("read present state", self._read_present)
        t = time.monotonic()
        cur = np.array([_signed(int.from_bytes(data[i][0:2], "little"), 16) for i in self.ids]) * CURRENT_UNIT
        vel = np.array([_signed(int.from_bytes(data[i][2:6], "little"), 32) for i in self.ids]) * VELOCITY_UNIT
        pos = np.array([_signed(int.from_bytes(data[i][6:10], "little"), 32) for i in self.ids])
        return HandState(ticks_to_sim(pos), motor_to_sim_order(vel), motor_to_sim_order(cur), t)

    def command(self, q) -> np.ndarray:
        """Send joint targets q (16,) rad, sim order; returns the targets actually sent (16,) rad.

        This is the safety layer: targets are clamped to the joint limits and then to within
        max_joint_speed * dt of the previous target (dt: time since it, at most max_command_gap).
        NaN, inf or a wrong shape raise ValueError: those are never clamped. After a stop for a
        fault it raises HardwareError until connect() is called again.
        """
        if self._fault is not None:
            raise HardwareError("command refused: the hand was stopped after a fault and takes no command until it "
                                f"is connected again (LeapHand.connect() or a new `with LeapHand(...)`): {self._fault}")
        if self._last_target is None:
            raise HardwareError("command: the hand is not connected (use `with LeapHand(...) as hand`)")
        q = np.asarray(q, dtype=np.float64)
        if q.shape != (hand_mjcf.N_JOINTS,):
            raise ValueError(f"q: expected shape ({hand_mjcf.N_JOINTS},) joint targets (rad, sim order), got {q.shape}")
        if not np.isfinite(q).all():
            raise ValueError(f"q: expected finite joint targets, got {q.tolist()}")
        now = time.monotonic()
        step = self.config.max_joint_speed * min(now - self._last_time, self.config.max_command_gap)
        target = np.clip(q, _LOWER, _UPPER)
        target = np.clip(target, self._last_target - step, self._last_target + step)
        self._write_goal(target)
        self._last_target, self._last_time = target, now
        return target

    # ----------------------------------------------------------------------------- bus transactions
    def _open(self) -> None:
        try:
            opened = self._port.setBaudRate(self.config.baud)  # opens the port at that rate
        except PORT_ERRORS as err:
            raise CommunicationError(f"port {self.config.port}: cannot open it ({err}); is the hand's U2D2 "
                                     "plugged in, and may this user open it (group dialout)?") from err
        if not opened:
            raise CommunicationError(f"port {self.config.port}: cannot open it at {self.config.baud} baud")
        self._port_ok = True

    def _close_port(self) -> None:
        if self._port.ser is not None:
            try:
                self._port.closePort()
            except PORT_ERRORS:
                pass  # the port is already gone; nothing is left to close
        self._port_ok = False

    def _reopen(self) -> bool:
        """Reopen a lost port once; True when it is open again."""
        self._close_port()
        try:
            self._open()
        except CommunicationError:
            return False
        return True

    def _ping_all(self) -> None:
        """Ping every motor (with retries); stop and raise where one does not answer, is not a
        supported model (SUPPORTED_MODELS) or reports a hardware error."""
        missing, alerts = [], []
        for dxl_id in self.ids:
            for _ in range(self.config.retries + 1):
                try:
                    model, result, error = self._ph.ping(self._port, dxl_id)
                    if result != dxl.COMM_SUCCESS:
                        self._discard_late_replies()
                except PORT_ERRORS as err:
                    raise CommunicationError(f"port {self.config.port}: lost while pinging motor {dxl_id} "
                                             f"({err})") from err
                if result == dxl.COMM_SUCCESS:
                    break
            if result != dxl.COMM_SUCCESS:
                missing.append(dxl_id)
                continue
            self.model_numbers[dxl_id] = model
            if error & ALERT_BIT:
                alerts.append(dxl_id)
        if missing:
            outcome, _ = self._safe_stop()
            self._raise_stopped(CommunicationError(
                f"motors {missing} do not answer a ping on {self.config.port} at {self.config.baud} baud (check "
                f"their power, cables and IDs); {outcome}"))
        foreign = {i: m for i, m in self.model_numbers.items() if m not in SUPPORTED_MODELS}
        if foreign:
            outcome, _ = self._safe_stop()
            supported = ", ".join(f"{number} ({name})" for number, name in SUPPORTED_MODELS.items())
            found = "; ".join(f"motor {i} reports model number {m}" for i, m in sorted(foreign.items()))
            self._raise_stopped(HardwareError(
                f"{found}, which this driver does not support (it drives XC330 motors: {supported}); check "
                f"which motor is on that ID; {outcome}"))
        if alerts:
            self._hardware_fault(alerts)

    def _settings(self) -> dict[int, dict[int, int]]:
        """{address: {motor ID: value}} of every CONFIG_REGISTERS register, from the config."""
        c, side = self.config, set(SIDE_MOTORS)
        values = {ADDR_RETURN_DELAY: (0, 0), ADDR_OPERATING_MODE: (CURRENT_BASED_POSITION,) * 2,  # (all, side motors)
                  ADDR_P_GAIN: (c.p_gain, c.p_gain_side), ADDR_I_GAIN: (c.i_gain, c.i_gain),
                  ADDR_D_GAIN: (c.d_gain, c.d_gain_side), ADDR_GOAL_CURRENT: (c.goal_current, c.goal_current)}
        return {address: {i: values[address][i in side] for i in self.ids} for address in CONFIG_REGISTERS}

    def _verify(self, settings: dict[int, dict[int, int]]) -> None:
        """Read every written register back (sync read; a sync write gets no reply, so a motor that
        missed one is found only this way); a motor holding another value stops the hand and
        raises HardwareError naming the motor and the register."""
        wrong = []
        for address, wanted in settings.items():
            name, size = CONFIG_REGISTERS[address]
            reader = dxl.GroupSyncRead(self._port, self._ph, address, size)
            for dxl_id in self.ids:
                reader.addParam(dxl_id)
            found = self._io(f"read back {name} (register {address})", lambda: self._sync_read(reader, size))
            for dxl_id, value in wanted.items():
                got = int.from_bytes(found[dxl_id], "little")
                if got != value:
                    wrong.append(f"motor {dxl_id}: {name} (register {address}) reads {got}, expected {value}")
        if wrong:
            outcome, _ = self._safe_stop()
            self._raise_stopped(HardwareError(
                "configuration not taken: " + "; ".join(wrong) + f" (reconnect to write it again); {outcome}"))

    def _hold_pose(self, q: np.ndarray) -> np.ndarray:
        """The goal to hold when torque comes on: the present pose q (16,) rad clipped to the joint
        limits (a step of at most LIMIT_SLACK). A joint further outside stops the hand and raises
        HardwareError naming it: driving it in could be wrong if the motor's ID or offset is."""
        outside = np.flatnonzero((q < _LOWER - LIMIT_SLACK) | (q > _UPPER + LIMIT_SLACK))
        if outside.size:
            outcome, _ = self._safe_stop()
            joints = "; ".join(f"joint {j} ({hand_mjcf.JOINT_NAMES[j]}) is at {q[j]:.3f} rad, outside its limits "
                               f"[{_LOWER[j]:.3f}, {_UPPER[j]:.3f}]" for j in outside)
            self._raise_stopped(HardwareError(
                f"the hand is outside its joint limits: {joints}. Move these joints within their limits by hand "
                f"(torque is left off), or check the motor IDs and angle offset if the pose looks right; {outcome}"))
        return np.clip(q, _LOWER, _UPPER)

    def _sync_write(self, address: int, size: int, values: dict[int, int], what: str) -> None:
        writer = dxl.GroupSyncWrite(self._port, self._ph, address, size)
        for dxl_id, value in values.items():
            writer.addParam(dxl_id, _le(value, size))
        self._io(f"write {what} (address {address})", lambda: (writer.txPacket(), None, {}))

    def _write_goal(self, q: np.ndarray) -> None:
        ticks = sim_to_ticks(q)
        self._goal_writer.clearParam()
        for dxl_id in self.ids:
            self._goal_writer.addParam(dxl_id, _le(ticks[dxl_id], 4))
        self._io("write goal positions", lambda: (self._goal_writer.txPacket(), None, {}))

    def _read_present(self):
        return self._fast_sync_read() if self.fast_read else self._sync_read(self._reader, LEN_PRESENT)

    def _sync_read(self, reader, size: int):
        """Group sync read of `size` bytes per motor; every motor answers with its own status
        packet, whose CRC dynamixel-sdk checks (errors kept per ID)."""
        result = reader.txPacket()
        if result != dxl.COMM_SUCCESS:
            return result, None, {}
        data, errors = {}, {}
        for dxl_id in self.ids:
            values, result, error = self._ph.readRx(self._port, dxl_id, size)
            if result != dxl.COMM_SUCCESS:
                return result, f"waiting for motor {dxl_id}", errors
            data[dxl_id], errors[dxl_id] = bytes(values), error
        return dxl.COMM_SUCCESS, data, errors

    def _fast_sync_read(self):
        """Group fast sync read: one status packet holding, per motor, its error, ID, data and the
        CRC of the packet up to there (ROBOTIS e-manual, Protocol 2.0, Fast Sync Read; the packet
        is not byte-stuffed). dynamixel-sdk 4.1 checks only the last CRC, the packet's, which the
        later motors compute over the bytes as they heard them, and drops the error bytes; so the
        packet is parsed here and every motor's CRC is checked."""
        result = self._reader.fastSyncReadTxPacket()
        if result != dxl.COMM_SUCCESS:
            return result, None, {}
        packet, result = self._ph.rxPacket(self._port, True)
        if result != dxl.COMM_SUCCESS:
            return result, None, {}
        block = LEN_PRESENT + 4  # error, ID, data, CRC
        if packet[4] != dxl.BROADCAST_ID or len(packet) != 8 + len(self.ids) * block:
            return dxl.COMM_RX_CORRUPT, f"a {len(packet)}-byte packet from ID {packet[4]}", {}
        data, errors, start = {}, {}, 8  # 8: the first motor's error byte
        crc = crc16(packet[:start])
        for dxl_id in self.ids:
            end = start + 2 + LEN_PRESENT
            crc = crc16(packet[start:end], crc)
            if packet[start + 1] != dxl_id:
                return dxl.COMM_RX_CORRUPT, f"motor {dxl_id}'s block holds ID {packet[start + 1]}", errors
            if crc != packet[end] | packet[end + 1] << 8:
                return dxl.COMM_RX_CORRUPT, f"motor {dxl_id}'s block fails its CRC", errors
            errors[dxl_id] = packet[start]
            data[dxl_id] = bytes(packet[start + 2:end])
            crc = crc16(packet[end:end + 2], crc)
            start = end + 2
        return dxl.COMM_SUCCESS, data, errors

    def _choose_read_mode(self) -> bool:
        """Fast sync read where configured or, in auto mode, where one of `retries` + 1 attempts
        succeeds (firmware without it fails every one; one lost packet does not demote the read)."""
        if self.config.fast_read is not None:
            return self.config.fast_read
        for _ in range(self.config.retries + 1):
            try:
                result, _, errors = self._fast_sync_read()
            except PORT_ERRORS:
                self._port.is_using = False
                return False
            if result == dxl.COMM_SUCCESS:
                return not any(e & 0x7F for e in errors.values())
            self._discard_late_replies()
        return False

    def _io(self, what: str, op):
        """Run op() -> (result, data, {ID: status error}) with bounded retries and return data; on a
        failed result, data says where it failed (or is None), and late replies are dropped. On the
        last failure stop the hand and raise CommunicationError; a hardware alert stops it at once."""
        tries = self.config.retries + 1
        reason = ""
        for attempt in range(tries):
            if attempt:
                time.sleep(self.config.retry_delay)
            if not self._port_ok and not self._reopen():
                reason = f"port {self.config.port} is gone"
                continue
            try:
                result, data, errors = op()
                if result != dxl.COMM_SUCCESS:
                    self._discard_late_replies()
            except PORT_ERRORS as err:
                self._port.is_using = False
                self._port_ok = False
                reason = f"port {self.config.port} failed ({err})"
                continue
            if result != dxl.COMM_SUCCESS:
                reason = self._ph.getTxRxResult(result) + (f" ({data})" if data else "")
                continue
            alerts = sorted(i for i, e in errors.items() if e & ALERT_BIT)
            if alerts:
                self._hardware_fault(alerts)
            status = {i: STATUS_ERRORS.get(e & 0x7F, f"error {e & 0x7F}") for i, e in errors.items() if e & 0x7F}
            if status:
                reason = "status errors " + ", ".join(f"motor {i}: {s}" for i, s in sorted(status.items()))
                continue
            return data
        outcome, _ = self._safe_stop()  # torque off first, then find which motors fail
        failing = self._failing_pings() if self._port_ok else {}
        if failing:
            reason += "; ping fails for " + ", ".join(f"motor {i} ({text})" for i, text in failing.items())
        self._raise_stopped(CommunicationError(f"{what} failed after {tries} tries: {reason}; {outcome}"))

    def _failing_pings(self) -> dict[int, str]:
        """{motor ID: the SDK's words} for motors whose ping fails (no answer, corrupt answer)."""
        failing = {}
        for dxl_id in self.ids:
            try:
                _, result, _ = self._ph.ping(self._port, dxl_id)
                if result != dxl.COMM_SUCCESS:
                    self._discard_late_replies()
            except PORT_ERRORS:
                self._port.is_using = False
                return {}
            if result != dxl.COMM_SUCCESS:
                failing[dxl_id] = self._ph.getTxRxResult(result).removeprefix("[TxRxResult] ")
        return failing

    def _hardware_fault(self, alerts: list[int]):
        """Read Hardware Error Status of the alerting motors, stop the hand, raise MotorHardwareError."""
        status = {}
        for dxl_id in alerts:
            try:
                bits, result, _ = self._ph.read1ByteTxRx(self._port, dxl_id, ADDR_HARDWARE_ERROR)
                if result != dxl.COMM_SUCCESS:
                    self._discard_late_replies()
            except PORT_ERRORS:
                self._port.is_using = False
                result = dxl.COMM_TX_FAIL
            status[dxl_id] = bits if result == dxl.COMM_SUCCESS else -1
        outcome, _ = self._safe_stop()
        text = "; ".join(f"motor {i}: " + (describe_hardware_error(b) + f" (status 0x{b:02x})" if b >= 0
                                            else "hardware error (status unreadable)") for i, b in status.items())
        self._raise_stopped(MotorHardwareError(f"hardware error reported by {text}; {outcome}. Power-cycle or "
                                               "reboot the motor before using it again.", status))

    def _raise_stopped(self, error: HardwareError) -> NoReturn:
        """Latch the fault the hand was stopped for (command() refuses until connect()) and raise it."""
        self._fault = str(error)
        raise error

    def _discard_late_replies(self) -> None:
        """After a failed transaction: drop what arrives until the line has been quiet for
        LATE_REPLY_WINDOW s (at most ten windows), so that a late reply is not read as the answer
        to the next transaction (dynamixel-sdk clears the input only as it sends)."""
        start = quiet_since = time.monotonic()
        while (now := time.monotonic()) - quiet_since < LATE_REPLY_WINDOW and now - start < 10 * LATE_REPLY_WINDOW:
            if self._port.ser.in_waiting:
                self._port.clearPort()
                quiet_since = time.monotonic()
            time.sleep(0.001)

    def _safe_stop(self, retry: bool = True) -> tuple[str, bool]:
        """Torque off on every motor (broadcast), reopening a lost port for up to reconnect_timeout,
        then read Torque Enable back, all of it `retries` more times until every motor has confirmed
        (each try reads back the motors not yet confirmed; retry=False: one try of each, for a second
        stop after a fault's). Returns (what happened, confirmed on
        every motor)."""
        self._port.is_using = False  # an interrupted transaction leaves the port marked busy
        deadline = time.monotonic() + (self.config.reconnect_timeout if retry else 0.0)
        while not self._port_ok and not self._reopen():
            if time.monotonic() >= deadline:
                return (f"torque could NOT be turned off: port {self.config.port} is gone; cut the motors' power",
                        False)
            time.sleep(0.05)
        silent, still_on, pending = [], [], list(self.ids)
        try:
            for _ in range(self.config.retries + 1 if retry else 1):
                self._ph.write1ByteTxOnly(self._port, dxl.BROADCAST_ID, ADDR_TORQUE_ENABLE, 0)
                silent, still_on = [], []
                for dxl_id in pending:
                    value, result, _ = self._ph.read1ByteTxRx(self._port, dxl_id, ADDR_TORQUE_ENABLE)
                    if result != dxl.COMM_SUCCESS:
                        silent.append(dxl_id)
                        self._discard_late_replies()
                    elif value != 0:
                        still_on.append(dxl_id)
                pending = silent + still_on
                if not pending:
                    break
        except PORT_ERRORS as err:
            self._port.is_using = False
            self._port_ok = False
            return f"torque off NOT confirmed: port {self.config.port} failed ({err}); cut the motors' power", False
        if silent or still_on:
            why = "; ".join(text for text in (f"motors {silent} do not answer" if silent else "",
                                               f"motors {still_on} still report torque on" if still_on else "") if text)
            return f"torque off sent to all motors but NOT confirmed ({why}); cut the motors' power if they hold", False
        self._torque_maybe_on = False
        return "torque is off on all motors", True
