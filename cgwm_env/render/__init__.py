"""render(gaussians, camera) -> rgb, alpha, depth: differentiable splatting of isotropic Gaussians.

3DGS semantics: each Gaussian projects to a 2D Gaussian (EWA, plus 0.3 px^2 on the diagonal, its
opacity compensated for that in the "antialiased" mode),
alpha = min(0.99, opacity * exp(-q / 2)) with q the squared Mahalanobis distance of the pixel
centre, dropped where q > 9 (3 sigma) or alpha < 1/255, composited front to back by the depth
of the Gaussians' centres. Backends: "torch" (any device; tile-based, hand-written backward) and
"gsplat" (CUDA); "auto" takes gsplat for CUDA tensors when it is installed, else torch.
"""

from __future__ import annotations

import importlib.util
from typing import NamedTuple

import torch

from cgwm_env.physics import math3d
from cgwm_env.physics.gaussians import SphereGaussians
from cgwm_env.render import gsplat_backend, torch_backend
from cgwm_env.render.camera import Camera

BACKENDS = ("auto", "torch", "gsplat")


class Rendered(NamedTuple):
    """rgb (..., H, W, 3) in [0, 1]; alpha (..., H, W); depth (..., H, W) m, 0 where alpha = 0."""

    rgb: torch.Tensor
    alpha: torch.Tensor
    depth: torch.Tensor


def render(
    gaussians: SphereGaussians,
    camera: Camera,
    background=(0.0, 0.0, 0.0),
    pose=None,
    backend: str = "auto",
    near: float = 0.01,
    antialiased: bool = True,
) -> Rendered:
    """Draw `gaussians` seen by `camera`; differentiable in the Gaussians, `pose` and `background`.

    background: RGB (3,) or an image (H, W, 3), shown through 1 - alpha.
    pose: optional (position (..., 3) m, quat (..., 4) as (w, x, y, z)) placing the Gaussians'
    body frame in the world; the quaternion is normalised here.
    near: Gaussians whose centre has camera depth z <= near (m) are not drawn.
    antialiased: compensate the 0.3 px^2 low-pass in each opacity (gsplat's "antialiased" mode),
    so that Gaussians that project small do not fatten and a silhouette keeps its size with
    distance (stage I fits at one distance, clips are filmed at another: classic rendering put
    a fitted cube 6 mm too deep at 0.29 m); False draws as 3DGS does ("classic").
    depth is the alpha-weighted expected depth sum(w_i z_i) / sum(w_i) of the Gaussians' centres
    (camera z, m). A batch of cameras and/or poses gives a batch of images, shape (..., H, W).
    """
    if not isinstance(gaussians, SphereGaussians):
        raise ValueError(f"gaussians: expected SphereGaussians, got {type(gaussians).__name__}")
    if not isinstance(camera, Camera):
        raise ValueError(f"camera: expected a cgwm_env.render.camera.Camera, got {type(camera).__name__}")
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
    if not near > 0:
        raise ValueError(f"near: expected a positive distance (m), got {near}")
    for name, t in zip(("centers", "log_scales", "opacity_logits", "colors"), gaussians.tensors()):
        if not torch.isfinite(t).all():
            raise ValueError(f"gaussians.{name}: expected finite values, got NaN or inf")
    dtype, device = gaussians.centers.dtype, gaussians.centers.device
    camera = camera.to(device=device, dtype=dtype)
    background = _check_background(background, camera, dtype, device)
    if backend == "auto":
        backend = "gsplat" if device.type == "cuda" and importlib.util.find_spec("gsplat") else "torch"
    if backend == "gsplat" and device.type != "cuda":
        raise ValueError(f"backend: gsplat needs CUDA tensors, got Gaussians on {device}")

    batch = camera.batch_shape
    if pose is not None:
        position, quat = _check_pose(pose, dtype, device)
        batch = torch.broadcast_shapes(batch, position.shape[:-1], quat.shape[:-1])
        position = position.expand(*batch, 3).reshape(-1, 3)
        quat = math3d.quat_normalize(quat.expand(*batch, 4).reshape(-1, 4))
    images = []
    for i in range(batch.numel()):
        index = tuple(int(j) for j in torch.unravel_index(torch.tensor(i), batch))
        cam = camera[_broadcast_index(index, camera.batch_shape)]
        centers = gaussians.centers
        if pose is not None:
            centers = gaussians.transformed_centers(position[i], quat[i])
        draw = torch_backend.render if backend == "torch" else gsplat_backend.render
        images.append(draw(centers, gaussians.log_scales, gaussians.opacity_logits, gaussians.colors, cam, near,
                           antialiased))
    sums = torch.stack(images).reshape(*batch, camera.height, camera.width, -1)
    alpha = sums[..., 4]
    rgb = sums[..., :3] + (1.0 - alpha)[..., None] * background
    depth = sums[..., 3] / alpha.clamp(min=1e-10)
    return Rendered(rgb, alpha, depth)


def _broadcast_index(index: tuple, shape: torch.Size) -> tuple:
    """The element of a tensor of `shape` that broadcasting pairs with `index` of the full batch."""
    index = index[len(index) - len(shape):] if shape else ()
    return tuple(0 if n == 1 else j for n, j in zip(shape, index))


def _check_background(background, camera: Camera, dtype, device) -> torch.Tensor:
    bg = torch.as_tensor(background, dtype=dtype, device=device)
    if bg.shape not in ((3,), (camera.height, camera.width, 3)):
        raise ValueError(
            f"background: expected shape (3,) or ({camera.height}, {camera.width}, 3), got {tuple(bg.shape)}"
        )
    if not torch.isfinite(bg).all():
        raise ValueError("background: expected finite values, got NaN or inf")
    return bg


def _check_pose(pose, dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(pose, (tuple, list)) or len(pose) != 2:
        raise ValueError("pose: expected (position (..., 3), quat (..., 4))")
    position = torch.as_tensor(pose[0], dtype=dtype, device=device)
    quat = torch.as_tensor(pose[1], dtype=dtype, device=device)
    if position.shape[-1:] != (3,) or quat.shape[-1:] != (4,):
        raise ValueError(f"pose: expected shapes (..., 3) and (..., 4), got {tuple(position.shape)}, {tuple(quat.shape)}")
    if not (torch.isfinite(position).all() and torch.isfinite(quat).all()):
        raise ValueError("pose: expected finite values, got NaN or inf")
    if (quat.norm(dim=-1) < 1e-12).any():
        raise ValueError("pose: expected a nonzero quaternion")
    return position, quat
