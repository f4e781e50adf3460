"""A virtual LEAP Hand: a Dynamixel Protocol 2.0 bus on a pseudo-terminal, and a software RealSense.

`VirtualBus` opens a pty (os.openpty) and serves it from a thread as 16 X-series motors would:
ping, read, write, sync read, sync write and fast sync read, CRC-16 and byte stuffing, status
packets with error bytes, the control-table registers the driver uses. dynamixel-sdk talks to
`bus.port` (a symlink to the pty, like /dev/ttyUSB0) exactly as to a U2D2. Its motors are
`FirstOrderMotors` (position follows the goal with a lag) or `MujocoMotors` (the LEAP hand of
cgwm_env/assets/leap_hand/palm_up_scene.xml: goals drive its position actuators, MuJoCo steps in
real time). Faults can be switched on (see `VirtualBus`): a motor that does not answer, or that
hears nothing either; status packets with a wrong CRC; a Fast Sync Read block with a flipped data
bit or a wrong CRC; replies that come late; a sync write a motor misses; a hardware-error bit; a
motor of another model; a port that disappears.

`VirtualRealSense` is an `rs.software_device` with a colour (and z16 depth) stream; `push` injects
frames, and `stream_mujoco` feeds it MuJoCo renders of a camera of the scene from a thread, flat
or through a software camera that looks like a real one (cgwm_env.data.camera_model), dropping
frames or running off its nominal rate on request, so `hardware.realsense.RealSenseCamera`
reads it as it would read a D456.
"""

from __future__ import annotations

import math
import os
import select
import tempfile
import threading
import time
import tty
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cgwm_env.data.camera_model import SoftwareRig
from cgwm_env.physics import hand_mjcf
from hardware import dynamixel as dx
from hardware.dynamixel import crc16

INST_PING, INST_READ, INST_WRITE, INST_STATUS = 0x01, 0x02, 0x03, 0x55
INST_SYNC_READ, INST_SYNC_WRITE, INST_FAST_SYNC_READ = 0x82, 0x83, 0x8A
BROADCAST = 0xFE
ERR_CRC, ERR_INSTRUCTION, ERR_ACCESS = 3, 2, 7
HEADER = b"\xff\xff\xfd\x00"
TABLE_SIZE = 147
READ_ONLY = range(dx.ADDR_PRESENT_CURRENT, TABLE_SIZE)  # present values: current, velocity, position, ...
MODEL_NUMBER = 1240  # XC330-M288-T (ROBOTIS e-manual, XC330-M288 control table, Model Number (0))
FIRMWARE_VERSION = 52
OVERLOAD = 1 << 5  # Hardware Error Status bit


def stuff(body: bytes) -> bytes:
    """Byte stuffing of a packet's instruction-to-parameters part: FF FF FD -> FF FF FD FD."""
    if b"\xff\xff\xfd" not in body:
        return bytes(body)
    out = bytearray()
    for b in body:
        out.append(b)
        if b == 0xFD and out[-3:-1] == b"\xff\xff":
            out.append(0xFD)
    return bytes(out)


def unstuff(body: bytes) -> bytes:
    """Inverse of `stuff`."""
    if b"\xff\xff\xfd\xfd" not in body:
        return bytes(body)
    out, i = bytearray(), 0
    while i < len(body):
        out.append(body[i])
        if body[i] == 0xFD and out[-3:-1] == b"\xff\xff" and i + 1 < len(body) and body[i + 1] == 0xFD:
            i += 1  # drop the stuffed FD
        i += 1
    return bytes(out)


def packet(dxl_id: int, body: bytes, corrupt_crc: bool = False) -> bytes:
    """A full packet around an unstuffed body (instruction byte first): header, ID, length, stuffed
    body, CRC (inverted when corrupt_crc)."""
    body = stuff(body)
    raw = HEADER + bytes([dxl_id]) + (len(body) + 2).to_bytes(2, "little") + body
    crc = crc16(raw) ^ (0xFFFF if corrupt_crc else 0)
    return raw + crc.to_bytes(2, "little")


@dataclass(frozen=True)
class Instruction:
    """An instruction packet the bus received with a valid CRC: id, instruction byte, unstuffed
    parameters, and the raw bytes as sent."""

    id: int
    instruction: int
    params: bytes
    raw: bytes


class FirstOrderMotors:
    """Motors whose position follows the goal with a first-order lag (time_constant s) while torque
    is on, and stays put while it is off. Current is not modelled (reads 0). Motor-ID order, ticks;
    start_ticks: where they are at power-up, one number for all or (n,) by motor ID."""

    def __init__(self, n: int = hand_mjcf.N_JOINTS, time_constant: float = 0.03, start_ticks=2048):
        if not time_constant > 0:
            raise ValueError(f"time_constant: expected a positive time (s), got {time_constant!r}")
        self.tau = time_constant
        self.position = np.broadcast_to(np.asarray(start_ticks, dtype=np.float64), (n,)).copy()
        self.velocity = np.zeros(n)  # ticks/s
        self.goal = self.position.copy()
        self.torque = np.zeros(n, dtype=bool)
        self._t = time.monotonic()

    def set_goal(self, motor: int, ticks: int) -> None:
        self.goal[motor] = ticks

    def set_torque(self, motor: int, on: bool) -> None:
        self.torque[motor] = on

    def advance(self, now: float) -> None:
        dt = now - self._t
        if dt <= 0:
            return
        self._t = now
        new = self.position + self.torque * (self.goal - self.position) * (1.0 - math.exp(-dt / self.tau))
        self.velocity = (new - self.position) / dt
        self.position = new

    def present(self, motor: int) -> tuple[int, int, int]:
        """(current in 1 mA, velocity in 0.229 rpm, position in ticks) of a motor."""
        velocity = self.velocity[motor] / dx.TICKS_PER_RAD / dx.VELOCITY_UNIT
        return 0, int(round(velocity)), int(round(self.position[motor]))


class MujocoMotors:
    """The LEAP hand of a MuJoCo scene as the bus's motors. Goal ticks become the position
    actuators' ctrl (through the driver's motor mapping), torque off zeroes an actuator's gains,
    and the simulation is stepped to the wall clock whenever the bus looks at it. `lock` guards
    `data` (renderers take it to read the scene). Current reads actuator torque / torque_constant.
    xml: the scene's MJCF file, or a compiled mujoco.MjModel of it. time_scale: wall-clock seconds
    per simulated second (above 1 the plant runs slower than real time, so that a slow renderer
    keeps up with it; the player and the camera then run as many times slower)."""

    def __init__(self, xml=hand_mjcf.SCENE_XML, torque_constant: float = 0.5, max_lag: float = 0.1,
                 time_scale: float = 1.0):
        import mujoco

        self._mujoco = mujoco
        self.model = xml if isinstance(xml, mujoco.MjModel) else mujoco.MjModel.from_xml_path(str(xml))
        self.data = mujoco.MjData(self.model)
        self.lock = threading.Lock()
        self.torque_constant = torque_constant  # N m / A, a stand-in for the XC330's
        self.max_lag = max_lag  # s: a longer pause is skipped, not simulated
        if not time_scale > 0:
            raise ValueError(f"time_scale: expected a positive factor, got {time_scale!r}")
        self.time_scale = time_scale
        names = hand_mjcf.JOINT_NAMES
        self._qpos = np.array([self.model.jnt_qposadr[self.model.joint(n).id] for n in names])
        self._qvel = np.array([self.model.jnt_dofadr[self.model.joint(n).id] for n in names])
        self._act = np.array([self.model.actuator(n).id for n in names])
        self._joint = np.argsort(dx.motor_to_sim_order(np.arange(hand_mjcf.N_JOINTS)))  # sim joint of each motor
        self._gain = self.model.actuator_gainprm[self._act, 0].copy()
        self._bias = self.model.actuator_biasprm[self._act, 1:3].copy()
        mujoco.mj_forward(self.model, self.data)
        self.goal = dx.sim_to_ticks(self.data.qpos[self._qpos]).astype(float)
        self._goal_changed = True
        self._present = None  # (current, velocity, position) by motor, until the next step
        self.torque = np.ones(hand_mjcf.N_JOINTS, dtype=bool)
        for motor in range(hand_mjcf.N_JOINTS):
            self.set_torque(motor, False)
        self._t = time.monotonic()

    def set_goal(self, motor: int, ticks: int) -> None:
        self.goal[motor] = ticks
        self._goal_changed = True

    def set_torque(self, motor: int, on: bool) -> None:
        if self.torque[motor] == on:
            return
        self.torque[motor] = on
        j = self._joint[motor]
        a = self._act[j]
        with self.lock:
            self.model.actuator_gainprm[a, 0] = self._gain[j] if on else 0.0
            self.model.actuator_biasprm[a, 1:3] = self._bias[j] if on else 0.0

    def advance(self, now: float) -> None:
        dt = self.model.opt.timestep
        wall = dt * self.time_scale  # wall-clock seconds per physics step
        steps = int((now - self._t) / wall)
        if steps <= 0:
            return
        ctrl = dx.ticks_to_sim(self.goal) if self._goal_changed else None
        self._goal_changed = False
        with self.lock:  # data and the time it is at change together
            if steps * dt > self.max_lag:
                steps = int(self.max_lag / dt)
                self._t = now - steps * wall
            if ctrl is not None:
                self.data.ctrl[self._act] = ctrl
            self._mujoco.mj_step(self.model, self.data, nstep=steps)
            self._t += steps * wall
        self._present = None

    @property
    def state_time(self) -> float:
        """The time.monotonic() (s) that `data` is at; read it holding `lock`."""
        return self._t

    def present(self, motor: int) -> tuple[int, int, int]:
        if self._present is None:
            with self.lock:
                q = self.data.qpos[self._qpos].copy()
                dq = self.data.qvel[self._qvel].copy()
                force = self.data.actuator_force[self._act].copy()
            current = np.rint(force[self._joint] / self.torque_constant / dx.CURRENT_UNIT).astype(int)
            velocity = np.rint(dq[self._joint] / dx.VELOCITY_UNIT).astype(int)
            self._present = (current, velocity, dx.sim_to_ticks(q))
        current, velocity, position = self._present
        return int(current[motor]), int(velocity[motor]), int(position[motor])


class VirtualBus:
    """16 virtual X-series motors on a pseudo-terminal; `port` is the path to open.

    motors: "first_order" (default), "mujoco", or a motors object (see FirstOrderMotors).
    fast_sync_read: False makes the motors ignore fast sync read, as older firmware does.
    `log` lists every valid instruction received. Faults, set from any thread:
    - `silent`: IDs whose replies are lost (they still obey instructions);
    - `disconnected`: IDs that neither hear nor answer (a loose cable); taken out of the set, the
      motor answers again in the state it was left in (torque on, if it was);
    - `bad_crc`: IDs whose status packets carry a wrong CRC; `bad_crc_count`: that many next
      status packets carry one;
    - `bad_block_crc`: IDs whose Fast Sync Read block carries a wrong CRC; `flipped_bits`:
      {ID: bit} flips that bit of the ID's Fast Sync Read data (bit 0 = the first data byte's
      lowest) after its CRC was computed. The later motors' CRCs, and so the packet's last one,
      cover the bytes as sent: only a check of each block's CRC sees these;
    - `late`: {ID: s} its status packets leave that late; the line is half duplex, so packets
      queued after one wait for it;
    - `missed_sync_writes`: (ID, address) pairs: that motor misses sync writes to that address (a
      packet it received corrupted), keeping its old value;
    - `set_model_number(id, number)`, `set_hardware_error(id, bits)`, `unplug()` / `replug()`
      (the port disappears and comes back).
    """

    def __init__(self, motors="first_order", fast_sync_read: bool = True):
        if motors == "first_order":
            motors = FirstOrderMotors()
        elif motors == "mujoco":
            motors = MujocoMotors()
        elif isinstance(motors, str):
            raise ValueError(f"motors: expected 'first_order', 'mujoco' or a motors object, got {motors!r}")
        self.motors = motors
        self.fast_sync_read = fast_sync_read
        self.tables = {i: self._default_table(i) for i in dx.MOTOR_IDS}
        self.log: deque[Instruction] = deque(maxlen=100_000)
        self.bad_packets = 0  # instruction packets with a wrong CRC
        self.silent: set[int] = set()
        self.disconnected: set[int] = set()
        self.bad_crc: set[int] = set()
        self.bad_crc_count = 0
        self.bad_block_crc: set[int] = set()
        self.flipped_bits: dict[int, int] = {}
        self.late: dict[int, float] = {}
        self.missed_sync_writes: set[tuple[int, int]] = set()
        self._outbox: deque[tuple[float, bytes]] = deque()  # (when to send, packet), in order
        self._dir = tempfile.TemporaryDirectory(prefix="cgwm-virtual-bus-")
        self.port = str(Path(self._dir.name) / "ttyVIRT0")
        self._fds: tuple[int, int] | None = None
        self._requests: list[str] = []
        self._done = threading.Condition()
        self._stop = threading.Event()
        self._open_pty()
        self._thread = threading.Thread(target=self._serve, name="virtual-dynamixel-bus", daemon=True)
        self._thread.start()

    # ----------------------------------------------------------------------------- life cycle, faults
    def __enter__(self) -> "VirtualBus":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the server thread and remove the port."""
        self._stop.set()
        self._thread.join()
        self._close_pty()
        self._dir.cleanup()

    def unplug(self) -> None:
        """The port disappears (a USB adapter pulled out): its pty closes and its path goes away."""
        self._request("unplug")

    def replug(self) -> None:
        """The port comes back at the same path (a new pty); the motors kept their state."""
        self._request("replug")

    def set_hardware_error(self, motor: int, bits: int = OVERLOAD) -> None:
        """Raise a hardware error on `motor`: register 70 holds `bits`, every status it sends has
        the alert bit, and it turns its torque off (and refuses to turn it on) as X-series motors
        do on overload, overheating and electrical shock."""
        self._request(("hardware_error", motor, bits))

    def set_model_number(self, motor: int, number: int) -> None:
        """`motor` reports Model Number `number` (register 0, and in its ping reply)."""
        self._request(("model_number", motor, number))

    def settle(self) -> None:
        """Wait until the bus has handled every byte sent to it so far (writes have no reply)."""
        self._request("settle")

    def torque_enabled(self, motor: int) -> bool:
        """Torque Enable of `motor`, once the bus has settled."""
        self.settle()
        return self.tables[motor][dx.ADDR_TORQUE_ENABLE] == 1

    def _request(self, what) -> None:
        """Run a request on the server thread (it owns the pty and the tables) once it has handled
        all input, and wait for it."""
        with self._done:
            self._requests.append(what)
            self._done.wait_for(lambda: what not in self._requests, timeout=5.0)

    def _apply(self, what) -> None:
        if what == "settle":
            return
        if what == "unplug":
            self._close_pty()
            self._outbox.clear()
        elif what == "replug":
            if self._fds is None:
                self._open_pty()
        elif what[0] == "model_number":
            _, motor, number = what
            self.tables[motor][dx.ADDR_MODEL_NUMBER:dx.ADDR_MODEL_NUMBER + 2] = number.to_bytes(2, "little")
        else:
            _, motor, bits = what
            self.tables[motor][dx.ADDR_HARDWARE_ERROR] = bits
            self._set_torque(motor, False)

    def _open_pty(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line editing: bytes pass unchanged
        os.set_blocking(master, False)
        os.symlink(os.ttyname(slave), self.port)
        self._fds = (master, slave)

    def _close_pty(self) -> None:
        if self._fds is None:
            return
        for fd in self._fds:
            os.close(fd)
        self._fds = None
        Path(self.port).unlink(missing_ok=True)

    def _default_table(self, motor: int) -> bytearray:
        table = bytearray(TABLE_SIZE)
        table[dx.ADDR_MODEL_NUMBER:dx.ADDR_MODEL_NUMBER + 2] = MODEL_NUMBER.to_bytes(2, "little")
        table[6], table[7], table[8] = FIRMWARE_VERSION, motor, 6  # firmware, ID, baud 6 = 4 Mbps
        table[dx.ADDR_RETURN_DELAY] = 250  # 500 us
        table[dx.ADDR_OPERATING_MODE] = 3  # position control
        table[dx.ADDR_P_GAIN:dx.ADDR_P_GAIN + 2] = (800).to_bytes(2, "little")
        return table

    # ----------------------------------------------------------------------------- the server
    def _serve(self) -> None:
        buffer, partial_since = bytearray(), None
        while not self._stop.is_set():
            self.motors.advance(time.monotonic())
            self._send_due()
            ready = []
            if self._fds is not None:
                ready, _, _ = select.select([self._fds[0]], [], [], 0.002)
            else:
                time.sleep(0.002)
            if not ready and not self._outbox:  # the line is idle: time for requests from other threads
                with self._done:
                    if self._requests:
                        for what in self._requests:
                            self._apply(what)
                        self._requests.clear()
                        buffer.clear()
                        self._done.notify_all()
                continue
            if not ready:
                continue
            master = self._fds[0]
            try:
                buffer += os.read(master, 4096)
            except BlockingIOError:
                continue
            while True:
                raw = self._take_packet(buffer)
                if raw is None:
                    break
                self.motors.advance(time.monotonic())
                now = time.monotonic()
                for delay, reply in self._handle(raw):
                    self._outbox.append((now + delay, reply))
                self._send_due()
            # Drop a partial packet that never completes (noise), as a motor's parser would.
            if buffer and partial_since is None:
                partial_since = time.monotonic()
            elif not buffer:
                partial_since = None
            elif time.monotonic() - partial_since > 0.1:
                del buffer[:1]
                partial_since = None

    def _send_due(self) -> None:
        """Write the queued status packets whose time has come, in order (a late one holds up those
        behind it, as on a half-duplex line)."""
        due = bytearray()
        while self._outbox and self._outbox[0][0] <= time.monotonic():
            due += self._outbox.popleft()[1]
        if due and self._fds is not None:
            try:
                os.write(self._fds[0], due)
            except BlockingIOError:
                pass  # nobody reads and the pty's buffer is full: the bytes are lost, as on a wire

    @staticmethod
    def _take_packet(buffer: bytearray) -> bytes | None:
        while True:
            start = buffer.find(HEADER)
            if start < 0:
                del buffer[:max(0, len(buffer) - 3)]
                return None
            del buffer[:start]
            if len(buffer) < 7:
                return None
            length = int.from_bytes(buffer[5:7], "little")
            if not 3 <= length <= 1024:
                del buffer[:1]
                continue
            if len(buffer) < 7 + length:
                return None
            raw = bytes(buffer[:7 + length])
            del buffer[:7 + length]
            return raw

    def _handle(self, raw: bytes) -> list[tuple[float, bytes]]:
        """Apply an instruction packet; its replies as (delay s, status packet) in order."""
        dxl_id = raw[4]
        if crc16(raw[:-2]) != int.from_bytes(raw[-2:], "little"):
            self.bad_packets += 1
            if dxl_id in self.tables and dxl_id not in self.disconnected:
                return self._status(dxl_id, ERR_CRC)
            return []
        body = unstuff(raw[7:-2])
        inst = Instruction(dxl_id, body[0], body[1:], raw)
        self.log.append(inst)
        params = inst.params
        if inst.instruction == INST_SYNC_WRITE and dxl_id == BROADCAST:
            address, size = int.from_bytes(params[0:2], "little"), int.from_bytes(params[2:4], "little")
            for k in range(4, len(params), size + 1):
                motor = params[k]
                if self._hears(motor) and (motor, address) not in self.missed_sync_writes:
                    self._write(motor, address, params[k + 1:k + 1 + size])
            return []
        if inst.instruction in (INST_SYNC_READ, INST_FAST_SYNC_READ) and dxl_id == BROADCAST:
            address, size = int.from_bytes(params[0:2], "little"), int.from_bytes(params[2:4], "little")
            ids = [i for i in params[4:] if i in self.tables]
            if inst.instruction == INST_SYNC_READ:
                return [reply for i in ids for reply in self._status(i, 0, self._read(i, address, size))]
            return self._fast_reply(ids, address, size) if self.fast_sync_read and ids else []
        if inst.instruction == INST_WRITE and dxl_id == BROADCAST:
            address = int.from_bytes(params[0:2], "little")
            for i in self.tables:
                if self._hears(i):
                    self._write(i, address, params[2:])
            return []
        if not self._hears(dxl_id):
            return []
        if inst.instruction == INST_PING:
            return self._status(dxl_id, 0, self.tables[dxl_id][0:3])
        if inst.instruction == INST_READ:
            address, size = int.from_bytes(params[0:2], "little"), int.from_bytes(params[2:4], "little")
            if address + size > TABLE_SIZE:
                return self._status(dxl_id, ERR_ACCESS)
            return self._status(dxl_id, 0, self._read(dxl_id, address, size))
        if inst.instruction == INST_WRITE:
            address = int.from_bytes(params[0:2], "little")
            return self._status(dxl_id, 0 if self._write(dxl_id, address, params[2:]) else ERR_ACCESS)
        return self._status(dxl_id, ERR_INSTRUCTION)

    def _hears(self, motor: int) -> bool:
        return motor in self.tables and motor not in self.disconnected

    def _status(self, motor: int, error: int, params: bytes = b"") -> list[tuple[float, bytes]]:
        """`motor`'s status packet as [(delay, packet)], or [] when its reply is lost."""
        if motor in self.silent or motor in self.disconnected:
            return []
        if self.tables[motor][dx.ADDR_HARDWARE_ERROR]:
            error |= dx.ALERT_BIT
        body = bytes([INST_STATUS, error]) + bytes(params)
        return [(self.late.get(motor, 0.0), packet(motor, body, corrupt_crc=self._corrupt({motor})))]

    def _corrupt(self, motors: set[int]) -> bool:
        """Whether the next status packet (from `motors`) gets a wrong CRC."""
        if self.bad_crc_count > 0:
            self.bad_crc_count -= 1
            return True
        return bool(self.bad_crc & motors)

    def _fast_reply(self, ids: list[int], address: int, size: int) -> list[tuple[float, bytes]]:
        """One status packet from ID 0xFE laid out as the e-manual's Fast Sync Read example
        (Protocol 2.0): per motor error, ID, data and the CRC of the packet so far, the last
        motor's CRC being the packet's; not byte-stuffed. A motor that does not answer breaks the
        chain (the reply stops short of its announced length); it leaves as late as its latest motor."""
        announced = 1 + len(ids) * (size + 4)
        reply = bytearray(HEADER + bytes([BROADCAST]) + announced.to_bytes(2, "little") + bytes([INST_STATUS]))
        delay = max(self.late.get(i, 0.0) for i in ids)
        crc = crc16(reply)  # of the packet so far, as sent
        for i in ids:
            if i in self.silent or i in self.disconnected:
                return [(delay, bytes(reply))]
            error = dx.ALERT_BIT if self.tables[i][dx.ADDR_HARDWARE_ERROR] else 0
            block = bytearray([error, i]) + self._read(i, address, size)
            own = crc16(block, crc) ^ (0xFFFF if i in self.bad_block_crc else 0)
            if i in self.flipped_bits:
                bit = self.flipped_bits[i]
                block[2 + bit // 8] ^= 1 << (bit % 8)
            sent = bytes(block) + own.to_bytes(2, "little")
            reply += sent
            crc = crc16(sent, crc)
        if self._corrupt(set(ids)):
            reply[-2:] = (int.from_bytes(reply[-2:], "little") ^ 0xFFFF).to_bytes(2, "little")
        return [(delay, bytes(reply))]

    def _read(self, motor: int, address: int, size: int) -> bytes:
        table = self.tables[motor]
        if address + size > dx.ADDR_PRESENT_CURRENT:
            current, velocity, position = self.motors.present(motor)
            table[126:128] = (current & 0xFFFF).to_bytes(2, "little")
            table[128:132] = (velocity & 0xFFFFFFFF).to_bytes(4, "little")
            table[132:136] = (position & 0xFFFFFFFF).to_bytes(4, "little")
        return bytes(table[address:address + size])

    def _write(self, motor: int, address: int, data: bytes) -> bool:
        """Apply a write as the motor would; False (nothing written) for a read-only or EEPROM
        address while torque is on, or past the table."""
        table = self.tables[motor]
        end = address + len(data)
        if end > TABLE_SIZE or (address < dx.EEPROM_END and table[dx.ADDR_TORQUE_ENABLE]) \
                or any(a in READ_ONLY for a in range(address, end)):
            return False
        for a in range(address, end):
            if a == dx.ADDR_TORQUE_ENABLE:
                self._set_torque(motor, data[a - address] == 1)
            else:
                table[a] = data[a - address]
        if address <= dx.ADDR_GOAL_POSITION and end >= dx.ADDR_GOAL_POSITION + 4:
            ticks = int.from_bytes(table[dx.ADDR_GOAL_POSITION:dx.ADDR_GOAL_POSITION + 4], "little", signed=True)
            self.motors.set_goal(motor, ticks)
        return True

    def _set_torque(self, motor: int, on: bool) -> None:
        on = on and not self.tables[motor][dx.ADDR_HARDWARE_ERROR]
        self.tables[motor][dx.ADDR_TORQUE_ENABLE] = int(on)
        self.motors.set_torque(motor, on)


class VirtualRealSense:
    """A software RealSense (rs.software_device) with a colour stream (rgb8) and, if depth, a z16
    depth stream; frames come from `push` or from `stream_mujoco`.

    camera: a `cgwm_env.render.camera.Camera` (single) giving the colour stream's size and
    intrinsics; RealSense puts pixel centres at integers, so ppx = cx - 0.5, ppy = cy - 0.5.
    depth_camera: the depth stream's size and intrinsics (default the colour's: depth aligned
    to colour), T_color_depth (4, 4) depth-camera coordinates to colour-camera coordinates
    (default the identity), registered as the streams' extrinsics. depth_units: m per z16 unit.
    """

    def __init__(self, camera, fps: int = 30, depth: bool = False, depth_units: float = 0.001, depth_camera=None,
                 T_color_depth=None):
        import pyrealsense2 as rs

        self._rs = rs
        self.width, self.height, self.fps, self.depth_units = camera.width, camera.height, fps, depth_units
        self.depth_camera = camera if depth_camera is None else depth_camera
        self.device = rs.software_device()
        self.device.register_info(rs.camera_info.name, "cgwm virtual D456")
        self.device.register_info(rs.camera_info.serial_number, "virtual")
        self._streams = {}
        specs = [("RGB Camera", rs.stream.color, rs.format.rgb8, 3, camera)]
        if depth:
            specs.append(("Stereo Module", rs.stream.depth, rs.format.z16, 2, self.depth_camera))
        for uid, (name, stream, fmt, bpp, cam) in enumerate(specs):
            sensor = self.device.add_sensor(name)
            if stream == rs.stream.depth:
                sensor.add_read_only_option(rs.option.depth_units, depth_units)
            spec = rs.video_stream()
            spec.type, spec.index, spec.uid, spec.fmt, spec.bpp = stream, 0, uid, fmt, bpp
            spec.width, spec.height, spec.fps, spec.intrinsics = cam.width, cam.height, fps, _rs_intrinsics(rs, cam)
            profile = sensor.add_video_stream(spec).as_video_stream_profile()
            self._streams[stream] = (sensor, profile, bpp, cam)
        if depth:
            T = np.eye(4) if T_color_depth is None else np.asarray(T_color_depth, dtype=np.float64)
            extrinsics = rs.extrinsics()
            extrinsics.rotation = [float(x) for x in T[:3, :3].T.ravel()]  # librealsense: column-major
            extrinsics.translation = [float(x) for x in T[:3, 3]]
            self._streams[rs.stream.depth][1].register_extrinsics_to(self._streams[rs.stream.color][1], extrinsics)
        self._frame_number = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None  # what stopped the streaming thread, if anything
        self.truth: dict = {}  # frame number -> what the scene was (stream_mujoco with a software camera)

    def push(self, rgb: np.ndarray, depth: np.ndarray | None = None, timestamp: float | None = None) -> int:
        """Inject one frame: rgb (H, W, 3) uint8 and, with a depth stream, depth (h, w) m on the
        depth grid (float; stored as z16 in depth_units, 0 = no depth); timestamp: ms (default:
        the wall clock). Returns its frame number."""
        rs = self._rs
        rgb = np.ascontiguousarray(rgb)
        if rgb.shape != (self.height, self.width, 3) or rgb.dtype != np.uint8:
            raise ValueError(f"rgb: expected ({self.height}, {self.width}, 3) uint8, got {rgb.shape} {rgb.dtype}")
        frames = [(rs.stream.color, rgb)]
        if rs.stream.depth in self._streams:
            shape = (self.depth_camera.height, self.depth_camera.width)
            depth = np.asarray(depth, dtype=np.float64) if depth is not None else None
            if depth is None or depth.shape != shape or not np.isfinite(depth).all():
                raise ValueError(f"depth: expected finite {shape} depths (m) for the depth stream")
            z16 = np.clip(np.rint(depth / self.depth_units), 0, 65535).astype(np.uint16)
            frames.append((rs.stream.depth, z16))
        self._frame_number += 1
        stamp = time.time() * 1000.0 if timestamp is None else float(timestamp)
        for stream, pixels in frames:
            sensor, profile, bpp, cam = self._streams[stream]
            frame = rs.software_video_frame()
            frame.pixels, frame.stride, frame.bpp = pixels, cam.width * bpp, bpp
            frame.timestamp, frame.domain = stamp, rs.timestamp_domain.system_time
            frame.frame_number, frame.profile = self._frame_number, profile
            if stream == rs.stream.depth:
                frame.depth_units = self.depth_units
            sensor.on_video_frame(frame)
        return self._frame_number

    def stream_mujoco(self, sim: MujocoMotors, camera_name: str = "palm_cam", software=None, drop=(),
                      clock: float = 1.0) -> None:
        """Feed renders of `camera_name` in `sim` from a thread (MuJoCo's renderer, made in that
        thread) until close(), one every clock / fps s. software: a
        cgwm_env.data.camera_model.SoftwareCamera whose scene dressing sim's model has
        (prepare_spec); its frames go through the sensor, and `truth` keeps, per frame number,
        the object's and the hand's masks and the object's pose. drop: frame numbers not
        delivered (a camera dropping frames: the reader sees the last frame again)."""
        if self._thread is not None:
            raise RuntimeError("stream_mujoco: already streaming")
        with_depth = self._rs.stream.depth in self._streams
        drop = set(drop)

        def run():
            import mujoco

            try:
                if software is None:
                    renderer = mujoco.Renderer(sim.model, self.height, self.width)
                else:
                    rig = SoftwareRig(sim.model, sim.data, camera_name, self.width, self.height, software, sim.lock)
                    obj = sim.model.body("object").id
                    geoms = sim.model.geom_bodyid
                    is_object, is_hand = geoms == obj, (geoms != obj) & (geoms != 0)
                period, next_time = clock / self.fps, time.monotonic()
                while not self._stop.is_set():
                    if software is None:
                        with sim.lock:
                            renderer.update_scene(sim.data, camera_name)
                            stamp = _exposure_stamp(sim)
                        rgb = renderer.render()
                        depth = None
                        if with_depth:
                            renderer.enable_depth_rendering()
                            depth = renderer.render()
                            renderer.disable_depth_rendering()
                        truth = None
                    else:
                        with sim.lock:
                            pose = (sim.data.xpos[obj].copy(), sim.data.xquat[obj].copy())
                            stamp = _exposure_stamp(sim)
                        clean, depth, seg = rig.clean()
                        rgb = rig.sensor.color(clean)
                        depth = rig.sensor.depth(depth, float(rig.depth_camera.fx)) if with_depth else None
                        is_geom = seg[..., 1] == mujoco.mjtObj.mjOBJ_GEOM
                        ids = np.where(is_geom, seg[..., 0], -1)
                        truth = {"mask": is_geom & is_object[np.maximum(ids, 0)] & (ids >= 0),
                                 "hand_mask": is_geom & is_hand[np.maximum(ids, 0)] & (ids >= 0),
                                 "object_pos": pose[0], "object_quat": pose[1]}
                    if self._frame_number + 1 in drop:
                        self._frame_number += 1  # taken but never delivered
                    else:
                        number = self.push(rgb, depth, stamp)
                        if truth is not None:
                            self.truth[number] = truth
                    next_time += period
                    self._stop.wait(max(0.0, next_time - time.monotonic()))
                (renderer if software is None else rig).close()
            except BaseException as err:  # reported by close(); the reader sees frames stop
                self.error = err

        self._thread = threading.Thread(target=run, name="virtual-realsense", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop streaming; re-raise what stopped the streaming thread, if anything did."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.error is not None:
            raise RuntimeError(f"virtual RealSense: the render thread failed: {self.error!r}") from self.error

    def __enter__(self) -> "VirtualRealSense":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _exposure_stamp(sim: MujocoMotors) -> float:
    """The wall-clock time (ms) that sim's scene is at, as a camera stamps a frame's exposure
    (call it holding sim.lock)."""
    return (time.time() - (time.monotonic() - sim.state_time)) * 1000.0


def _rs_intrinsics(rs, camera):
    """pyrealsense2 intrinsics of our Camera (RealSense puts pixel centres at integers)."""
    intrinsics = rs.intrinsics()
    intrinsics.width, intrinsics.height = camera.width, camera.height
    intrinsics.fx, intrinsics.fy = float(camera.fx), float(camera.fy)
    intrinsics.ppx, intrinsics.ppy = float(camera.cx) - 0.5, float(camera.cy) - 0.5
    intrinsics.model, intrinsics.coeffs = rs.distortion.none, [0.0] * 5
    return intrinsics
