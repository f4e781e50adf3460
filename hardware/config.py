"""Hardware settings from YAML (configs/hardware.yaml shows every key): the hand's bus and motors,
the camera's streams, the calibration markers, and the virtual plant's camera."""

from __future__ import annotations

from dataclasses import dataclass, field

from cgwm_env.config import read_yaml_mapping, settings_from_mapping
from hardware.calibration import MarkerLayout
from hardware.dynamixel import HandConfig


@dataclass(frozen=True)
class CameraSettings:
    """The colour stream: width, height (px), fps; depth: also stream depth, at depth_width x
    depth_height px (default the colour's size; the virtual real-looking camera's own when
    not given)."""

    width: int = 640
    height: int = 480
    fps: int = 30
    depth: bool = False
    depth_width: int | None = None
    depth_height: int | None = None

    def __post_init__(self):
        for name in ("width", "height", "fps", "depth_width", "depth_height"):
            value = getattr(self, name)
            if value is None and name.startswith("depth"):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"camera.{name}: expected a positive integer, got {value!r}")
        if (self.depth_width is None) != (self.depth_height is None):
            raise ValueError("camera.depth_width, depth_height: give both or neither")
        if not isinstance(self.depth, bool):
            raise ValueError(f"camera.depth: expected true or false, got {self.depth!r}")


@dataclass(frozen=True)
class VirtualSettings:
    """The virtual plant of `cgwm play --virtual`. camera: "flat" (MuJoCo's flat colours) or
    "real" (cgwm_env.data.camera_model's SoftwareCamera: light and shadows, a wooden table,
    sensor drift and noise, D456-like depth, a calibration error); seed: that camera's noise;
    drop_frames: frame numbers the camera does not deliver; clock: its frame period as a multiple
    of 1/fps (a camera whose clock runs off its nominal rate); time_scale: wall-clock seconds per
    simulated second (above 1 the plant, the player and the camera all run that many times
    slower than real time: the real-looking camera's shadows take longer than a frame to draw on
    a small CPU)."""

    camera: str = "flat"
    seed: int = 0
    drop_frames: tuple = ()
    clock: float = 1.0
    time_scale: float = 1.0

    def __post_init__(self):
        if self.camera not in ("flat", "real"):
            raise ValueError(f"virtual.camera: expected flat or real, got {self.camera!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"virtual.seed: expected an integer, got {self.seed!r}")
        if not all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in self.drop_frames):
            raise ValueError(f"virtual.drop_frames: expected frame numbers >= 1, got {self.drop_frames!r}")
        if not isinstance(self.clock, (int, float)) or not 0.5 <= self.clock <= 2.0:
            raise ValueError(f"virtual.clock: expected a period factor in [0.5, 2], got {self.clock!r}")
        if isinstance(self.time_scale, bool) or not isinstance(self.time_scale, (int, float)) \
                or not 1.0 <= self.time_scale <= 20.0:
            raise ValueError(f"virtual.time_scale: expected a factor in [1, 20], got {self.time_scale!r}")


@dataclass(frozen=True)
class HardwareConfig:
    """hand: bus and motors; camera: streams; markers: the calibration layout, or None;
    virtual: the virtual plant's camera."""

    hand: HandConfig = field(default_factory=HandConfig)
    camera: CameraSettings = field(default_factory=CameraSettings)
    markers: MarkerLayout | None = None
    virtual: VirtualSettings = field(default_factory=VirtualSettings)


def load_config(path=None) -> HardwareConfig:
    """Settings from a YAML file with optional sections hand, camera and calibration; defaults
    where a section or key is absent (None: all defaults). Unknown keys raise ValueError."""
    if path is None:
        return HardwareConfig()
    data = read_yaml_mapping(path)
    unknown = sorted(set(data) - {"hand", "camera", "calibration", "virtual"})
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown section in {path}; expected hand, camera, calibration, virtual")
    hand = settings_from_mapping(HandConfig, data.get("hand") or {}, "hand", str(path))
    camera = settings_from_mapping(CameraSettings, data.get("camera") or {}, "camera", str(path))
    markers = MarkerLayout.from_mapping(data["calibration"]) if data.get("calibration") else None
    virtual = settings_from_mapping(VirtualSettings, data.get("virtual") or {}, "virtual", str(path))
    return HardwareConfig(hand, camera, markers, virtual)
