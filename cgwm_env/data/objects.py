"""The object library: rigid objects built from MuJoCo primitives, with their true mass and inertia.

Every object is a union of primitive geoms (box, sphere, ellipsoid, cylinder,
capsule) of one density, coloured part by part so that its rotation shows in images. The body
frame is placed at the centre of mass (so a freejoint's position is the centre of mass, as in
cgwm_env.physics.model.State); in the rest pose +z is up and the object stands on its base.
Mass and inertia are read from MuJoCo's compiled model, so they are what MuJoCo simulates
(overlapping parts count twice there, and so here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import mujoco
import numpy as np

GEOM_TYPES = ("box", "sphere", "ellipsoid", "cylinder", "capsule")


@dataclass(frozen=True)
class Geom:
    """One primitive in MuJoCo's conventions: `size` as in MJCF (half sizes for a box, (radius,
    half-height) for a cylinder or capsule along its z, semi-axes for an ellipsoid), m; `pos` (3,) m
    and `quat` (w, x, y, z) of its frame in the body frame; `rgba` colour in [0, 1]."""

    type: str
    size: tuple
    pos: tuple
    rgba: tuple
    quat: tuple = (1.0, 0.0, 0.0, 0.0)

    def __post_init__(self):
        if self.type not in GEOM_TYPES:
            raise ValueError(f"type: expected one of {GEOM_TYPES}, got {self.type!r}")

    @property
    def rotation(self) -> np.ndarray:
        """The geom frame's rotation in the body frame, (3, 3)."""
        w, x, y, z = np.asarray(self.quat, float) / np.linalg.norm(self.quat)
        return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                         [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                         [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])

    def area(self) -> float:
        """Surface area, m^2 (Thomsen's approximation for an ellipsoid)."""
        s = self.size
        if self.type == "box":
            return 8.0 * (s[0] * s[1] + s[1] * s[2] + s[0] * s[2])
        if self.type == "sphere":
            return 4.0 * math.pi * s[0] ** 2
        if self.type == "ellipsoid":
            p = 1.6075
            a, b, c = (x**p for x in s)
            return 4.0 * math.pi * ((a * b + a * c + b * c) / 3.0) ** (1.0 / p)
        if self.type == "cylinder":
            return 2.0 * math.pi * s[0] * (s[0] + 2.0 * s[1])
        return 4.0 * math.pi * s[0] ** 2 + 4.0 * math.pi * s[0] * s[1]  # capsule

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """n uniform points on this geom's surface and their outward normals, both (n, 3), body frame."""
        s = np.asarray(self.size, float)
        if self.type == "box":
            areas = np.array([s[1] * s[2], s[0] * s[2], s[0] * s[1]]).repeat(2)
            face = rng.choice(6, size=n, p=areas / areas.sum())
            axis, sign = face // 2, np.where(face % 2 == 0, 1.0, -1.0)
            p = rng.uniform(-1.0, 1.0, (n, 3)) * s
            p[np.arange(n), axis] = sign * s[axis]
            normal = np.zeros((n, 3))
            normal[np.arange(n), axis] = sign
        elif self.type in ("sphere", "ellipsoid"):
            axes = np.broadcast_to(s, (3,)) if self.type == "ellipsoid" else np.full(3, s[0])
            u = np.empty((0, 3))
            while len(u) < n:  # the area element of the map sphere -> ellipsoid is ~ |u / axes|
                cand = _unit(rng.normal(size=(2 * n + 8, 3)))
                w = np.linalg.norm(cand / axes, axis=1)
                u = np.concatenate((u, cand[rng.uniform(size=len(cand)) * w.max() * 1.000001 < w]))
            u = u[:n]
            p, normal = u * axes, _unit(u / axes)
        else:  # cylinder or capsule along z: radius r, half-height h of the straight part
            r, h = s[0], s[1]
            side = 4.0 * math.pi * r * h
            ends = 2.0 * math.pi * r * r if self.type == "cylinder" else 4.0 * math.pi * r * r
            on_side = rng.uniform(size=n) < side / (side + ends)
            phi = rng.uniform(0.0, 2.0 * math.pi, n)
            radial = np.stack((np.cos(phi), np.sin(phi), np.zeros(n)), 1)
            p = radial * r + np.outer(rng.uniform(-h, h, n), [0.0, 0.0, 1.0])
            normal = radial.copy()
            top = np.where(rng.uniform(size=n) < 0.5, 1.0, -1.0)
            if self.type == "cylinder":
                rho = r * np.sqrt(rng.uniform(size=n))
                cap = radial * rho[:, None] + np.outer(top * h, [0.0, 0.0, 1.0])
                cap_normal = np.outer(top, [0.0, 0.0, 1.0])
            else:
                cap_normal = _unit(rng.normal(size=(n, 3)))
                cap_normal[:, 2] = np.abs(cap_normal[:, 2]) * top
                cap = cap_normal * r + np.outer(top * h, [0.0, 0.0, 1.0])
            p = np.where(on_side[:, None], p, cap)
            normal = np.where(on_side[:, None], normal, cap_normal)
        rot = self.rotation
        return p @ rot.T + np.asarray(self.pos), normal @ rot.T

    def contains(self, points: np.ndarray) -> np.ndarray:
        """Whether body-frame points (n, 3) lie inside or on this geom, (n,) bool."""
        p = (points - np.asarray(self.pos)) @ self.rotation
        s = np.asarray(self.size, float)
        if self.type == "box":
            return (np.abs(p) <= s).all(axis=1)
        if self.type == "sphere":
            return np.linalg.norm(p, axis=1) <= s[0]
        if self.type == "ellipsoid":
            return ((p / s) ** 2).sum(axis=1) <= 1.0
        if self.type == "cylinder":
            return (np.hypot(p[:, 0], p[:, 1]) <= s[0]) & (np.abs(p[:, 2]) <= s[1])
        p = p.copy()
        p[:, 2] -= np.clip(p[:, 2], -s[1], s[1])  # capsule: distance to its axis segment
        return np.linalg.norm(p, axis=1) <= s[0]

    def xml(self, name: str, density: float) -> str:
        """This geom as an MJCF <geom> element."""
        def fmt(v):
            return " ".join(f"{x:.9g}" for x in v)
        return (f'<geom name="{name}" type="{self.type}" size="{fmt(self.size)}" pos="{fmt(self.pos)}" '
                f'quat="{fmt(self.quat)}" rgba="{fmt(self.rgba)}" density="{density:.9g}"/>')


@dataclass(frozen=True, eq=False)
class ObjectSpec:
    """A rigid object: its parts (`geoms`, body frame at the centre of mass), `density` kg/m^3,
    the compiled truth `mass` kg, `inertia` (3, 3) kg m^2 about the centre of mass in the body
    frame, `com` (3,) m (zero: the body frame is at the centre of mass) and `size`, a bounding
    radius about the body origin, m."""

    name: str
    geoms: tuple
    density: float
    mass: float
    inertia: np.ndarray
    com: np.ndarray
    size: float

    def mjcf(self, body_name: str = "object", pos=(0.0, 0.0, 0.0), quat=(1.0, 0.0, 0.0, 0.0)) -> str:
        """A <body> with a freejoint (both named `body_name`) and the geoms `{body_name}_{i}`,
        at `pos` (3,) m and orientation `quat` (w, x, y, z); no assets needed."""
        pos, quat = _vector("pos", pos, 3), _vector("quat", quat, 4)
        geoms = "".join(g.xml(f"{body_name}_{i}", self.density) for i, g in enumerate(self.geoms))
        return (f'<body name="{body_name}" pos="{" ".join(f"{x:.9g}" for x in pos)}" '
                f'quat="{" ".join(f"{x:.9g}" for x in quat)}"><freejoint name="{body_name}"/>{geoms}</body>')

    def sample_surface(self, n: int, seed: int = 0) -> np.ndarray:
        """n points (n, 3) m, uniform on the surface of the union of the geoms, body frame."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n: expected a count >= 0, got {n!r}")
        rng = np.random.default_rng(seed)
        areas = np.array([g.area() for g in self.geoms])
        found = [np.empty((0, 3))]
        count = 0
        while count < n:
            which = rng.choice(len(self.geoms), size=2 * n + 64, p=areas / areas.sum())
            for i, geom in enumerate(self.geoms):
                m = int((which == i).sum())
                if m == 0:
                    continue
                p, normal = geom.sample(m, rng)
                probe = p + 1e-6 * normal  # a surface point of the union has free space just outside it
                outside = ~np.any([g.contains(probe) for g in self.geoms], axis=0)
                found.append(p[outside])
                count += int(outside.sum())
        points = np.concatenate(found)
        return points[rng.permutation(len(points))[:n]]


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _vector(name: str, value, n: int) -> np.ndarray:
    v = np.asarray(value, dtype=float)
    if v.shape != (n,) or not np.isfinite(v).all():
        raise ValueError(f"{name}: expected {n} finite numbers, got {value!r}")
    return v


def _compile(geoms: tuple, density: float) -> mujoco.MjModel:
    """The object alone, compiled by MuJoCo (its body has id 1)."""
    body = "".join(g.xml(f"g{i}", density) for i, g in enumerate(geoms))
    return mujoco.MjModel.from_xml_string(f"<mujoco><worldbody><body><freejoint/>{body}</body></worldbody></mujoco>")


def _make(name: str, geoms: list[Geom], density: float) -> ObjectSpec:
    """An ObjectSpec with its geoms moved so that MuJoCo's centre of mass is the body origin."""
    com = _compile(tuple(geoms), density).body_ipos[1].copy()
    geoms = tuple(replace(g, pos=tuple(float(x) for x in np.asarray(g.pos) - com)) for g in geoms)
    model = _compile(geoms, density)
    rot = np.zeros(9)
    mujoco.mju_quat2Mat(rot, model.body_iquat[1])
    rot = rot.reshape(3, 3)
    inertia = rot @ np.diag(model.body_inertia[1]) @ rot.T
    size = float(np.max(np.linalg.norm(model.geom_pos, axis=1) + model.geom_rbound))
    return ObjectSpec(name, geoms, density, float(model.body_mass[1]), inertia,
                      model.body_ipos[1].copy(), size)


def _hue(h: float, s: float = 0.75, v: float = 0.9) -> tuple:
    """An opaque RGBA colour from hue h in [0, 1)."""
    k = (np.array([5.0, 3.0, 1.0]) + 6.0 * h) % 6.0
    rgb = v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    return (*(float(x) for x in rgb), 1.0)


def _cube() -> list[Geom]:
    """A 5 cm cube of eight coloured octants (exactly a cube; each face shows four colours)."""
    q = 0.0125
    return [Geom("box", (q, q, q), (sx * q, sy * q, sz * q + 0.025), _hue(i / 8.0))
            for i, (sx, sy, sz) in enumerate((x, y, z) for x in (-1, 1) for y in (-1, 1) for z in (-1, 1))]


def _vessel(radius: float, height: float, wall: float, bottom: float, colors) -> list[Geom]:
    """An open vessel standing on z = 0, sizes in m: a wall of len(colors) boxes whose outer faces
    form a regular polygon of apothem `radius` (they meet at its corners and overlap inside), and
    a floor disc from z = 1 mm to `bottom` (a floor flush with the wall's rim made MuJoCo unstable
    at rest: the disc's and the boxes' coplanar contacts)."""
    n = len(colors)
    floor = (bottom - 0.001) / 2
    geoms = [Geom("cylinder", (radius - wall / 2, floor), (0.0, 0.0, 0.001 + floor), (0.5, 0.5, 0.5, 1.0))]
    for i, color in enumerate(colors):
        a = 2.0 * math.pi * i / n
        r = radius - wall / 2
        geoms.append(Geom("box", (wall / 2, radius * math.tan(math.pi / n), height / 2),
                          (r * math.cos(a), r * math.sin(a), height / 2), color,
                          (math.cos(a / 2), 0.0, 0.0, math.sin(a / 2))))
    return geoms


def _cup() -> list[Geom]:
    """A cup 5 cm across and 6 cm tall, its wall in 16 hues."""
    return _vessel(0.025, 0.06, 0.003, 0.004, [_hue(i / 16.0) for i in range(16)])


def _mug() -> list[Geom]:
    """A two-tone mug 5 cm across and 6 cm tall with a C-shaped handle on +x."""
    colors = [(0.92, 0.9, 0.85, 1.0) if i % 2 else (0.2, 0.45, 0.8, 1.0) for i in range(16)]
    handle = (0.75, 0.15, 0.15, 1.0)
    x = 0.025
    return _vessel(x, 0.06, 0.003, 0.004, colors) + [
        Geom("box", (0.008, 0.004, 0.003), (x + 0.006, 0.0, 0.014), handle),
        Geom("box", (0.008, 0.004, 0.003), (x + 0.006, 0.0, 0.046), handle),
        Geom("box", (0.003, 0.004, 0.019), (x + 0.011, 0.0, 0.030), (0.9, 0.6, 0.1, 1.0)),
    ]


def _duck() -> list[Geom]:
    """A rubber duck of ellipsoids and spheres, beak on +x, wings of two colours."""
    yellow, pale = (0.95, 0.8, 0.1, 1.0), (1.0, 0.9, 0.45, 1.0)
    return [
        Geom("ellipsoid", (0.03, 0.022, 0.018), (0.0, 0.0, 0.018), yellow),
        Geom("sphere", (0.013,), (0.02, 0.0, 0.04), pale),
        Geom("ellipsoid", (0.009, 0.006, 0.003), (0.036, 0.0, 0.038), (0.95, 0.45, 0.05, 1.0)),
        Geom("ellipsoid", (0.01, 0.008, 0.006), (-0.028, 0.0, 0.028), (0.85, 0.65, 0.1, 1.0)),
        Geom("sphere", (0.0025,), (0.029, 0.0075, 0.046), (0.05, 0.05, 0.05, 1.0)),
        Geom("sphere", (0.0025,), (0.029, -0.0075, 0.046), (0.05, 0.05, 0.05, 1.0)),
        Geom("ellipsoid", (0.014, 0.004, 0.008), (-0.004, 0.02, 0.022), (0.3, 0.7, 0.3, 1.0)),
        Geom("ellipsoid", (0.014, 0.004, 0.008), (-0.004, -0.02, 0.022), (0.6, 0.3, 0.8, 1.0)),
    ]


def _lblock() -> list[Geom]:
    """An L of three 2.5 cm cubes in the x-z plane (5 cm along each arm), one colour per cube."""
    q = 0.0125
    return [Geom("box", (q, q, q), (q, 0.0, q), (0.85, 0.2, 0.2, 1.0)),
            Geom("box", (q, q, q), (3 * q, 0.0, q), (0.2, 0.7, 0.3, 1.0)),
            Geom("box", (q, q, q), (q, 0.0, 3 * q), (0.2, 0.35, 0.85, 1.0))]


def _bottle() -> list[Geom]:
    """A bottle 3.6 cm across and 8 cm tall: base, label, domed shoulder, neck, cap and a tag on -y."""
    r = 0.018
    return [
        Geom("cylinder", (r, 0.01), (0.0, 0.0, 0.01), (0.15, 0.35, 0.75, 1.0)),
        Geom("cylinder", (r, 0.015), (0.0, 0.0, 0.035), (0.92, 0.92, 0.88, 1.0)),
        Geom("ellipsoid", (r, r, 0.012), (0.0, 0.0, 0.05), (0.3, 0.6, 0.85, 1.0)),
        Geom("cylinder", (0.007, 0.008), (0.0, 0.0, 0.064), (0.3, 0.6, 0.85, 1.0)),
        Geom("cylinder", (0.008, 0.005), (0.0, 0.0, 0.075), (0.85, 0.15, 0.1, 1.0)),
        Geom("box", (0.006, 0.002, 0.008), (0.0, -r - 0.0005, 0.035), (0.1, 0.1, 0.1, 1.0)),
    ]


OBJECTS: dict[str, ObjectSpec] = {
    name: _make(name, parts(), density)
    for name, parts, density in (("cube", _cube, 800.0), ("cup", _cup, 2400.0), ("duck", _duck, 400.0),
                                 ("lblock", _lblock, 1200.0), ("mug", _mug, 2400.0), ("bottle", _bottle, 1000.0))
}


def get_object(name: str) -> ObjectSpec:
    """The library object `name` (one of OBJECTS)."""
    if name not in OBJECTS:
        raise ValueError(f"object: expected one of {sorted(OBJECTS)}, got {name!r}")
    return OBJECTS[name]
