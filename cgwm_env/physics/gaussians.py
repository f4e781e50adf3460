"""SphereGaussians: the one scene representation, drawn by the renderer and used as collision geometry.

Each Gaussian is isotropic: centre c (m), scale s (m), opacity, RGB colour. As collision geometry
it is the sphere (c, r) with r = 2 s (paper section III-D-1).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cgwm_env.checks import read_npz
from cgwm_env.physics import math3d


@dataclass(frozen=True)
class SphereGaussians:
    """N isotropic Gaussians in the body frame of one object (N = 0: an empty scene).

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
        data = read_npz(path, "path")
        missing = [k for k in _FIELDS if k not in data]
        if missing:
            raise ValueError(f"path: {path} lacks arrays {missing}")
        return cls(*(torch.as_tensor(data[k], dtype=torch.get_default_dtype()) for k in _FIELDS))

    def save_ply(self, path: str | Path) -> None:
        """Write the standard 3DGS .ply (binary little-endian float32, SH degree 0) that splat
        viewers open: x y z, nx ny nz (0), f_dc_0..2 = (colour - 0.5) / C0, opacity (logit),
        scale_0..2 (log, all equal), rot_0..3 = (1, 0, 0, 0)."""
        data = np.zeros(len(self), dtype=[(name, "<f4") for name in _PLY_PROPERTIES])
        centers, log_scales, logits, colors = (t.detach().cpu().double().numpy() for t in self.tensors())
        for i, axis in enumerate("xyz"):
            data[axis] = centers[:, i]
            data[f"scale_{i}"] = log_scales
            data[f"f_dc_{i}"] = (colors[:, i] - 0.5) / SH_C0
        data["opacity"] = logits
        data["rot_0"] = 1.0
        header = ["ply", "format binary_little_endian 1.0", f"element vertex {len(self)}"]
        header += [f"property float {name}" for name in _PLY_PROPERTIES] + ["end_header"]
        with open(path, "wb") as f:
            f.write(("\n".join(header) + "\n").encode("ascii"))
            f.write(data.tobytes())

    @classmethod
    def load_ply(cls, path: str | Path, scale_tolerance: float = 1e-4) -> "SphereGaussians":
        """Read a binary little-endian 3DGS .ply. Needs x y z f_dc_0..2 opacity scale_0..2; other
        properties (normals, rotation, f_rest_* higher-order SH) are ignored, so colour is the
        degree-0 term 0.5 + C0 f_dc. A Gaussian whose three log scales differ by more than
        `scale_tolerance` is not isotropic and is refused (ValueError), never averaged."""
        try:
            raw = Path(path).read_bytes()
        except OSError as err:
            raise ValueError(f"path: cannot read {path} ({err})") from err
        end = raw.find(b"end_header\n")
        if not raw.startswith(b"ply\n") or end < 0:
            raise ValueError(f"path: {path} is not a PLY file (no 'ply' magic or no end_header)")
        lines = raw[:end].decode("ascii", errors="replace").splitlines()[1:]
        fmt, count, props = None, None, []
        for line in lines:
            words = line.split()
            if not words or words[0] in ("comment", "obj_info"):
                continue
            if words[0] == "format":
                fmt = " ".join(words[1:])
            elif words[0] == "element":
                if count is not None or words[1:2] != ["vertex"] or len(words) != 3:
                    raise ValueError(f"path: {path}: expected a single 'element vertex N', got {line!r}")
                count = int(words[2])
            elif words[0] == "property" and len(words) == 3 and words[1] in _PLY_TYPES:
                props.append((words[2], _PLY_TYPES[words[1]]))
            else:
                raise ValueError(f"path: {path}: unsupported header line {line!r}")
        if fmt != "binary_little_endian 1.0":
            raise ValueError(f"path: {path}: expected format binary_little_endian 1.0, got {fmt!r}")
        names = [name for name, _ in props]
        missing = [name for name in _PLY_REQUIRED if name not in names]
        if count is None or missing:
            raise ValueError(f"path: {path}: missing vertex element or properties {missing}")
        dtype = np.dtype([(name, "<" + t) for name, t in props])
        body = raw[end + len(b"end_header\n"):]
        if len(body) != count * dtype.itemsize:
            raise ValueError(f"path: {path}: expected {count * dtype.itemsize} bytes of vertex data, got {len(body)}")
        v = np.frombuffer(body, dtype=dtype, count=count)
        col = lambda *keys: np.stack([v[k].astype(np.float64) for k in keys], axis=-1)  # noqa: E731
        log_scales = col("scale_0", "scale_1", "scale_2")
        spread = log_scales.max(1) - log_scales.min(1)
        if (spread > scale_tolerance).any():
            i = int(spread.argmax())
            raise ValueError(
                f"path: {path}: Gaussian {i} is anisotropic (log scales {log_scales[i].tolist()}); "
                f"SphereGaussians needs equal scales within {scale_tolerance}"
            )
        arrays = (col("x", "y", "z"), log_scales[:, 0], v["opacity"], 0.5 + SH_C0 * col("f_dc_0", "f_dc_1", "f_dc_2"))
        return cls(*(torch.as_tensor(np.array(a, np.float64), dtype=torch.get_default_dtype()) for a in arrays))


_FIELDS = ("centers", "log_scales", "opacity_logits", "colors")

SH_C0 = 0.28209479177387814  # degree-0 spherical harmonic, 1 / (2 sqrt(pi))
_PLY_PROPERTIES = (
    "x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
    "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3",
)
_PLY_REQUIRED = ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2")
_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}

# One colour per face (+x, -x, +y, -y, +z, -z) so a cube's rotation is visible in images.
FACE_COLORS = torch.tensor(
    [[0.85, 0.15, 0.15], [0.15, 0.65, 0.2], [0.15, 0.3, 0.85], [0.9, 0.8, 0.1], [0.9, 0.9, 0.9], [0.6, 0.2, 0.7]]
)


def box_gaussians(size, per_edge: int = 10, hollow: bool = True, edge_radius: float = 0.0) -> SphereGaussians:
    """A box of sides `size` (3,) m filled (or, if hollow, shelled) with equal spheres.

    `per_edge` spheres span the longest side; sphere radius r = longest / (2 per_edge), and the
    outermost spheres touch the box's faces. Each sphere takes the colour of its nearest face.
    The shell rounds the box's edges off: 1 mm out from an edge the soft signed distance reads
    about r / 2 too far. edge_radius > 0 adds spheres of that radius along the 12 edges, touching
    the two faces, 1.5 radii apart; with 0.7 mm on a 5 cm cube of r = 2.5 mm the edges read about
    1.2 mm too near instead (the soft minimum over many small spheres lies a little outside them).
    """
    size = torch.as_tensor(size, dtype=torch.get_default_dtype()).expand(3)
    if (size <= 0).any() or per_edge < 1:
        raise ValueError(f"size: expected three positive lengths and per_edge >= 1, got {size.tolist()}, {per_edge}")
    r = float(size.max()) / (2 * per_edge)
    if not 0.0 <= edge_radius < float(size.min()) / 2:
        raise ValueError(f"edge_radius: expected 0 (none) or a radius below half the shortest side, m, got {edge_radius}")
    axes = []
    for length in size.tolist():
        n = max(1, round(length / (2 * r)))
        half = length / 2 - r
        axes.append(torch.linspace(-half, half, n) if n > 1 else torch.zeros(1))
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)
    inner = size / 2 - r  # the shell spheres' centres lie on this box
    if hollow:
        grid = grid[(grid.abs() > inner - 1e-9).any(1)]
    radii = torch.full((len(grid),), r)
    if edge_radius > 0:
        edges = _box_edges(size / 2 - edge_radius, 1.5 * edge_radius)
        grid, radii = torch.cat((grid, edges)), torch.cat((radii, torch.full((len(edges),), edge_radius)))
    face_gap = torch.cat((inner - grid, grid + inner), dim=1)[:, [0, 3, 1, 4, 2, 5]]  # towards each face
    colors = FACE_COLORS.to(grid.dtype)[face_gap.argmin(1)]
    return SphereGaussians.from_spheres(grid, radii, colors)


def _box_edges(inset: torch.Tensor, spacing: float) -> torch.Tensor:
    """Points (N, 3) along the 12 edges of the box of half sizes `inset` (3,), at most `spacing`
    apart, each corner once."""
    signs = torch.tensor([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]])
    points = [torch.cartesian_prod(*([torch.tensor([-1.0, 1.0])] * 3)) * inset]  # the 8 corners
    for axis in range(3):
        others = [a for a in range(3) if a != axis]
        n = int(torch.ceil(2 * inset[axis] / spacing - 1e-9)) + 1
        t = torch.linspace(-float(inset[axis]), float(inset[axis]), n)[1:-1]
        edge = torch.zeros(4, len(t), 3)
        edge[..., axis] = t
        edge[..., others] = (signs * inset[others])[:, None, :]
        points.append(edge.reshape(-1, 3))
    return torch.cat(points)
