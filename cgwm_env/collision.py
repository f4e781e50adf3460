"""Differentiable collision geometry (paper section III-D-1, appendix B).

The object is a union of spheres (c_i, r_i) in its body frame. A query point's distance is the
LogSumExp soft minimum of the sphere distances, then a sigmoid clamp bounds penetration at -delta:

    phi_soft(p) = -1/beta * logsumexp_i(-beta (|p - c_i| - r_i))
    phi(p)      = s * phi_soft + (1 - s) * (-delta),   s = sigmoid(gamma * phi_soft)

All functions take leading batch dimensions and are differentiable in p, c and r.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cgwm_env.math3d import fibonacci_sphere

# Keeps |p - c| differentiable when a point sits on a sphere's centre.
_EPS_LEN = 1e-12


@dataclass(frozen=True)
class SoftSDFSettings:
    """beta: LogSumExp sharpness (1/m); gamma: sigmoid sharpness of the clamp (1/m);
    delta: penetration bound (m) reported for points deep inside."""

    beta: float = 2000.0
    gamma: float = 2000.0
    delta: float = 0.005

    def __post_init__(self):
        for name in ("beta", "gamma", "delta"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: expected a positive number, got {getattr(self, name)}")


def soft_sdf(points: torch.Tensor, centers: torch.Tensor, radii: torch.Tensor, settings: SoftSDFSettings):
    """Clamped soft signed distance and outward unit normal of a sphere union.

    points: (..., P, 3) in the spheres' frame; centers: (N, 3) or (..., N, 3); radii: (N,) or (..., N).
    Returns phi (..., P) in m and normals (..., P, 3), the normalized gradient of phi.
    """
    if centers.shape[-2] == 0:
        raise ValueError("centers: expected at least one sphere, got an empty set")
    diff = points[..., :, None, :] - centers[..., None, :, :]  # (..., P, N, 3)
    dist = torch.sqrt((diff * diff).sum(-1) + _EPS_LEN**2)
    gap = dist - radii[..., None, :]
    beta = settings.beta
    phi_soft = -torch.logsumexp(-beta * gap, dim=-1) / beta
    # grad phi_soft = sum_i softmax_i (p - c_i) / |p - c_i|; phi's gradient has the same direction
    # wherever the clamp is increasing, which holds for phi_soft > -delta.
    weights = torch.softmax(-beta * gap, dim=-1)
    grad = (weights[..., None] * diff / dist[..., None]).sum(-2)
    normals = grad / torch.sqrt((grad * grad).sum(-1, keepdim=True) + _EPS_LEN**2)
    s = torch.sigmoid(settings.gamma * phi_soft)
    phi = s * phi_soft - (1 - s) * settings.delta
    return phi, normals


def surface_points(points: torch.Tensor, phi: torch.Tensor, normals: torch.Tensor) -> torch.Tensor:
    """Projection of query points onto the surface, p - phi n, (..., P, 3)."""
    return points - phi[..., None] * normals


def plane_sdf(points: torch.Tensor, normal: torch.Tensor, offset: float | torch.Tensor) -> torch.Tensor:
    """Signed distance of points (..., 3) to the plane {x: n.x = offset}, unit normal n (3,)."""
    return (points * normal).sum(-1) - offset


def support_spheres(centers: torch.Tensor, radii: torch.Tensor, n_directions: int = 4096) -> torch.Tensor:
    """Indices of the spheres farthest out, c . u + r, in at least one of n_directions directions u
    spread evenly over the unit sphere: the spheres that can touch a plane first. Spheres inside the
    hull never can; spheres on a flat face between others touch a plane only together with the
    face's outermost ones, which carry the contact instead. centers (N, 3), radii (N,) -> (K,) sorted."""
    support = fibonacci_sphere(n_directions) @ centers.detach().double().T + radii.detach().double()
    return torch.unique(support.argmax(1)).to(centers.device)


def contact_frames(normals: torch.Tensor) -> torch.Tensor:
    """Right-handed orthonormal frames with rows (n, t1, t2) for unit normals, (..., 3) -> (..., 3, 3).

    The contact model spans the tangent plane with n_d >= 4 directions cos(a) t1 + sin(a) t2
    (contact.cone_edges).
    """
    # A helper axis far from the normal: x unless the normal is close to x.
    use_y = (normals[..., :1].abs() > 0.9).to(normals.dtype)
    helper = torch.cat((1 - use_y, use_y, torch.zeros_like(use_y)), dim=-1)
    t1 = torch.linalg.cross(helper, normals)
    t1 = t1 / t1.norm(dim=-1, keepdim=True)
    t2 = torch.linalg.cross(normals, t1)
    return torch.stack((normals, t1, t2), dim=-2)
