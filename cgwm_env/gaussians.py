"""SphereGaussians: the one scene representation, drawn by the renderer and used as collision geometry.

Each Gaussian is isotropic: centre c (m), scale s (m), opacity, RGB colour. As collision geometry
it is the sphere (c, r) with r = 2 s (paper section III-D-1).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cgwm_env import math3d


@dataclass(frozen=True)
class SphereGaussians:
    """N isotropic Gaussians in the body frame of one object.

    centers: (N, 3) m; log_scales: (N,) log of the standard deviation in m;
    opacity_logits: (N,) logit of the opacity; colors: (N, 3) RGB in [0, 1].
    """

    centers: torch.Tensor
    log_scales: torch.Tensor
    opacity_logits: torch.Tensor
    colors: torch.Tensor

    def __post_init__(self):
        n = self.centers.shape[0] if self.centers.ndim == 2 else -1
        if self.centers.ndim != 2 or self.centers.shape[1] != 3:
            raise ValueError(f"centers: expected shape (N, 3), got {tuple(self.centers.shape)}")
        if n == 0:
            raise ValueError("centers: expected at least one Gaussian, got an empty set")
        for name, want in (("log_scales", (n,)), ("opacity_logits", (n,)), ("colors", (n, 3))):
            got = tuple(getattr(self, name).shape)
            if got != want:
                raise ValueError(f"{name}: expected shape {want}, got {got}")
        for name in ("centers", "log_scales", "opacity_logits", "colors"):
            if not torch.isfinite(getattr(self, name)).all():
                raise ValueError(f"{name}: expected finite values, got NaN or inf")

    def __len__(self) -> int:
        return self.centers.shape[0]

    @property
    def scales(self) -> torch.Tensor:
        """Standard deviations (N,), m."""
        return self.log_scales.exp()

    @property
    def radii(self) -> torch.Tensor:
        """Collision sphere radii r = 2 s, (N,), m."""
        return 2.0 * self.log_scales.exp()

    @property
    def opacities(self) -> torch.Tensor:
        """Opacities in (0, 1), (N,)."""
        return torch.sigmoid(self.opacity_logits)

    @classmethod
    def from_spheres(cls, centers, radii, colors=None, opacity: float = 0.99) -> "SphereGaussians":
        """Gaussians whose collision spheres are (centers (N, 3), radii (N,)) in m."""
        centers = torch.as_tensor(centers, dtype=torch.get_default_dtype())
        radii = torch.as_tensor(radii, dtype=centers.dtype).expand(centers.shape[:1]).clone()
        if (radii <= 0).any():
            raise ValueError("radii: expected positive values")
        if colors is None:
            colors = torch.full_like(centers, 0.5)
        colors = torch.as_tensor(colors, dtype=centers.dtype)
        logit = torch.logit(torch.tensor(opacity, dtype=centers.dtype))
        return cls(centers, torch.log(radii / 2.0), logit.expand(radii.shape).clone(), colors)

    def to(self, *args, **kwargs) -> "SphereGaussians":
        """Same Gaussians with every tensor moved or cast, as torch.Tensor.to."""
        return SphereGaussians(*(t.to(*args, **kwargs) for t in self.tensors()))

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return (self.centers, self.log_scales, self.opacity_logits, self.colors)

    def transformed_centers(self, position: torch.Tensor, quat: torch.Tensor) -> torch.Tensor:
        """World-frame centres for body poses position (..., 3), quat (..., 4) -> (..., N, 3)."""
        rot = math3d.quat_to_matrix(quat)
        return self.centers @ rot.transpose(-1, -2) + position[..., None, :]

    def save_npz(self, path: str | Path) -> None:
        np.savez(path, **{k: t.detach().cpu().numpy() for k, t in zip(_FIELDS, self.tensors())})

    @classmethod
    def load_npz(cls, path: str | Path) -> "SphereGaussians":
        try:
            with np.load(path, allow_pickle=False) as data:
                missing = [k for k in _FIELDS if k not in data.files]
                if missing:
                    raise ValueError(f"path: {path} lacks arrays {missing}")
                arrays = [torch.as_tensor(data[k], dtype=torch.get_default_dtype()) for k in _FIELDS]
        except (OSError, EOFError) as err:
            raise ValueError(f"path: {path} is not a readable .npz file ({err})") from err
        return cls(*arrays)


_FIELDS = ("centers", "log_scales", "opacity_logits", "colors")

# One colour per face (+x, -x, +y, -y, +z, -z) so a cube's rotation is visible in images.
FACE_COLORS = torch.tensor(
    [[0.85, 0.15, 0.15], [0.15, 0.65, 0.2], [0.15, 0.3, 0.85], [0.9, 0.8, 0.1], [0.9, 0.9, 0.9], [0.6, 0.2, 0.7]]
)


def box_gaussians(size, per_edge: int = 10, hollow: bool = True) -> SphereGaussians:
    """A box of sides `size` (3,) m filled (or, if hollow, shelled) with equal spheres.

    `per_edge` spheres span the longest side; sphere radius r = longest / (2 per_edge), and the
    outermost spheres touch the box's faces. Each sphere takes the colour of its nearest face.
    """
    size = torch.as_tensor(size, dtype=torch.get_default_dtype()).expand(3)
    if (size <= 0).any() or per_edge < 1:
        raise ValueError(f"size: expected three positive lengths and per_edge >= 1, got {size.tolist()}, {per_edge}")
    r = float(size.max()) / (2 * per_edge)
    axes = []
    for length in size.tolist():
        n = max(1, round(length / (2 * r)))
        half = length / 2 - r
        axes.append(torch.linspace(-half, half, n) if n > 1 else torch.zeros(1))
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)
    half_extent = size / 2 - r
    # Distance of each sphere to each face, inside the box; shell spheres touch a face.
    face_gap = torch.cat((half_extent - grid, grid + half_extent), dim=1)[:, [0, 3, 1, 4, 2, 5]]
    if hollow:
        grid, face_gap = grid[face_gap.min(1).values < 1e-9], face_gap[face_gap.min(1).values < 1e-9]
    colors = FACE_COLORS.to(grid.dtype)[face_gap.argmin(1)]
    return SphereGaussians.from_spheres(grid, torch.full((len(grid),), r), colors)
