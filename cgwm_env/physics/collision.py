"""Differentiable collision geometry (paper section III-D-1, appendix B).

The object is a union of spheres (c_i, r_i) in its body frame. A query point's distance is the
LogSumExp soft minimum of the sphere distances, then a sigmoid clamp bounds penetration at -delta:

    phi_soft(p) = -1/beta * logsumexp_i(-beta (|p - c_i| - r_i))
    phi(p)      = s * phi_soft + (1 - s) * (-delta),   s = sigmoid(gamma * phi_soft)

All functions take leading batch dimensions and are differentiable in p, c and r.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from cgwm_env.physics.math3d import fibonacci_sphere

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
    offsets = [points[..., :, None, i] - centers[..., None, :, i] for i in range(3)]  # 3 x (..., P, N)
    return _soft_min_distance(offsets, radii[..., None, :], settings)


def _soft_min_distance(offsets: list[torch.Tensor], radii: torch.Tensor, settings: SoftSDFSettings):
    """phi (..., P) and normals (..., P, 3) from the x, y and z offsets (..., P, N) each of the
    points from N sphere centres of radii (..., P or 1, N). (One tensor per component: several
    times faster on the CPU than a trailing axis of 3.)"""
    dx, dy, dz = offsets
    dist = torch.sqrt(dx * dx + dy * dy + dz * dz + _EPS_LEN**2)
    gap = dist - radii
    beta = settings.beta
    phi_soft = -torch.logsumexp(-beta * gap, dim=-1) / beta
    # grad phi_soft = sum_i softmax_i (p - c_i) / |p - c_i|; phi's gradient has the same direction
    # wherever the clamp is increasing, which holds for phi_soft > -delta.
    weights = torch.softmax(-beta * gap, dim=-1) / dist
    grad = torch.stack([(weights * d).sum(-1) for d in offsets], dim=-1)
    normals = grad / torch.sqrt((grad * grad).sum(-1, keepdim=True) + _EPS_LEN**2)
    s = torch.sigmoid(settings.gamma * phi_soft)
    phi = s * phi_soft - (1 - s) * settings.delta
    return phi, normals


class SphereGrid(NamedTuple):
    """A regular grid around a sphere union listing, per cell, every sphere that can carry weight in
    the LogSumExp at a point of that cell, so a query evaluates k spheres instead of all N.

    origin (3,): centre of cell (0, 0, 0), m; cell: edge length, m; last (3,): the last cell's
    index per axis; strides (3,): of the row-major cell numbering; index (cells, k): sphere indices
    per cell; nearest (cells,): the hard minimum gap min_i |g - c_i| - r_i at each cell centre g,
    m (a broad phase).
    """

    origin: torch.Tensor
    cell: float
    last: torch.Tensor
    strides: torch.Tensor
    index: torch.Tensor
    nearest: torch.Tensor

    def cell_of(self, points: torch.Tensor) -> torch.Tensor:
        """Flat index (...,) of the cell holding each point (..., 3), the nearest cell for points outside."""
        ijk = torch.round((points.detach() - self.origin) / self.cell).long()
        return (torch.minimum(ijk.clamp(min=0), self.last) * self.strides).sum(-1)


def sphere_grid(centers: torch.Tensor, radii: torch.Tensor, settings: SoftSDFSettings, cell: float = 0.003,
                margin: float = 0.01, band: float = 0.005, chunk: int = 4096) -> SphereGrid:
    """Build the SphereGrid of spheres (N, 3), (N,) over their bounding box grown by `margin` m.

    A point p within cell/2 per axis of a cell centre g has gap_i(p) within d = sqrt(3) cell / 2 of
    gap_i(g). In every cell whose nearest gap is within `band` m of the surface, each sphere with
    gap_i(g) <= min_j gap_j(g) + 2 d + 12 / beta is listed: the ones left out weigh less than e^-12
    of the nearest in the soft minimum. Cells farther out or deep inside list as many spheres, the
    nearest ones. Leaving spheres out can only overestimate a distance (fewer terms in the
    LogSumExp); points beyond the grid use its nearest cell.
    """
    if centers.shape[0] == 0:
        raise ValueError("centers: expected at least one sphere, got an empty set")
    c, r = centers.detach().double(), radii.detach().double()
    lo = (c - r[:, None]).min(0).values - margin
    hi = (c + r[:, None]).max(0).values + margin
    shape = tuple(int(n) for n in torch.ceil((hi - lo) / cell).long() + 1)
    axes = [lo[i] + cell * torch.arange(shape[i], dtype=c.dtype, device=c.device) for i in range(3)]
    cells = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    slack = 3**0.5 * cell + 12.0 / settings.beta
    gaps = torch.cat([torch.cdist(part, c) - r for part in cells.split(chunk)])  # (cells, N)
    nearest = gaps.min(1, keepdim=True).values
    near_surface = nearest[:, 0].abs() <= band
    k = max(1, int((gaps[near_surface] <= nearest[near_surface] + slack).sum(1).max())) if near_surface.any() else 1
    index = gaps.topk(k, dim=1, largest=False).indices
    device = centers.device
    return SphereGrid(lo.to(centers), float(cell), torch.tensor(shape, device=device) - 1,
                      torch.tensor([shape[1] * shape[2], shape[2], 1], device=device), index.to(device),
                      nearest[:, 0].to(centers))


def soft_sdf_grid(points: torch.Tensor, centers: torch.Tensor, radii: torch.Tensor, grid: SphereGrid,
                  settings: SoftSDFSettings):
    """soft_sdf through a SphereGrid built for these spheres: points (..., P, 3) in the spheres'
    frame, centers (N, 3), radii (N,) -> phi (..., P) m, normals (..., P, 3)."""
    cells = grid.cell_of(points)
    near = grid.index.index_select(0, cells.flatten()).view(*cells.shape, -1)  # (..., P, k)
    spheres = torch.cat((centers, radii[:, None]), 1).T.index_select(1, near.flatten()).view(4, *near.shape)
    offsets = [points[..., i, None] - spheres[i] for i in range(3)]
    return _soft_min_distance(offsets, spheres[3], settings)


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
    support = fibonacci_sphere(n_directions).to(centers.device) @ centers.detach().double().T + radii.detach().double()
    return torch.unique(support.argmax(1))


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
