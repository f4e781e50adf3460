"""Camera pose from ArUco markers at known world poses (cv2.aruco + cv2.solvePnP).

Markers are squares of side `length` (m, the black outer border) whose pose in the world (the
hand's frame, as in the MuJoCo scene) is known; each marker's frame has x right and y up in the
marker image, z out of its face (OpenCV's convention). Every detected marker gives a pose by
IPPE_SQUARE (both of its solutions are kept); the one that reprojects all detected corners best
starts a Levenberg-Marquardt refinement over all of them. The result is a world-to-camera T_cw,
saved with the intrinsics as a camera JSON that `load_camera` reads back as a
`cgwm_env.render.camera.Camera` for the renderer.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from scipy.spatial.transform import Rotation

from cgwm_env.data.dataset import camera_to_meta
from cgwm_env.render.camera import Camera


@dataclass(frozen=True)
class MarkerLayout:
    """dictionary: a cv2.aruco dictionary name (e.g. "DICT_4X4_50"); markers: {id: (length m,
    T_wm (4, 4) marker-to-world)}."""

    dictionary: str
    markers: dict

    def __post_init__(self):
        if not isinstance(self.dictionary, str) or not self.dictionary.startswith("DICT_") \
                or not hasattr(cv2.aruco, self.dictionary):
            raise ValueError(f"dictionary: expected a cv2.aruco dictionary name such as 'DICT_4X4_50', "
                             f"got {self.dictionary!r}")
        if not self.markers:
            raise ValueError("markers: expected at least one marker")

    @classmethod
    def from_mapping(cls, data: dict, where: str = "calibration") -> "MarkerLayout":
        """From {dictionary, markers: [{id, length (m), pos [x, y, z] (m), quat [w, x, y, z]}]}."""
        if not isinstance(data, dict) or set(data) != {"dictionary", "markers"}:
            raise ValueError(f"{where}: expected a mapping with keys dictionary and markers, got {data!r}")
        markers = {}
        for k, m in enumerate(data["markers"] or []):
            at = f"{where}.markers[{k}]"
            if not isinstance(m, dict) or set(m) != {"id", "length", "pos", "quat"}:
                raise ValueError(f"{at}: expected keys id, length, pos, quat, got {m!r}")
            if isinstance(m["id"], bool) or not isinstance(m["id"], int) or m["id"] < 0 or m["id"] in markers:
                raise ValueError(f"{at}.id: expected a new non-negative integer, got {m['id']!r}")
            length = m["length"]
            if isinstance(length, bool) or not isinstance(length, (int, float)) or not 0 < length < 10:
                raise ValueError(f"{at}.length: expected the marker's side in metres (> 0), got {length!r}")
            pos, quat = np.asarray(m["pos"], float), np.asarray(m["quat"], float)
            if pos.shape != (3,) or not np.isfinite(pos).all():
                raise ValueError(f"{at}.pos: expected [x, y, z] in metres, got {m['pos']!r}")
            if quat.shape != (4,) or not np.isfinite(quat).all() or abs(np.linalg.norm(quat) - 1) > 1e-3:
                raise ValueError(f"{at}.quat: expected a unit quaternion [w, x, y, z], got {m['quat']!r}")
            T = np.eye(4)
            T[:3, :3], T[:3, 3] = Rotation.from_quat(quat, scalar_first=True).as_matrix(), pos
            markers[m["id"]] = (float(length), T)
        return cls(data["dictionary"], markers)


@dataclass(frozen=True)
class Calibration:
    """T_cw (4, 4) float64 world-to-camera; ids: the markers used; rmse_px: reprojection RMS of
    their corners (px)."""

    T_cw: np.ndarray
    ids: tuple
    rmse_px: float


def marker_corners(length: float) -> np.ndarray:
    """Corners (4, 3) in the marker's frame, in cv2.aruco's order (top-left, top-right,
    bottom-right, bottom-left), as SOLVEPNP_IPPE_SQUARE wants them."""
    h = length / 2
    return np.array([[-h, h, 0.0], [h, h, 0.0], [h, -h, 0.0], [-h, -h, 0.0]])


def opencv_matrix(camera: Camera) -> np.ndarray:
    """OpenCV's 3x3 K of our camera (OpenCV puts pixel centres at integers: cx - 0.5, cy - 0.5)."""
    return np.array([[float(camera.fx), 0.0, float(camera.cx) - 0.5],
                     [0.0, float(camera.fy), float(camera.cy) - 0.5], [0.0, 0.0, 1.0]])


def detect_markers(image: np.ndarray, dictionary: str) -> dict[int, np.ndarray]:
    """ArUco markers in an RGB (H, W, 3) or grey (H, W) uint8 image: {id: corners (4, 2) px,
    OpenCV pixel coordinates}, corners refined to sub-pixel."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"image: expected an (H, W, 3) RGB or (H, W) grey uint8 image, "
                         f"got {image.shape} {image.dtype}")
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    params = cv2.aruco.DetectorParameters()
    params.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_SUBPIX
    detector = cv2.aruco.ArucoDetector(cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, dictionary)), params)
    corners, ids, _ = detector.detectMarkers(grey)
    if ids is None:
        return {}
    return {int(i): c.reshape(4, 2).astype(np.float64) for i, c in zip(ids.ravel(), corners)}


def estimate_camera_pose(image: np.ndarray, camera: Camera, layout: MarkerLayout, dist_coeffs=None) -> Calibration:
    """World-to-camera pose from the layout's markers seen in `image` by `camera` (its intrinsics
    and size are used, its T_cw is ignored). dist_coeffs: OpenCV distortion coefficients or None.
    ValueError when no marker of the layout is visible."""
    image = np.asarray(image)
    if image.shape[:2] != (camera.height, camera.width):
        raise ValueError(f"image: expected {camera.height}x{camera.width} (the camera's size), got {image.shape[:2]}")
    found = detect_markers(image, layout.dictionary)
    seen = sorted(set(found) & set(layout.markers))
    if not seen:
        raise ValueError(f"image: none of the markers {sorted(layout.markers)} ({layout.dictionary}) is visible; "
                         f"detected {sorted(found) or 'none'}")
    K = opencv_matrix(camera)
    dist = np.zeros(5) if dist_coeffs is None else np.asarray(dist_coeffs, dtype=np.float64)
    world = np.concatenate([_to_world(layout.markers[i]) for i in seen])  # (4 N, 3)
    pixels = np.concatenate([found[i] for i in seen])  # (4 N, 2)
    best = None
    for i in seen:
        length, T_wm = layout.markers[i]
        _, rvecs, tvecs, _ = cv2.solvePnPGeneric(marker_corners(length), found[i], K, dist,
                                                 flags=cv2.SOLVEPNP_IPPE_SQUARE)
        for rvec, tvec in zip(rvecs, tvecs):
            T_cw = _pose(rvec, tvec) @ np.linalg.inv(T_wm)
            rvec_w, tvec_w = cv2.Rodrigues(T_cw[:3, :3])[0], T_cw[:3, 3].reshape(3, 1)
            error = _rmse(world, pixels, rvec_w, tvec_w, K, dist)
            if best is None or error < best[0]:
                best = (error, rvec_w, tvec_w)
    _, rvec, tvec = best
    rvec, tvec = cv2.solvePnPRefineLM(world, pixels, K, dist, rvec, tvec)
    return Calibration(_pose(rvec, tvec), tuple(seen), _rmse(world, pixels, rvec, tvec, K, dist))


def _to_world(marker) -> np.ndarray:
    length, T_wm = marker
    return marker_corners(length) @ T_wm[:3, :3].T + T_wm[:3, 3]


def _pose(rvec, tvec) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = cv2.Rodrigues(np.asarray(rvec, dtype=np.float64))[0]
    T[:3, 3] = np.asarray(tvec, dtype=np.float64).ravel()
    return T


def _rmse(world, pixels, rvec, tvec, K, dist) -> float:
    projected, _ = cv2.projectPoints(world, rvec, tvec, K, dist)
    return float(math.sqrt(((projected.reshape(-1, 2) - pixels) ** 2).sum(1).mean()))


def save_camera(camera: Camera, path, **extra) -> Path:
    """Write a camera JSON: width, height, fx, fy, cx, cy (px, our convention), T_cw (4x4), and
    the `extra` fields (e.g. the calibration's rmse_px and marker ids)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"width": camera.width, "height": camera.height, **camera_to_meta(camera), **extra},
                               indent=1))
    return path


def load_camera(path) -> Camera:
    """A Camera from a camera JSON written by save_camera (or `cgwm calibrate`)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"path: cannot read a camera JSON from {path} ({err})") from err
    missing = [k for k in ("width", "height", "fx", "fy", "cx", "cy", "T_cw") if k not in data]
    if missing:
        raise ValueError(f"{path}: missing field(s) {', '.join(missing)}")
    return Camera(data["fx"], data["fy"], data["cx"], data["cy"], data["width"], data["height"],
                  torch.tensor(data["T_cw"], dtype=torch.float32))


def calibrate(image: np.ndarray, camera: Camera, layout: MarkerLayout, out,
              dist_coeffs=None) -> tuple[Camera, Calibration]:
    """Estimate the pose, write the camera JSON at `out`, return the posed Camera and the fit."""
    fit = estimate_camera_pose(image, camera, layout, dist_coeffs)
    posed = Camera(camera.fx, camera.fy, camera.cx, camera.cy, camera.width, camera.height,
                   torch.tensor(fit.T_cw, dtype=torch.float32))
    save_camera(posed, out, rmse_px=fit.rmse_px, markers=list(fit.ids), dictionary=layout.dictionary)
    return posed, fit
