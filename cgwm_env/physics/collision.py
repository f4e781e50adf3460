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

import numpy as np
import torch
import torch.nn.functional as F

from cgwm_env.physics.gaussians import SphereGaussians
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


def _soft_min_distance(offsets: list[torch.Tensor], radii: torch.Tensor, settings: SoftSDFSettings,
                       clamp: bool = True):
    """phi (..., P) and normals (..., P, 3) from the x, y and z offsets (..., P, N) each of the
    points from N sphere centres of radii (..., P or 1, N); clamp False: phi_soft itself. (One
    tensor per component: several times faster on the CPU than a trailing axis of 3.)"""
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
    if not clamp:
        return phi_soft, normals
    s = torch.sigmoid(settings.gamma * phi_soft)
    phi = s * phi_soft - (1 - s) * settings.delta
    return phi, normals


class SolidGrid(NamedTuple):
    """The signed distance to the solid a sphere union bounds, on a regular grid in the spheres'
    frame: the union closed by the spheres' median radius (so gaps between touching spheres of a
    shell seal) with its enclosed cavities filled. Inside a shell of spheres the soft distance
    measures to the shell and turns back past it; this one keeps growing with depth.

    origin (3,): centre of voxel (0, 0, 0), m; spacing: voxel edge, m; extent (3,): the last voxel's
    centre minus origin, m; field (1, 4, nx, ny, nz): signed distance (m, negative inside) and its
    unit gradient per voxel; reach: the spheres' median radius, m.
    """

    origin: torch.Tensor
    spacing: float
    extent: torch.Tensor
    field: torch.Tensor
    reach: float

    def inside(self) -> torch.Tensor:
        """Centres (M, 3) float64, m, of the voxels in the solid."""
        solid = self.field[0, 0] < 0
        return self.origin.double() + torch.nonzero(solid).double() * self.spacing

    def sample(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Trilinear signed distance (...,) m and unit normal (..., 3) at points (..., 3); points
        outside the grid read its border."""
        lead = points.shape[:-1]
        unit = ((points.reshape(1, -1, 1, 1, 3) - self.origin) / self.extent * 2.0 - 1.0).flip(-1)  # (z, y, x)
        values = F.grid_sample(self.field, unit, mode="bilinear", padding_mode="border", align_corners=True)
        values = values.reshape(4, -1).T.reshape(*lead, 4)
        normals = values[..., 1:]
        return values[..., 0], normals / torch.sqrt((normals * normals).sum(-1, keepdim=True) + _EPS_LEN**2)


@torch.no_grad()
def sphere_distance(gaussians: SphereGaussians, points: torch.Tensor,
                    settings: SoftSDFSettings | None = SoftSDFSettings(), neighbours: int = 32) -> torch.Tensor:
    """Signed distance (P,) m of points (P, 3) to the Gaussians' sphere union (radius 2 scale):
    the soft SDF with `settings` (None: the exact distance min_i |p - c_i| - r_i), from each
    point's `neighbours` nearest centres."""
    from scipy.spatial import cKDTree

    centers, radii = gaussians.centers.detach(), gaussians.radii.detach()
    k = min(neighbours, len(centers))
    _, near = cKDTree(centers.double().cpu().numpy()).query(points.double().cpu().numpy(), k)
    near = torch.as_tensor(near, device=centers.device).view(len(points), k)
    if settings is None:
        return ((points[:, None] - centers[near]).norm(dim=-1) - radii[near]).min(1).values
    return soft_sdf(points[:, None], centers[near], radii[near], settings)[0][:, 0]


def solid_grid(gaussians: SphereGaussians, resolution: int = 40) -> SolidGrid:
    """The SolidGrid of the Gaussians' spheres with `resolution` voxels along the longest side of
    their bounding box grown by twice the median radius (field in the centres' dtype)."""
    from scipy import ndimage

    centers = gaussians.centers.detach()
    g64 = SphereGaussians(*(t.detach().double().cpu() for t in gaussians.tensors()))
    c, r = g64.centers, g64.radii
    reach = float(r.median())
    lo, hi = (c - r[:, None]).min(0).values - 2 * reach, (c + r[:, None]).max(0).values + 2 * reach
    spacing = float((hi - lo).max()) / resolution
    shape = tuple(int(n) for n in torch.ceil((hi - lo) / spacing))
    origin = lo + 0.5 * spacing
    axes = [origin[i] + torch.arange(n, dtype=torch.float64) * spacing for i, n in enumerate(shape)]
    points = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    dist = sphere_distance(g64, points, settings=None).view(shape).numpy()
    cells = max(1, round(reach / spacing))
    ball = np.linalg.norm(np.indices((2 * cells + 1,) * 3) - cells, axis=0) <= cells
    solid = ndimage.binary_erosion(ndimage.binary_fill_holes(dist <= reach), ball) | (dist <= 0)
    signed = (ndimage.distance_transform_edt(~solid) - ndimage.distance_transform_edt(solid)) * spacing
    signed = np.where(solid, signed + 0.5 * spacing, signed - 0.5 * spacing)  # voxel centre to the solid's face
    gradient = np.stack(np.gradient(signed, spacing))
    field = torch.as_tensor(np.concatenate((signed[None], gradient)))[None].to(centers)
    return SolidGrid(origin.to(centers), spacing, torch.tensor(shape, dtype=torch.float64).sub(1).mul(spacing).to(centers),
                     field, reach)


def solid_sdf(points: torch.Tensor, centers: torch.Tensor, radii: torch.Tensor, grid: SolidGrid,
              settings: SoftSDFSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """Signed distance (..., P) m and outward normal (..., P, 3) of the solid a sphere union bounds,
    for points that may sink deep into it (a pusher): the soft minimum of the sphere distances
    (phi_soft, unclamped, differentiable in the spheres) near and outside the surface, blended into
    the SolidGrid's distance between a quarter and three quarters of the median radius deep. points
    (..., P, 3) in the spheres' frame, centers (N, 3), radii (N,)."""
    offsets = [points[..., :, None, i] - centers[None, :, i] for i in range(3)]
    phi, normals = _soft_min_distance(offsets, radii[None, :], settings, clamp=False)
    deep, deep_normals = grid.sample(points)
    w = ((-deep - 0.25 * grid.reach) / (0.5 * grid.reach)).clamp(0.0, 1.0)
    phi = (1 - w) * phi + w * deep
    normals = (1 - w[..., None]) * normals + w[..., None] * deep_normals
    return phi, normals / torch.sqrt((normals * normals).sum(-1, keepdim=True) + _EPS_LEN**2)


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
