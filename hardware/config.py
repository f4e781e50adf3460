"""Hardware settings from YAML (configs/hardware.yaml shows every key): the hand's bus and motors,
the camera's streams, and the calibration markers."""

from __future__ import annotations

from dataclasses import dataclass, field

from cgwm_env.config import read_yaml_mapping, settings_from_mapping
from hardware.calibration import MarkerLayout
from hardware.dynamixel import HandConfig


@dataclass(frozen=True)
class CameraSettings:
    """The colour stream: width, height (px), fps; depth: also stream depth."""

    width: int = 640
    height: int = 480
    fps: int = 30
    depth: bool = False

    def __post_init__(self):
        for name in ("width", "height", "fps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"camera.{name}: expected a positive integer, got {value!r}")
        if not isinstance(self.depth, bool):
            raise ValueError(f"camera.depth: expected true or false, got {self.depth!r}")


@dataclass(frozen=True)
class HardwareConfig:
    """hand: bus and motors; camera: streams; markers: the calibration layout, or None."""

    hand: HandConfig = field(default_factory=HandConfig)
    camera: CameraSettings = field(default_factory=CameraSettings)
    markers: MarkerLayout | None = None


def load_config(path=None) -> HardwareConfig:
    """Settings from a YAML file with optional sections hand, camera and calibration; defaults
    where a section or key is absent (None: all defaults). Unknown keys raise ValueError."""
    if path is None:
        return HardwareConfig()
    data = read_yaml_mapping(path)
    unknown = sorted(set(data) - {"hand", "camera", "calibration"})
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown section in {path}; expected hand, camera, calibration")
    hand = settings_from_mapping(HandConfig, data.get("hand") or {}, "hand", str(path))
    camera = settings_from_mapping(CameraSettings, data.get("camera") or {}, "camera", str(path))
    markers = MarkerLayout.from_mapping(data["calibration"]) if data.get("calibration") else None
    return HardwareConfig(hand, camera, markers)
