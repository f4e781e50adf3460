"""The dataset format: a folder of PNG frames and masks, a meta.json, an optional states.npz and
optional hand masks.

docs/datasets.md describes the format for users who write it by hand. Loading checks everything
and raises a ValueError that names the file or field at fault.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch

from cgwm_env.checks import read_npz
from cgwm_env.config import is_number
from cgwm_env.render.camera import Camera

FORMAT, VERSION = "cgwm-dataset", 1
# Known arrays of states.npz and their per-frame shapes (others are allowed with a leading T).
# joint_pos and joint_target are the LEAP Hand's 16 joints in sim order (cgwm_env.physics.hand_mjcf.JOINT_NAMES), rad.
STATE_SHAPES = {"times": (), "object_pos": (3,), "object_quat": (4,), "object_vel": (3,),
                "object_angvel": (3,), "pusher_pos": (3,), "pusher_vel": (3,), "joint_pos": (16,),
                "joint_target": (16,)}


@dataclass(frozen=True)
class Dataset:
    """A loaded dataset. images: (T, H, W, 3) float32 in [0, 1]; masks: (T, H, W) float32 in
    {0, 1}; cameras: one Camera per frame (a clip repeats its fixed camera); states: the arrays
    of states.npz or None; background: (H, W, 3) float32 from background.png or None;
    hand_masks: (T, H, W) float32 in {0, 1} from hand_masks/ or None."""

    meta: dict
    images: torch.Tensor
    masks: torch.Tensor
    cameras: list
    states: dict | None
    background: torch.Tensor | None = None
    hand_masks: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.images.shape[0]


def camera_to_meta(camera: Camera) -> dict:
    """A single (unbatched) Camera as meta.json's camera entry: fx, fy, cx, cy (px) and T_cw (4x4)."""
    if camera.batch_shape != ():
        raise ValueError(f"camera: expected a single camera, got batch shape {tuple(camera.batch_shape)}")
    return {"fx": float(camera.fx), "fy": float(camera.fy), "cx": float(camera.cx), "cy": float(camera.cy),
            "T_cw": camera.T_cw.double().tolist()}


def frame_name(index: int) -> str:
    """File name of frame `index` in frames/ and masks/."""
    return f"{index:05d}.png"


def save_dataset(path, meta: dict, images: np.ndarray, masks: np.ndarray, states: dict | None = None,
                 hand_masks: np.ndarray | None = None) -> Path:
    """Write a dataset folder at `path` and return it.

    meta: at least `scenario`, `object`, `cameras` (a list of 1 or T camera dicts, see
    camera_to_meta) and, for more than one frame with one camera, `fps`; `format`, `version`,
    `width`, `height` and `num_frames` are filled in. images: (T, H, W, 3) uint8; masks and
    hand_masks (or None): (T, H, W) bool or uint8 0/1/255; states: arrays with a leading T (see
    STATE_SHAPES) or None.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images: expected (T, H, W, 3) uint8, got {images.shape} {images.dtype}")
    masks = _binary(masks, images.shape[:3], "masks")
    if hand_masks is not None:
        hand_masks = _binary(hand_masks, images.shape[:3], "hand_masks")
    T, H, W = images.shape[:3]
    meta = {"format": FORMAT, "version": VERSION, **meta, "width": W, "height": H, "num_frames": T}
    _check_meta(meta, "meta")
    states = None if states is None else {k: np.asarray(v) for k, v in states.items()}
    if states is not None:
        _check_states(states, T, meta.get("fps"), "states")
    path = Path(path)
    (path / "frames").mkdir(parents=True, exist_ok=True)
    (path / "masks").mkdir(exist_ok=True)
    if hand_masks is not None:
        (path / "hand_masks").mkdir(exist_ok=True)
    for t in range(T):
        iio.imwrite(path / "frames" / frame_name(t), images[t])
        iio.imwrite(path / "masks" / frame_name(t), masks[t].astype(np.uint8) * 255)
        if hand_masks is not None:
            iio.imwrite(path / "hand_masks" / frame_name(t), hand_masks[t].astype(np.uint8) * 255)
    if states is not None:
        np.savez(path / "states.npz", **states)
    text = json.dumps(meta, indent=1)  # then one line per list of numbers (a matrix row)
    text = re.sub(r"\[\s+([-+0-9.eE,\s]+?)\s+\]",
                  lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text)
    (path / "meta.json").write_text(text)
    return path


def off_clock_frames(states: dict | None, fps: float) -> list[int]:
    """Frames whose image is not of their time: repeated frame numbers (the camera dropped one
    and the last was read again) or capture times (states frame_time) more than half a period
    off the clip's clock, after the median offset."""
    if not states:
        return []
    bad = set()
    if "frame_number" in states:
        numbers = np.asarray(states["frame_number"])
        bad |= {int(k) for k in np.nonzero(numbers[1:] == numbers[:-1])[0] + 1}
    if "frame_time" in states:
        lag = np.asarray(states["frame_time"], float) - np.asarray(states["times"], float)
        bad |= {int(k) for k in np.nonzero(np.abs(lag - np.median(lag)) > 0.5 / fps)[0]}
    return sorted(bad)


def _binary(masks, shape: tuple, name: str) -> np.ndarray:
    """Masks of `shape` (T, H, W) as bool; a ValueError names `name` otherwise."""
    masks = np.asarray(masks)
    if masks.shape != shape:
        raise ValueError(f"{name}: expected shape {shape} (as images), got {masks.shape}")
    if masks.dtype != bool and not (np.isin(masks, (0, 1)).all() or np.isin(masks, (0, 255)).all()):
        raise ValueError(f"{name}: expected bool, or values 0/1 or 0/255")
    return masks > 0


def save_background(path, image: np.ndarray) -> None:
    """Write background.png (H, W, 3) uint8: the view without the object (and the pusher or the hand)."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image: expected (H, W, 3) uint8, got {image.shape} {image.dtype}")
    iio.imwrite(Path(path) / "background.png", image)


def load_dataset(path) -> Dataset:
    """Read and check the dataset folder `path` (see docs/datasets.md)."""
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"path: no dataset folder at {path}")
    meta_file = path / "meta.json"
    if not meta_file.is_file():
        raise ValueError(f"{meta_file}: missing")
    try:
        meta = json.loads(meta_file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{meta_file}: not valid JSON ({err})") from err
    _check_meta(meta, str(meta_file))
    T, H, W = meta["num_frames"], meta["height"], meta["width"]
    images = _read_series(path, "frames", T, (H, W, 3))
    masks = _read_masks(path, "masks", T, (H, W))
    hand_masks = None
    if (path / "hand_masks").exists():
        hand_masks = torch.from_numpy(_read_masks(path, "hand_masks", T, (H, W)) > 0).float()
    states = None
    if (path / "states.npz").exists():
        states = read_npz(path / "states.npz", "states.npz")
        _check_states(states, T, meta.get("fps"), str(path / "states.npz"))
    background = None
    if (path / "background.png").exists():
        background = _read_png(path / "background.png", (H, W, 3))
        background = torch.from_numpy(background).float() / 255.0
    cams = [Camera(c["fx"], c["fy"], c["cx"], c["cy"], W, H, torch.tensor(c["T_cw"], dtype=torch.float32))
            for c in meta["cameras"]]
    cameras = cams * T if len(cams) == 1 else cams
    return Dataset(meta, torch.from_numpy(images).float() / 255.0, torch.from_numpy(masks > 0).float(),
                   cameras, states, background, hand_masks)


def _read_png(file: Path, shape: tuple) -> np.ndarray:
    try:
        image = iio.imread(file)
    except Exception as err:  # imageio raises several types for unreadable files
        raise ValueError(f"{file}: cannot read the image ({err})") from err
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.shape != shape or image.dtype != np.uint8:
        kind = "an RGB" if len(shape) == 3 else "a single-channel"
        raise ValueError(f"{file}: expected {kind} uint8 image of shape {shape}, "
                         f"got {image.shape} {image.dtype}")
    return image


def _read_series(path: Path, folder: str, T: int, shape: tuple) -> np.ndarray:
    """Frames 0..T-1 of `folder`; complains about a missing or an extra file."""
    names = {frame_name(t) for t in range(T)}
    if not (path / folder).is_dir():
        raise ValueError(f"{path / folder}: missing folder (meta.json num_frames = {T})")
    extra = sorted(f.name for f in (path / folder).iterdir() if f.name not in names)
    if extra:
        raise ValueError(f"{path / folder}: unexpected file {extra[0]} (meta.json num_frames = {T}, "
                         f"expected {frame_name(0)} to {frame_name(T - 1)})")
    out = np.empty((T, *shape), np.uint8)
    for t in range(T):
        file = path / folder / frame_name(t)
        if not file.is_file():
            raise ValueError(f"{file}: missing frame {t} (meta.json num_frames = {T})")
        out[t] = _read_png(file, shape)
    return out


def _read_masks(path: Path, folder: str, T: int, shape: tuple) -> np.ndarray:
    """Masks 0..T-1 of `folder` (T, H, W) uint8, each holding only 0 and 255."""
    masks = _read_series(path, folder, T, shape)
    for t in range(T):
        if not np.isin(masks[t], (0, 255)).all():
            raise ValueError(f"{path / folder / frame_name(t)}: expected values 0 or 255 only")
    return masks


def _check_meta(meta: dict, where: str) -> None:
    """Check meta.json's fields; errors name `where` and the field."""
    if not isinstance(meta, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(meta).__name__}")
    missing = [k for k in ("format", "version", "scenario", "object", "width", "height", "num_frames", "cameras")
               if k not in meta]
    if missing:
        raise ValueError(f"{where}: missing field(s) {', '.join(missing)}")
    if meta["format"] != FORMAT or meta["version"] != VERSION:
        raise ValueError(f"{where}: format/version: expected {FORMAT!r} version {VERSION}, "
                         f"got {meta['format']!r} version {meta['version']!r}")
    for key in ("width", "height", "num_frames"):
        if isinstance(meta[key], bool) or not isinstance(meta[key], int) or meta[key] <= 0:
            raise ValueError(f"{where}: {key}: expected a positive integer, got {meta[key]!r}")
    T = meta["num_frames"]
    fps = meta.get("fps")
    if fps is not None and (not is_number(fps) or not fps > 0):
        raise ValueError(f"{where}: fps: expected a positive number (frames per second), got {fps!r}")
    cams = meta["cameras"]
    if not isinstance(cams, list) or len(cams) not in (1, T):
        got = len(cams) if isinstance(cams, list) else type(cams).__name__
        raise ValueError(f"{where}: cameras: expected a list of 1 camera (fixed) or num_frames = {T}, got {got}")
    if len(cams) == 1 and T > 1 and fps is None:
        raise ValueError(f"{where}: fps: a clip (one fixed camera, {T} frames) needs a frame rate")
    for i, cam in enumerate(cams):
        _check_camera(cam, f"{where}: cameras[{i}]")
    physics = meta.get("physics")
    if physics is not None:
        if not isinstance(physics, dict):
            raise ValueError(f"{where}: physics: expected a JSON object, got {type(physics).__name__}")
        if "mass" in physics and (not is_number(physics["mass"]) or not physics["mass"] > 0):
            raise ValueError(f"{where}: physics.mass: expected a positive number (kg), got {physics['mass']!r}")
        if "inertia" in physics:
            inertia = _array(physics["inertia"], (3, 3), f"{where}: physics.inertia")
            if not np.allclose(inertia, inertia.T, rtol=1e-6, atol=1e-12) or np.linalg.eigvalsh(inertia).min() <= 0:
                raise ValueError(f"{where}: physics.inertia: expected a symmetric positive definite matrix (kg m^2)")
        if "com" in physics:
            _array(physics["com"], (3,), f"{where}: physics.com")


def _check_camera(cam, where: str) -> None:
    if not isinstance(cam, dict):
        raise ValueError(f"{where}: expected an object with fx, fy, cx, cy, T_cw, got {type(cam).__name__}")
    missing = [k for k in ("fx", "fy", "cx", "cy", "T_cw") if k not in cam]
    if missing:
        raise ValueError(f"{where}: missing field(s) {', '.join(missing)}")
    for key in ("fx", "fy", "cx", "cy"):
        if not is_number(cam[key]) or not math.isfinite(cam[key]) or (key in ("fx", "fy") and cam[key] <= 0):
            raise ValueError(f"{where}.{key}: expected a finite{' positive' if key[0] == 'f' else ''} "
                             f"number (px), got {cam[key]!r}")
    T = _array(cam["T_cw"], (4, 4), f"{where}.T_cw")
    R = T[:3, :3]
    if not np.allclose(T[3], (0, 0, 0, 1), atol=1e-6):
        raise ValueError(f"{where}.T_cw: expected a last row 0 0 0 1, got {T[3].tolist()}")
    if not np.allclose(R @ R.T, np.eye(3), atol=1e-4) or np.linalg.det(R) < 0:
        raise ValueError(f"{where}.T_cw: expected a rotation (orthonormal, det +1) in its upper-left 3x3")


def _array(value, shape: tuple, where: str) -> np.ndarray:
    """`value` as a finite float64 array of `shape`."""
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: expected numbers of shape {shape} ({err})") from err
    if a.shape != shape:
        raise ValueError(f"{where}: expected shape {shape}, got {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{where}: expected finite values, got NaN or inf")
    return a


def _check_states(states: dict, T: int, fps, where: str) -> None:
    if "times" not in states:
        raise ValueError(f"{where}: missing array 'times'")
    for key, a in states.items():
        want = (T, *STATE_SHAPES[key]) if key in STATE_SHAPES else (T, *a.shape[1:])
        if a.dtype.kind not in "fiu":
            raise ValueError(f"{where}: {key}: expected numbers, got dtype {a.dtype}")
        if a.shape != want:
            raise ValueError(f"{where}: {key}: expected shape {want} (num_frames = {T}), got {a.shape}")
        if not np.isfinite(a).all():
            bad = int(np.nonzero(~np.isfinite(a.reshape(T, -1)).all(axis=1))[0][0])
            raise ValueError(f"{where}: {key}: NaN or inf at frame {bad}")
    times = states["times"]
    if T > 1 and not (np.diff(times) > 0).all():
        raise ValueError(f"{where}: times: expected strictly increasing times (s)")
    if fps is not None and T > 1 and np.abs(np.diff(times) * fps - 1.0).max() > 0.1:
        raise ValueError(f"{where}: times: expected a spacing of 1/fps = {1.0 / fps:.6g} s (within 10%), "
                         f"got {np.diff(times).min():.6g} to {np.diff(times).max():.6g} s")
    if "object_quat" in states:
        norm = np.linalg.norm(states["object_quat"], axis=1)
        if np.abs(norm - 1.0).max() > 1e-3:
            bad = int(np.argmax(np.abs(norm - 1.0)))
            raise ValueError(f"{where}: object_quat: expected unit quaternions (w, x, y, z), "
                             f"frame {bad} has norm {norm[bad]:.6g}")
