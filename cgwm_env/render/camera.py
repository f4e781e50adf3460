"""Pinhole cameras in the OpenCV convention: x right, y down, z forward (the camera looks down +z).

Pixel (row i, column j) has its centre at u = j + 0.5, v = i + 0.5; a camera point (x, y, z)
projects to u = fx x / z + cx, v = fy y / z + cy. Poses are world-to-camera 4x4 matrices `T_cw`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Camera:
    """A pinhole camera, or a batch of them sharing one image size.

    fx, fy, cx, cy: (...,) px (floats are accepted); width, height: image size, px;
    T_cw: (..., 4, 4) world-to-camera rigid transform (m). The batch shape broadcasts the
    intrinsics against T_cw's leading dimensions.
    """

    fx: torch.Tensor
    fy: torch.Tensor
    cx: torch.Tensor
    cy: torch.Tensor
    width: int
    height: int
    T_cw: torch.Tensor

    def __post_init__(self):
        _check_size(self.width, self.height)
        T_cw = torch.as_tensor(self.T_cw)
        if not T_cw.is_floating_point():
            T_cw = T_cw.to(torch.get_default_dtype())
        if T_cw.ndim < 2 or T_cw.shape[-2:] != (4, 4):
            raise ValueError(f"T_cw: expected shape (..., 4, 4), got {tuple(T_cw.shape)}")
        if not torch.isfinite(T_cw).all():
            raise ValueError("T_cw: expected finite values, got NaN or inf")
        object.__setattr__(self, "T_cw", T_cw)
        for name in ("fx", "fy", "cx", "cy"):
            value = torch.as_tensor(getattr(self, name), dtype=T_cw.dtype, device=T_cw.device)
            if not torch.isfinite(value).all():
                raise ValueError(f"{name}: expected finite values, got NaN or inf")
            if name in ("fx", "fy") and (value <= 0).any():
                raise ValueError(f"{name}: expected a positive focal length (px), got {value.tolist()}")
            object.__setattr__(self, name, value)
        try:
            torch.broadcast_shapes(self.batch_shape)
        except RuntimeError as err:
            raise ValueError(f"T_cw: intrinsics and poses have incompatible batch shapes ({err})") from err

    @property
    def batch_shape(self) -> torch.Size:
        """Broadcast batch shape of the intrinsics and T_cw."""
        shapes = [t.shape for t in (self.fx, self.fy, self.cx, self.cy)] + [self.T_cw.shape[:-2]]
        return torch.broadcast_shapes(*shapes)

    @property
    def K(self) -> torch.Tensor:
        """Intrinsic matrices (..., 3, 3), px."""
        fx, fy, cx, cy = torch.broadcast_tensors(self.fx, self.fy, self.cx, self.cy)
        zero, one = torch.zeros_like(fx), torch.ones_like(fx)
        rows = (torch.stack((fx, zero, cx), -1), torch.stack((zero, fy, cy), -1), torch.stack((zero, zero, one), -1))
        return torch.stack(rows, dim=-2)

    @property
    def position(self) -> torch.Tensor:
        """Camera centres in the world frame (..., 3), m."""
        R, t = self.T_cw[..., :3, :3], self.T_cw[..., :3, 3]
        return -(R.transpose(-1, -2) @ t[..., None])[..., 0]

    def __getitem__(self, index) -> "Camera":
        """The camera(s) at `index` of the batch."""
        batch = self.batch_shape
        fx, fy, cx, cy = (t.expand(batch)[index] for t in (self.fx, self.fy, self.cx, self.cy))
        return Camera(fx, fy, cx, cy, self.width, self.height, self.T_cw.expand(*batch, 4, 4)[index])

    def to(self, *args, **kwargs) -> "Camera":
        """Same camera with its tensors moved or cast, as torch.Tensor.to."""
        fx, fy, cx, cy, T_cw = (t.to(*args, **kwargs) for t in (self.fx, self.fy, self.cx, self.cy, self.T_cw))
        return Camera(fx, fy, cx, cy, self.width, self.height, T_cw)

    def world_to_camera(self, points: torch.Tensor) -> torch.Tensor:
        """World points (..., N, 3) m -> camera-frame points (..., N, 3) m."""
        return points @ self.T_cw[..., :3, :3].transpose(-1, -2) + self.T_cw[..., None, :3, 3]

    def project(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """World points (..., N, 3) -> pixel coordinates (..., N, 2) px and depths z (..., N) m."""
        p = self.world_to_camera(points)
        z = p[..., 2]
        u = self.fx[..., None] * p[..., 0] / z + self.cx[..., None]
        v = self.fy[..., None] * p[..., 1] / z + self.cy[..., None]
        return torch.stack((u, v), -1), z

    @classmethod
    def from_fovy(cls, fovy: float, width: int, height: int, T_cw: torch.Tensor) -> "Camera":
        """Square-pixel camera with vertical field of view `fovy` (rad), principal point at the centre."""
        if not 0.0 < fovy < math.pi:
            raise ValueError(f"fovy: expected a field of view in (0, pi) rad, got {fovy}")
        _check_size(width, height)
        f = 0.5 * height / math.tan(0.5 * fovy)
        return cls(f, f, 0.5 * width, 0.5 * height, width, height, T_cw)


def _check_size(width, height) -> None:
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name}: expected a positive int (pixels), got {value!r}")


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> torch.Tensor:
    """World-to-camera transform (..., 4, 4) of a camera at `eye` (..., 3) looking at `target` (..., 3).

    The image's up direction is as close to `up` (..., 3) as possible (OpenCV: image y = -up).
    """
    eye = torch.as_tensor(eye, dtype=torch.get_default_dtype())
    target = torch.as_tensor(target, dtype=eye.dtype)
    up = torch.as_tensor(up, dtype=eye.dtype)
    for name, t in (("eye", eye), ("target", target), ("up", up)):
        if t.shape[-1:] != (3,) or not torch.isfinite(t).all():
            raise ValueError(f"{name}: expected finite points of shape (..., 3), got {tuple(t.shape)}")
    z = target - eye
    if (z.norm(dim=-1) < 1e-12).any():
        raise ValueError("target: expected a point distinct from eye")
    z = z / z.norm(dim=-1, keepdim=True)
    x = torch.linalg.cross(z, up.expand_as(z))  # right = forward x up
    if (x.norm(dim=-1) < 1e-9).any():
        raise ValueError("up: expected a direction not parallel to the viewing direction")
    x = x / x.norm(dim=-1, keepdim=True)
    y = torch.linalg.cross(z, x)
    R_cw = torch.stack((x, y, z), dim=-2)  # rows: camera axes in world coordinates
    T = torch.zeros(*R_cw.shape[:-2], 4, 4, dtype=eye.dtype)
    T[..., :3, :3] = R_cw
    T[..., :3, 3] = -(R_cw @ eye[..., None])[..., 0]
    T[..., 3, 3] = 1.0
    return T


def from_mujoco(model, data, camera, width: int, height: int) -> Camera:
    """Our camera for MuJoCo camera `camera` (name or id) at its current pose in `data`.

    Matches `mujoco.Renderer(model, height, width)` pixel for pixel: MuJoCo's fovy (degrees) is
    the vertical field of view, its cameras look down their -z with y up, and `data` must be
    forwarded (mj_forward or mj_step) so that cam_xpos and cam_xmat are current.
    """
    import mujoco

    if isinstance(camera, str):
        cam_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
        if cam_id < 0:
            raise ValueError(f"camera: no camera named {camera!r} in the model")
    else:
        cam_id = int(camera)
        if not 0 <= cam_id < model.ncam:
            raise ValueError(f"camera: expected an id in [0, {model.ncam}), got {camera}")
    if model.cam_projection[cam_id] != mujoco.mjtProjection.mjPROJ_PERSPECTIVE:
        raise ValueError(f"camera: {camera!r} is orthographic; only perspective cameras are supported")
    if (model.cam_sensorsize[cam_id] > 0).any():
        raise ValueError(f"camera: {camera!r} sets sensorsize/focal intrinsics; only fovy cameras are supported")
    xmat = torch.as_tensor(data.cam_xmat[cam_id].reshape(3, 3), dtype=torch.float64)
    pos = torch.as_tensor(data.cam_xpos[cam_id], dtype=torch.float64)
    R_wc = xmat * xmat.new_tensor([1.0, -1.0, -1.0])  # MuJoCo camera axes -> OpenCV axes
    T_cw = torch.eye(4, dtype=torch.float64)
    T_cw[:3, :3] = R_wc.T
    T_cw[:3, 3] = -R_wc.T @ pos
    fovy = math.radians(float(model.cam_fovy[cam_id]))
    return Camera.from_fovy(fovy, width, height, T_cw.to(torch.get_default_dtype()))
