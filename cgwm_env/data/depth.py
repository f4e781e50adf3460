"""Depth beside a dataset (docs/datasets.md, "Depth"): depth.npz with a depth map per frame and
background_depth.npz with the empty scene's, each on the depth camera's own grid with its
intrinsics and its pose in the colour camera; and depth aligned to the colour image.

Intrinsics follow the format's one convention (the cameras' of meta.json): pixel (i, j) spans
[j, j + 1] x [i, i + 1], its centre at (j + 0.5, i + 0.5); RealSense and OpenCV put centres at
integers, so their ppx, ppy (cx, cy) are 0.5 smaller.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cgwm_env.render.camera import Camera

DEPTH_FILE, BACKGROUND_DEPTH_FILE = "depth.npz", "background_depth.npz"


@dataclass(frozen=True)
class Depth:
    """depth: (T, h, w) or (h, w) float32 m along the depth camera's axis, 0 where nothing was
    measured; camera: the depth grid as a Camera (size and intrinsics; its T_cw is the identity);
    T_color_depth: (4, 4) float64, depth-camera coordinates to colour-camera coordinates."""

    depth: np.ndarray
    camera: Camera
    T_color_depth: np.ndarray

    def aligned(self, color: Camera) -> np.ndarray:
        """The depth maps on the colour camera's grid: (T, H, W) or (H, W) float32 m (0: none)."""
        maps = self.depth if self.depth.ndim == 3 else self.depth[None]
        out = np.stack([align_depth(d, self.camera, color, self.T_color_depth) for d in maps])
        return out if self.depth.ndim == 3 else out[0]


def save_depth(path, depth: np.ndarray, camera: Camera, T_color_depth=None) -> Path:
    """Write a depth file (depth.npz or background_depth.npz) at `path`: depth (T, h, w) or
    (h, w) m (0: none) on the grid of `camera` (its size and intrinsics), and T_color_depth (4, 4)
    (default the identity: depth seen from the colour camera's centre)."""
    depth = np.asarray(depth, dtype=np.float32)
    T = np.eye(4) if T_color_depth is None else np.asarray(T_color_depth, dtype=np.float64)
    _check(depth, camera.width, camera.height, T, str(path))
    np.savez(path, depth=depth, fx=float(camera.fx), fy=float(camera.fy), cx=float(camera.cx), cy=float(camera.cy),
             T_color_depth=T)
    return Path(path)


def load_depth(path) -> Depth:
    """Read and check a depth file written by save_depth (or by hand: docs/datasets.md)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: missing depth file")
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    missing = [k for k in ("depth", "fx", "fy", "cx", "cy") if k not in arrays]
    if missing:
        raise ValueError(f"{path}: missing array(s) {', '.join(missing)}")
    depth = arrays["depth"]
    if depth.ndim not in (2, 3) or depth.dtype.kind != "f":
        raise ValueError(f"{path}: depth: expected (T, h, w) or (h, w) floats (m), got {depth.shape} {depth.dtype}")
    intrinsics = [float(arrays[k]) for k in ("fx", "fy", "cx", "cy")]
    if not np.isfinite(intrinsics).all() or min(intrinsics[:2]) <= 0:
        raise ValueError(f"{path}: fx, fy, cx, cy: expected finite numbers (px), fx and fy > 0, got {intrinsics}")
    h, w = depth.shape[-2:]
    T = np.asarray(arrays.get("T_color_depth", np.eye(4)), dtype=np.float64)
    _check(depth.astype(np.float32), w, h, T, str(path))
    camera = Camera(*intrinsics, w, h, torch.eye(4))
    return Depth(depth.astype(np.float32), camera, T)


def dataset_depth(folder) -> tuple[Depth | None, Depth | None]:
    """A dataset folder's depth (meta.json's "depth" file, or None) and its background_depth.npz
    (or None)."""
    folder = Path(folder)
    meta = json.loads((folder / "meta.json").read_text())
    depth = None
    if meta.get("depth"):
        depth = load_depth(folder / meta["depth"])
        if depth.depth.ndim != 3 or len(depth.depth) != meta["num_frames"]:
            raise ValueError(f"{folder / meta['depth']}: depth: expected (num_frames = {meta['num_frames']}, h, w), "
                             f"got {depth.depth.shape}")
    background = None
    if (folder / BACKGROUND_DEPTH_FILE).is_file():
        background = load_depth(folder / BACKGROUND_DEPTH_FILE)
        if background.depth.ndim != 2:
            raise ValueError(f"{folder / BACKGROUND_DEPTH_FILE}: depth: expected one (h, w) map, "
                             f"got {background.depth.shape}")
    return depth, background


def _check(depth: np.ndarray, width: int, height: int, T: np.ndarray, where: str) -> None:
    if depth.ndim not in (2, 3) or depth.shape[-2:] != (height, width):
        raise ValueError(f"{where}: depth: expected (T, {height}, {width}) or ({height}, {width}) m, got {depth.shape}")
    if not np.isfinite(depth).all() or (depth < 0).any():
        raise ValueError(f"{where}: depth: expected finite depths >= 0 m (0: no measurement)")
    R = T[:3, :3]
    if T.shape != (4, 4) or not np.isfinite(T).all() or not np.allclose(T[3], (0, 0, 0, 1)) \
            or not np.allclose(R @ R.T, np.eye(3), atol=1e-5) or np.linalg.det(R) < 0:
        raise ValueError(f"{where}: T_color_depth: expected a rigid 4x4 transform (rotation and translation)")


def align_depth(depth: np.ndarray, depth_camera: Camera, color_camera: Camera, T_color_depth) -> np.ndarray:
    """A depth map (h, w) m of the depth camera drawn on the colour camera's grid: (H, W) float32,
    the colour camera's z in m, 0 where no depth pixel lands. Each depth pixel's footprint (its
    square at its depth) is projected into the colour image and covers the colour pixels whose
    centres fall inside it; where several land, the nearest wins (as rs.align does)."""
    depth = np.asarray(depth, dtype=np.float64)
    if depth.shape != (depth_camera.height, depth_camera.width):
        raise ValueError(f"depth: expected ({depth_camera.height}, {depth_camera.width}) as the depth camera, "
                         f"got {depth.shape}")
    T = np.asarray(T_color_depth, dtype=np.float64)
    H, W = color_camera.height, color_camera.width
    i, j = np.nonzero(depth > 0)
    z = depth[i, j]
    fx, fy, cx, cy = (float(getattr(depth_camera, k)) for k in ("fx", "fy", "cx", "cy"))
    Fx, Fy, Cx, Cy = (float(getattr(color_camera, k)) for k in ("fx", "fy", "cx", "cy"))
    corners = []
    for du, dv in ((0.0, 0.0), (1.0, 1.0)):  # a pixel's top-left and bottom-right corners
        p = np.stack(((j + du - cx) / fx * z, (i + dv - cy) / fy * z, z), 1) @ T[:3, :3].T + T[:3, 3]
        corners.append((p[:, 0] / p[:, 2] * Fx + Cx, p[:, 1] / p[:, 2] * Fy + Cy, p[:, 2]))
    (u0, v0, z0), (u1, v1, z1) = corners
    zc = np.minimum(z0, z1)
    # colour pixel columns J whose centre J + 0.5 lies in [u0, u1] (and rows likewise)
    j0, j1 = np.ceil(np.minimum(u0, u1) - 0.5).astype(int), np.floor(np.maximum(u0, u1) - 0.5).astype(int)
    i0, i1 = np.ceil(np.minimum(v0, v1) - 0.5).astype(int), np.floor(np.maximum(v0, v1) - 0.5).astype(int)
    keep = (zc > 0) & (j1 >= j0) & (i1 >= i0) & (j1 >= 0) & (i1 >= 0) & (j0 < W) & (i0 < H)
    j0, j1, i0, i1, zc = j0[keep], j1[keep], i0[keep], i1[keep], zc[keep]
    out = np.full(H * W, np.inf)
    span = max(int((j1 - j0).max(initial=0)), int((i1 - i0).max(initial=0))) + 1
    for di in range(span):
        for dj in range(span):
            rows, cols = i0 + di, j0 + dj
            ok = (rows <= i1) & (cols <= j1) & (rows >= 0) & (rows < H) & (cols >= 0) & (cols < W)
            np.minimum.at(out, rows[ok] * W + cols[ok], zc[ok])
    return np.where(np.isfinite(out), out, 0.0).reshape(H, W).astype(np.float32)


def back_project(depth: np.ndarray, camera: Camera) -> np.ndarray:
    """World points (H, W, 3) m of a depth map (H, W) on `camera`'s grid (its z, m), through the
    pixel centres; NaN where the depth is 0."""
    H, W = depth.shape
    rows, cols = np.mgrid[0:H, 0:W] + 0.5
    z = np.where(depth > 0, depth, np.nan).astype(np.float64)
    p = np.stack(((cols - float(camera.cx)) / float(camera.fx) * z, (rows - float(camera.cy)) / float(camera.fy) * z,
                  z), -1)
    T_wc = np.linalg.inv(camera.T_cw.double().numpy())
    return p @ T_wc[:3, :3].T + T_wc[:3, 3]
