"""The right LEAP Hand's kinematics (pytorch-kinematics on its MJCF), query spheres and motor order.

Everything comes from the MJCF (hand_mjcf), the one source of the hand's geometry, read on first
use; LOWER, UPPER (joint limits) and MOVES are read when first asked for. Poses are in the hand's
frame (palm-up, fingers along +x). Joint vectors are in sim order (hand_mjcf.JOINT_NAMES), radians,
shape (..., 16); every function is batched over the leading dimensions and differentiable in torch.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import mujoco
import numpy as np
import torch

from cgwm_env.physics.gaussians import SphereGaussians
from cgwm_env.physics.hand_mjcf import HAND_XML, JOINT_OF_MOTOR, MOTOR_OF_JOINT, N_JOINTS, joint_names, link_names, mjcf
from cgwm_env.physics.math3d import fibonacci_sphere

if TYPE_CHECKING:
    import pytorch_kinematics as pk


@functools.cache
def _joint_link() -> np.ndarray:
    """(16,) index into LINK_NAMES of the body each joint moves."""
    return mjcf().jnt_bodyid - 1


def _ancestor_mask() -> np.ndarray:
    """(L, 16) bool: joint j moves link l."""
    model, joint_link = mjcf(), _joint_link()
    mask = np.zeros((model.nbody - 1, N_JOINTS), dtype=bool)
    for link in range(model.nbody - 1):
        body = link + 1
        while body > 0:
            mask[link, joint_link == body - 1] = True
            body = model.body_parentid[body]
    return mask


@functools.cache
def _limits() -> tuple[torch.Tensor, torch.Tensor]:
    return tuple(torch.tensor(mjcf().jnt_range[:, i], dtype=torch.float32) for i in (0, 1))


@functools.cache
def _moves() -> torch.Tensor:
    return torch.as_tensor(_ancestor_mask())


# Read from the MJCF on first access (through the module's __getattr__).
_FROM_MJCF = {
    "LOWER": lambda: _limits()[0],  # (16,) rad
    "UPPER": lambda: _limits()[1],  # (16,) rad
    "MOVES": _moves,  # (L, 16) bool: joint j moves link l
}


def __getattr__(name: str):
    if name not in _FROM_MJCF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return _FROM_MJCF[name]()


def load_chain(dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> pk.Chain:
    """The hand as a pytorch-kinematics chain rooted at the palm (joints in sim order)."""
    import pytorch_kinematics as pk  # imported on first use: it adds about 0.6 s to torch's import
    import pytorch_kinematics.mjcf

    # pytorch-kinematics 0.10 keys JOINT_TYPE_MAP by mujoco's enum, but mujoco >= 3.12 reports joint
    # types as numpy ints (KeyError: np.int32(3)); plain int keys match both.
    pytorch_kinematics.mjcf.JOINT_TYPE_MAP = {int(k): v for k, v in pytorch_kinematics.mjcf.JOINT_TYPE_MAP.items()}
    chain = pk.build_chain_from_mjcf(HAND_XML.read_text(), body="palm").to(dtype=dtype, device=device)
    if tuple(chain.get_joint_parameter_names()) != joint_names():
        raise RuntimeError(f"chain joint order {chain.get_joint_parameter_names()} differs from the MJCF's")
    return chain


@functools.cache
def _chain(dtype: torch.dtype, device: torch.device) -> tuple[pk.Chain, torch.Tensor]:
    chain = load_chain(dtype, device)
    return chain, torch.as_tensor(chain.get_frame_indices(*link_names()), device=device)


def _check_joints(x, name: str) -> torch.Tensor:
    x = torch.as_tensor(x)
    if not x.is_floating_point():
        x = x.to(torch.float32)
    if x.ndim < 1 or x.shape[-1] != N_JOINTS:
        raise ValueError(f"{name}: expected shape (..., {N_JOINTS}) angles (rad), got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name}: expected finite angles, got NaN or inf")
    return x


def forward_kinematics(q) -> torch.Tensor:
    """Link poses in the hand's frame: q (..., 16) rad -> (..., L, 4, 4), links in `LINK_NAMES` order."""
    q = _check_joints(q, "q")
    chain, frames = _chain(q.dtype, q.device)
    flat = q.reshape(-1, N_JOINTS)
    T = chain.forward_kinematics_tensor(flat, analytical_grad=False)[frames]  # (L, B, 4, 4)
    return T.transpose(0, 1).reshape(*q.shape[:-1], len(link_names()), 4, 4)


def point_jacobian(q, link, points) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions (hand frame) and linear-velocity Jacobians of points fixed on links.

    q: (..., 16) rad; link: (P,) indices into LINK_NAMES; points: (P, 3) m in the link frames.
    Returns x (..., P, 3) m and J (..., P, 3, 16) with dx = J dq.
    """
    q = _check_joints(q, "q")
    T = forward_kinematics(q)
    link = torch.as_tensor(link, device=q.device)
    points = torch.as_tensor(points, dtype=q.dtype, device=q.device)
    if link.ndim != 1 or points.shape != (link.shape[0], 3):
        raise ValueError(f"points: expected shape ({link.shape[0]}, 3) for link (P,), got {tuple(points.shape)}")
    x = link_points(T, link, points)
    return x, jacobian_at(T, link, x)


def link_points(T: torch.Tensor, link: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Points (P, 3) fixed in links `link` (P,) placed by link poses T (..., L, 4, 4): (..., P, 3)."""
    R, t = T[..., link, :3, :3], T[..., link, :3, 3]
    return (R @ points[:, :, None])[..., 0] + t


def jacobian_at(T: torch.Tensor, link: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Linear-velocity Jacobians (..., P, 3, 16) of hand-frame points x (..., P, 3) riding on links
    `link` (P,), given the link poses T (..., L, 4, 4): d x / d q."""
    return joint_jacobian(joint_axes(T), joint_origins(T), _moves().to(T)[link], x)


def joint_jacobian(axes: torch.Tensor, origins: torch.Tensor, moves: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """d x / d q (..., P, 3, 16) of points x (..., P, 3) given the joints' axes and origins (..., 16, 3)
    and which joints move each point's link, moves (P, 16) or (..., P, 16), 0 or 1: axis x (x - origin)."""
    J = torch.linalg.cross(axes[..., None, :, :], x[..., :, None, :] - origins[..., None, :, :])  # (..., P, 16, 3)
    return (J * moves[..., None]).transpose(-1, -2)


def joint_origins(T: torch.Tensor) -> torch.Tensor:
    """The joints' origins in the hand frame, (..., 16, 3) m, given the link poses T (..., L, 4, 4)."""
    joint_link = torch.as_tensor(_joint_link(), device=T.device)
    R_j, t_j = T[..., joint_link, :3, :3], T[..., joint_link, :3, 3]
    return (R_j @ torch.as_tensor(mjcf().jnt_pos, dtype=T.dtype, device=T.device)[:, :, None])[..., 0] + t_j


def joint_axes(T: torch.Tensor) -> torch.Tensor:
    """The joints' unit axes in the hand frame, (..., 16, 3), given the link poses T (..., L, 4, 4)."""
    R_j = T[..., torch.as_tensor(_joint_link(), device=T.device), :3, :3]
    return (R_j @ torch.as_tensor(mjcf().jnt_axis, dtype=T.dtype, device=T.device)[:, :, None])[..., 0]


def sim_to_motor(q) -> torch.Tensor:
    """Motor angles (rad, by motor ID) of sim joint angles q (..., 16): reorders and adds pi."""
    q = _check_joints(q, "q")
    return (q + math.pi)[..., JOINT_OF_MOTOR]


def motor_to_sim(m) -> torch.Tensor:
    """Sim joint angles (rad, sim order) of motor angles m (..., 16, by motor ID): reorders and subtracts pi."""
    m = _check_joints(m, "m")
    return m[..., MOTOR_OF_JOINT] - math.pi


# Query points: spheres inside the collision geoms whose surfaces reach the geoms' surfaces.
PAD_POINTS = 96  # per fingertip pad (capsule)
PAD_RADIUS = 0.006  # m
PALM_SPACING = 0.008  # m, grid on the palm face
THIN = 0.005  # m: boxes thinner than this are inner plates, covered by their neighbours
COVER_RADIUS = 0.004  # m


def _capsule_points(radius: float, half_length: float, n: int) -> np.ndarray:
    """n points (n, 3) spread evenly by area over a capsule of `radius` and `half_length` along z:
    its share of them on the cylinder, Fibonacci lattices on both."""
    n_side = round(n * half_length / (radius + half_length))
    caps = fibonacci_sphere(n - n_side).numpy() * radius
    caps[:, 2] += np.sign(caps[:, 2]) * half_length
    k = np.arange(n_side) + 0.5
    azimuth = np.pi * (3.0 - 5.0**0.5) * k
    side = np.stack((radius * np.cos(azimuth), radius * np.sin(azimuth), half_length * (2 * k / n_side - 1)), 1)
    return np.concatenate((caps, side))


def _box_cover(half: np.ndarray) -> tuple[np.ndarray, float]:
    """Sphere centres (N, 3) and the radius r covering a box of half sizes `half` (3,): on the
    surface of the box shrunk by r, at most r apart, so a face dips at most (sqrt(1.5) - 1) r
    between them (an object's edge pressed on the face finds it where MuJoCo's box is)."""
    r = min(half.min(), COVER_RADIUS)
    inset = half - r
    axes = [np.linspace(-h, h, int(np.ceil(2 * h / r - 1e-9)) + 1) for h in inset]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    on_surface = (np.abs(np.abs(grid) - inset) < 1e-9).any(1)
    return grid[on_surface], r


def _face_grid(half: np.ndarray) -> np.ndarray:
    """Sphere centres (N, 3) of radius PALM_SPACING / 2 on the box's -z face (the palm face), box frame."""
    r = PALM_SPACING / 2
    axes = [np.arange(-(h - r), h - r + 1e-9, PALM_SPACING) for h in half[:2]]
    xy = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 2)
    return np.concatenate((xy, np.full((len(xy), 1), r - half[2])), 1)


def _to_link(g: int, local: np.ndarray) -> np.ndarray:
    """Points (N, 3) in geom g's frame -> its body's frame."""
    R = np.zeros(9)
    mujoco.mju_quat2Mat(R, mjcf().geom_quat[g])
    return local @ R.reshape(3, 3).T + mjcf().geom_pos[g]


@functools.cache
def _query_points() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Link indices (P,), centres (P, 3) m, radii (P,) m and fixed normals (P, 3) in the link frames:
    pads, the palm's face grid, then covers of the fingers' boxes."""
    pads, face, rest = [], [], []  # (link, centres (N, 3), radius, normal (3,)) per geom
    model = mjcf()
    for g in range(model.ngeom):
        link, size = model.geom_bodyid[g] - 1, model.geom_size[g]
        if model.geom_type[g] == mujoco.mjtGeom.mjGEOM_CAPSULE:
            # A pad: centres on the capsule (radius size[0], half length size[1] along z) shrunk by PAD_RADIUS.
            local = _capsule_points(size[0] - PAD_RADIUS, size[1], PAD_POINTS)
            pads.append((link, _to_link(g, local), PAD_RADIUS, np.zeros(3)))
        elif model.geom_type[g] == mujoco.mjtGeom.mjGEOM_BOX and size.min() >= THIN:
            if link == 0:  # the palm's face: a grid whose contacts take the face's normal
                normal = _to_link(g, np.array([[0.0, 0.0, -1.0]])) - _to_link(g, np.zeros((1, 3)))
                face.append((link, _to_link(g, _face_grid(size)), PALM_SPACING / 2, normal[0]))
            else:
                local, r = _box_cover(size)
                rest.append((link, _to_link(g, local), r, np.zeros(3)))
    groups = pads + face + rest
    links = np.concatenate([np.full(len(c), link) for link, c, _, _ in groups])
    radii = np.concatenate([np.full(len(c), r) for _, c, r, _ in groups])
    normals = np.concatenate([np.tile(n, (len(c), 1)) for _, c, _, n in groups])
    return links, np.concatenate([c for _, c, _, _ in groups]), radii, normals


def query_points(dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Contact query spheres on the links: fingertip pads, then a grid on the palm's face, then
    ones covering the fingers' boxes. Returns link index (P,) into LINK_NAMES, centres (P, 3) m and
    radii (P,) m in the link frames, and normals (P, 3): the palm face's outward normal in the palm's
    frame for its grid (a contact there is flat whatever the object's surface), zeros elsewhere (the
    contact takes the object's normal)."""
    link, points, radii, normals = _query_points()
    return (torch.as_tensor(link), torch.tensor(points, dtype=dtype), torch.tensor(radii, dtype=dtype),
            torch.tensor(normals, dtype=dtype))


def query_points_world(q) -> torch.Tensor:
    """Query sphere centres in the hand's frame, q (..., 16) rad -> (..., P, 3) m."""
    q = _check_joints(q, "q")
    link, points, _, _ = query_points(q.dtype)
    T = forward_kinematics(q)[..., link, :, :]
    return (T[..., :3, :3] @ points.to(q.device)[:, :, None])[..., 0] + T[..., :3, 3]


@dataclass(frozen=True)
class HandModel:
    """The LEAP Hand as the simulator sees it: quasi-static and impedance-controlled (the paper's
    reference [41]; Jin's complementarity-free MPC), touching the object through query spheres on
    its links (a grid of them on the palm's face).

    Each joint is a massless spring-damper pulled to its position target, implicit in time: with
    gravity's torques tau_g on the links (link_masses (L,) kg at link_coms (L, 3) m in the link
    frames), dry joint friction f and contact torques tau_c over a step h,
        qdot+ = (shrink_f(tau_max tanh(K (target - q) / tau_max) + tau_g) + tau_c) / (D + h K),
        q+ = q + h qdot+,   shrink_f(t) = sign(t) max(|t| - f, 0),
    so the hand's block of the mass matrix is M_h = h (D + h K) (h^2 K as D -> 0: a pure spring).
    stiffness K (N m/rad), damping D (N m s/rad), torque_limit tau_max (N m) and friction_loss f
    (N m) are the actuators' and joints' (MJCF: kp 3, damping 0.2, force range 0.2196, frictionloss 0.02). query_link (P,), query_points (P, 3) m,
    query_radii (P,) m and query_normals (P, 3) in the link frames: the query spheres
    (query_points()). max_contacts: how many
    query spheres, the nearest the object, enter the contact solve each step (a cube resting on the
    palm face touches about 25 of its grid). lower, upper (16,): joint limits, rad.
    """

    stiffness: float = 3.0
    damping: float = 0.2
    torque_limit: float = 0.2196
    friction_loss: float = 0.02
    max_contacts: int = 48
    query_link: torch.Tensor = field(default_factory=lambda: query_points()[0])
    query_points: torch.Tensor = field(default_factory=lambda: query_points()[1])
    query_radii: torch.Tensor = field(default_factory=lambda: query_points()[2])
    query_normals: torch.Tensor = field(default_factory=lambda: query_points()[3])
    lower: torch.Tensor = field(default_factory=lambda: _limits()[0].clone())
    upper: torch.Tensor = field(default_factory=lambda: _limits()[1].clone())
    moves: torch.Tensor = field(default_factory=lambda: _moves().float())  # (L, 16): 1 where joint j moves link l
    link_masses: torch.Tensor = field(default_factory=lambda: torch.tensor(mjcf().body_mass[1:], dtype=torch.float32))
    link_coms: torch.Tensor = field(default_factory=lambda: torch.tensor(mjcf().body_ipos[1:], dtype=torch.float32))

    def __post_init__(self):
        for name in ("stiffness", "damping", "torque_limit", "friction_loss"):
            value = getattr(self, name)
            if not (value > 0 or name == "friction_loss" and value == 0) or not math.isfinite(value):
                raise ValueError(f"{name}: expected a positive finite number, got {value}")
        p = self.query_link.shape[0]
        shapes = {"query_points": (p, 3), "query_radii": (p,), "query_normals": (p, 3)}
        for name, shape in shapes.items():
            if tuple(getattr(self, name).shape) != shape:
                raise ValueError(f"{name}: expected shape {shape} for {p} query spheres, "
                                 f"got {tuple(getattr(self, name).shape)}")
        if not 1 <= self.max_contacts:
            raise ValueError(f"max_contacts: expected a count >= 1, got {self.max_contacts}")

    def to(self, dtype: torch.dtype | None = None, device=None) -> "HandModel":
        """The same hand with its float tensors cast to dtype and every tensor on device."""
        cast = {k: getattr(self, k).to(device=device, dtype=dtype) for k in (
            "query_points", "query_radii", "query_normals", "lower", "upper", "moves", "link_masses", "link_coms")}
        return dataclasses.replace(self, query_link=self.query_link.to(device), **cast)


def hand_scene() -> dict:
    """The Model fields of a scene on the LEAP Hand: the hand (HandModel) and no ground (an
    object off the palm ends the episode)."""
    return {"hand": HandModel(), "ground_height": None}


def hand_gaussians(spacing: float = 0.007) -> tuple[torch.Tensor, SphereGaussians]:
    """Gaussians for drawing the hand: scale 0.35 spacing (radius 0.7 spacing: neighbours overlap
    into a closed surface, which smaller ones leave open in the antialiased renderer), about
    `spacing` m apart on the surfaces of its collision geoms, coloured as the MJCF colours them. Returns the link index (N,)
    of each and the Gaussians in their link frames; place them with link_points(forward_kinematics(q), ...)."""
    links, centers, colors = [], [], []
    model = mjcf()
    for g in range(model.ngeom):
        size, kind = model.geom_size[g], model.geom_type[g]
        if kind == mujoco.mjtGeom.mjGEOM_BOX:
            local = _box_surface(size, spacing)
        elif kind == mujoco.mjtGeom.mjGEOM_CAPSULE:
            area = 4 * math.pi * size[0] ** 2 + 4 * math.pi * size[0] * size[1]
            local = fibonacci_sphere(max(8, round(area / spacing**2))).numpy() * size[0]
            local[:, 2] += np.sign(local[:, 2]) * size[1]
        else:
            continue
        links.append(np.full(len(local), model.geom_bodyid[g] - 1))
        centers.append(_to_link(g, local))
        colors.append(np.repeat(model.geom_rgba[g:g + 1, :3], len(local), 0))
    gaussians = SphereGaussians.from_spheres(torch.tensor(np.concatenate(centers), dtype=torch.float32),
                                             0.7 * spacing, torch.tensor(np.concatenate(colors), dtype=torch.float32))
    return torch.as_tensor(np.concatenate(links)), gaussians


def _box_surface(half: np.ndarray, spacing: float) -> np.ndarray:
    """Points (N, 3) about `spacing` apart on the surface of a box of half sizes `half` (3,)."""
    axes = [np.linspace(-h, h, max(2, int(np.ceil(2 * h / spacing)) + 1)) for h in half]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    on_face = (np.abs(np.abs(grid) - half) < 1e-9).any(1)
    return grid[on_face]
