"""Intel RealSense D456 capture through pyrealsense2: colour (rgb8) and optional depth (z16).

One code path serves a real camera and `rs.software_device` (hardware.virtual.VirtualRealSense):
the colour and depth sensors are opened at the requested size and rate, each streams into a
one-frame queue, and `read` returns the newest frames. `intrinsics_to_camera` turns the colour
stream's intrinsics into a `cgwm_env.render.camera.Camera` (RealSense puts pixel centres at integers,
ours at +0.5: cx = ppx + 0.5). `record` writes a clip straight into the dataset format
(docs/datasets.md); depth, when streamed, goes beside it in depth.npz (metres, on the depth
camera's grid, with its intrinsics and its pose in the colour camera from the streams' extrinsics).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cgwm_env.data.dataset import camera_to_meta, save_dataset
from cgwm_env.data.depth import DEPTH_FILE, save_depth
from cgwm_env.render.camera import Camera


class RealSenseError(RuntimeError):
    """No camera, no matching stream, or no frames: the message says which and what to check."""


@dataclass(frozen=True)
class Frames:
    """The newest frames: color (H, W, 3) uint8; depth (h, w) float32 m (0 = no depth) or None;
    timestamp: the colour frame's, ms; frame_number: the colour frame's."""

    color: np.ndarray
    depth: np.ndarray | None
    timestamp: float
    frame_number: int


def find_device(serial: str | None = None):
    """The connected RealSense (the one with `serial`, if given); RealSenseError if there is none."""
    import pyrealsense2 as rs

    devices = list(rs.context().query_devices())
    if not devices:
        raise RealSenseError("no RealSense device connected (pyrealsense2 finds none): plug the D456 into a "
                             "USB 3 port and check it with `rs-enumerate-devices`")
    if serial is None:
        return devices[0]
    for device in devices:
        if device.get_info(rs.camera_info.serial_number) == serial:
            return device
    found = [d.get_info(rs.camera_info.serial_number) for d in devices]
    raise RealSenseError(f"serial: no RealSense with serial number {serial!r}; connected: {found}")


def intrinsics_to_camera(intrinsics, T_cw=None) -> Camera:
    """Our Camera from pyrealsense2 intrinsics (distortion is not carried: the D456 colour stream
    reports near-zero coefficients) and a world-to-camera T_cw (4, 4) (identity if None)."""
    T_cw = torch.eye(4) if T_cw is None else torch.as_tensor(T_cw, dtype=torch.float32)
    return Camera(float(intrinsics.fx), float(intrinsics.fy), float(intrinsics.ppx) + 0.5,
                  float(intrinsics.ppy) + 0.5, int(intrinsics.width), int(intrinsics.height), T_cw)


class RealSenseCamera:
    """Colour (and depth) streams of a RealSense. device: a pyrealsense2 device (a software device
    included) or None for the connected camera (`serial` picks one); width, height (px) and fps
    select the colour profile; depth=True adds the depth sensor's z16 stream at the same rate and
    at depth_size (width, height) px (default the colour's size). Use as a context manager, or
    call close()."""

    def __init__(self, device=None, width: int = 640, height: int = 480, fps: int = 30, depth: bool = False,
                 serial: str | None = None, depth_size: tuple | None = None):
        import pyrealsense2 as rs

        self._rs = rs
        self.device = find_device(serial) if device is None else device
        self.width, self.height, self.fps = width, height, fps
        self._sensors = []
        self._queues = {}
        self._latest = {}  # stream -> the newest frame read so far
        wanted = [(rs.stream.color, rs.format.rgb8, (width, height))]
        if depth:
            wanted.append((rs.stream.depth, rs.format.z16, tuple(depth_size or (width, height))))
        try:
            for stream, fmt, size in wanted:
                sensor, profile = self._find_profile(stream, fmt, size)
                queue = rs.frame_queue(1, keep_frames=True)  # holds the newest frame only
                sensor.open(profile)
                self._sensors.append(sensor)
                sensor.start(queue)
                self._queues[stream] = (queue, profile.as_video_stream_profile(), sensor)
        except BaseException:
            self.close()
            raise
        self.intrinsics = self._queues[rs.stream.color][1].get_intrinsics()
        self.depth_intrinsics = self._queues[rs.stream.depth][1].get_intrinsics() if depth else None
        self.T_color_depth = None  # (4, 4) depth-camera coordinates to colour-camera coordinates
        if depth:
            e = self._queues[rs.stream.depth][1].get_extrinsics_to(self._queues[rs.stream.color][1])
            self.T_color_depth = np.eye(4)
            self.T_color_depth[:3, :3] = np.asarray(e.rotation, dtype=np.float64).reshape(3, 3).T  # column-major
            self.T_color_depth[:3, 3] = e.translation

    def _find_profile(self, stream, fmt, size):
        offered = []
        for sensor in self.device.query_sensors():
            for profile in sensor.get_stream_profiles():
                if profile.stream_type() != stream or profile.format() != fmt:
                    continue
                video = profile.as_video_stream_profile()
                offered.append(f"{video.width()}x{video.height()}@{profile.fps()}")
                if (video.width(), video.height(), profile.fps()) == (*size, self.fps):
                    return sensor, profile
        raise RealSenseError(f"width/height/fps: the camera has no {stream.name} {fmt.name} stream at "
                             f"{size[0]}x{size[1]}@{self.fps}; it offers {sorted(set(offered)) or 'none'}")

    def camera(self, T_cw=None) -> Camera:
        """The colour stream as our Camera, posed by T_cw (4, 4) world-to-camera (from calibration)."""
        return intrinsics_to_camera(self.intrinsics, T_cw)

    def depth_camera(self) -> Camera | None:
        """The depth stream's grid as our Camera (its own intrinsics; pose the identity), or None."""
        return None if self.depth_intrinsics is None else intrinsics_to_camera(self.depth_intrinsics)

    def read(self, timeout: float = 1.0) -> Frames:
        """The newest colour (and depth) frames (the same as the last call's if no newer arrived);
        waits up to `timeout` s for a first one."""
        rs = self._rs
        color = self._newest(rs.stream.color, timeout)
        depth = None
        if rs.stream.depth in self._queues:
            frame = self._newest(rs.stream.depth, timeout).as_depth_frame()
            depth = np.asanyarray(frame.get_data()).astype(np.float32) * frame.get_units()
        image = np.array(np.asanyarray(color.get_data()), dtype=np.uint8)  # copied: the frame is released
        return Frames(image, depth, float(color.get_timestamp()), int(color.get_frame_number()))

    def _newest(self, stream, timeout: float):
        """The newest frame of `stream`: the last one queued, or the one returned before if none
        arrived since; waits up to `timeout` s only for the very first."""
        queue = self._queues[stream][0]
        frame = self._latest.get(stream)
        while True:
            more, newer = queue.try_wait_for_frame(0 if frame is not None else int(timeout * 1000))
            if not more:
                break
            frame = newer
        if frame is None:
            raise RealSenseError(f"no {stream.name} frame within {timeout} s: is the camera streaming (USB 3)?")
        self._latest[stream] = frame
        return frame

    def close(self) -> None:
        self._latest.clear()
        for sensor in self._sensors:
            sensor.stop()
            sensor.close()
        self._sensors = []

    def __enter__(self) -> "RealSenseCamera":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def record(camera: RealSenseCamera, path, num_frames: int, T_cw=None, scenario: str = "capture",
           object_name: str = "unknown") -> Path:
    """Record num_frames consecutive colour frames (waiting for each new one) into a dataset
    folder at `path` (docs/datasets.md): frames, empty masks (not segmented; meta `masks_empty`),
    states.npz with `times` from the frames' timestamps, and depth.npz (cgwm_env.data.depth: the
    depth stream's maps, intrinsics and T_color_depth) when depth is streamed. T_cw: the camera's calibrated pose.
    A dropped frame (a gap in frame numbers) raises RealSenseError."""
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f"num_frames: expected a positive integer, got {num_frames!r}")
    images, depths, stamps, numbers = [], [], [], []
    for _ in range(num_frames):
        frames = _next_frames(camera, numbers[-1] if numbers else None)
        images.append(frames.color)
        depths.append(frames.depth)
        stamps.append(frames.timestamp)
        numbers.append(frames.frame_number)
    gaps = np.nonzero(np.diff(numbers) != 1)[0]
    if len(gaps):
        raise RealSenseError(f"frames dropped after frame {numbers[gaps[0]]} (next was {numbers[gaps[0] + 1]}); "
                             "lower the resolution or use a USB 3 port")
    images = np.stack(images)
    times = (np.asarray(stamps) - stamps[0]) / 1000.0
    meta = {"scenario": scenario, "object": object_name, "fps": float(camera.fps),
            "cameras": [camera_to_meta(camera.camera(T_cw))], "masks_empty": True,
            "source": {"device": camera.device.get_info(camera._rs.camera_info.name)}}
    if camera.depth_intrinsics is not None:
        meta["depth"] = DEPTH_FILE
    path = save_dataset(path, meta, images, np.zeros(images.shape[:3], bool), {"times": times})
    if camera.depth_intrinsics is not None:
        save_depth(path / DEPTH_FILE, np.stack(depths), camera.depth_camera(), camera.T_color_depth)
    return path


def _next_frames(camera: RealSenseCamera, after: int | None, timeout: float = 1.0) -> Frames:
    """The first frames newer than frame number `after`."""
    deadline = time.monotonic() + timeout
    while True:
        frames = camera.read(timeout)
        if after is None or frames.frame_number != after:
            return frames
        if time.monotonic() > deadline:
            raise RealSenseError(f"no new frame within {timeout} s after frame {after}")
        time.sleep(0.2 / camera.fps)
