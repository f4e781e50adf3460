"""Model (an immutable description of the world), State, and the learnable physical parameters."""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import NamedTuple

import torch

from cgwm_env.config import read_yaml_mapping, settings_from_mapping
from cgwm_env.physics.collision import SoftSDFSettings, SolidGrid, SphereGrid, solid_grid, sphere_grid, support_spheres
from cgwm_env.physics.contact import ContactSettings
from cgwm_env.physics.gaussians import SphereGaussians, box_gaussians
from cgwm_env.physics.hand import HandModel
from cgwm_env.physics.hand_mjcf import N_JOINTS


# Default effective-mass contact gains: a critically damped spring-damper with a 20 ms time constant
# per unit mass (MuJoCo's default solref (0.02, 1) in acceleration form: stiffness 1/tau^2, damping 2/tau).
STIFFNESS, DAMPING = 2500.0, 100.0


@dataclass(frozen=True)
class PhysicalParams:
    """theta = (mass, inertia, mu, stiffness, damping) in an unconstrained form.

    Every field may carry a leading batch dimension (B,) to give each environment its own values.
    mass = exp(log_mass) kg; inertia = L L^T (kg m^2, body frame at the centre of mass) with L
    lower-triangular, its diagonal exp(diagonal of inertia_factor) and its strict lower triangle
    taken as is (so always positive definite); mu = softplus(mu_raw) >= 0;
    stiffness = exp(log_stiffness), damping = exp(log_damping): 1/s^2 and 1/s with effective-mass
    contact gains, N/m and N s/m with plain ones (ContactSettings.gain_mode; contact.py). Make fields leaf tensors with requires_grad to learn them.
    """

    log_mass: torch.Tensor
    inertia_factor: torch.Tensor
    mu_raw: torch.Tensor
    log_stiffness: torch.Tensor
    log_damping: torch.Tensor

    @classmethod
    def from_values(cls, mass, inertia, mu, stiffness, damping, dtype=None) -> "PhysicalParams":
        """From physical values; inertia is (3, 3) or (3,) for a diagonal tensor."""
        dtype = dtype or torch.get_default_dtype()
        t = {k: torch.as_tensor(v, dtype=dtype) for k, v in
             dict(mass=mass, inertia=inertia, mu=mu, stiffness=stiffness, damping=damping).items()}
        for name in ("mass", "stiffness", "damping"):
            if not (torch.isfinite(t[name]).all() and (t[name] > 0).all()):
                raise ValueError(f"{name}: expected positive finite values, got {t[name].tolist()}")
        if not (torch.isfinite(t["mu"]).all() and (t["mu"] >= 0).all()):
            raise ValueError(f"mu: expected finite values >= 0, got {t['mu'].tolist()}")
        inertia = t["inertia"]
        if inertia.shape[-1:] == (3,) and inertia.shape[-2:] != (3, 3):
            inertia = torch.diag_embed(inertia)
        if inertia.shape[-2:] != (3, 3):
            raise ValueError(f"inertia: expected shape (3, 3) or (3,), got {tuple(t['inertia'].shape)}")
        factor, info = torch.linalg.cholesky_ex(inertia)
        if not torch.allclose(inertia, inertia.transpose(-1, -2)) or (info != 0).any():
            raise ValueError("inertia: expected a symmetric positive-definite matrix")
        raw_factor = factor.tril(-1) + torch.diag_embed(factor.diagonal(dim1=-2, dim2=-1).log())
        mu_raw = torch.log(torch.expm1(t["mu"].clamp(min=1e-9)))
        return cls(t["mass"].log(), raw_factor, mu_raw, t["stiffness"].log(), t["damping"].log())

    @property
    def mass(self) -> torch.Tensor:
        return self.log_mass.exp()

    @property
    def inertia(self) -> torch.Tensor:
        raw = self.inertia_factor
        factor = raw.tril(-1) + torch.diag_embed(raw.diagonal(dim1=-2, dim2=-1).exp())
        return factor @ factor.transpose(-1, -2)

    @property
    def mu(self) -> torch.Tensor:
        return torch.nn.functional.softplus(self.mu_raw)

    @property
    def stiffness(self) -> torch.Tensor:
        return self.log_stiffness.exp()

    @property
    def damping(self) -> torch.Tensor:
        return self.log_damping.exp()

    def tensors(self) -> list[torch.Tensor]:
        return [getattr(self, f.name) for f in fields(self)]


def solid_box_inertia(mass: float, size) -> torch.Tensor:
    """Inertia (3,) of a uniform solid box of sides `size` (3,) m about its centre, kg m^2."""
    x, y, z = (float(s) for s in torch.as_tensor(size, dtype=torch.float64).expand(3))
    return torch.tensor([y * y + z * z, x * x + z * z, x * x + y * y]) * (mass / 12.0)


class State(NamedTuple):
    """Batched state; every field has a leading batch dimension B (and a time dimension after it
    in a rollout). position (B, 3) m and quat (B, 4) (w, x, y, z) of the object's centre of mass
    in the world; velocity (B, 3) m/s and omega (B, 3) rad/s, both in the world frame; pusher
    (B, 3) m, the position of the kinematic pusher's frame; hand (B, 16) and hand_target (B, 16),
    the LEAP Hand's joint angles and their position targets, rad ((B, 0) in scenes without a hand)."""

    position: torch.Tensor
    quat: torch.Tensor
    velocity: torch.Tensor
    omega: torch.Tensor
    pusher: torch.Tensor
    hand: torch.Tensor
    hand_target: torch.Tensor

    @classmethod
    def make(cls, position, quat=None, velocity=None, omega=None, pusher=None, hand=None,
             hand_target=None) -> "State":
        """A state from position (B, 3) (a tensor keeps its dtype); the other fields default to
        rest, the identity, a pusher parked far away (10 m above), no hand, and a hand at its target."""
        dtype = position.dtype if isinstance(position, torch.Tensor) else torch.get_default_dtype()
        position = torch.as_tensor(position, dtype=dtype)
        if position.ndim == 1:
            position = position[None]
        batch = position.shape[0]

        def batched(value, default):
            value = torch.as_tensor(default if value is None else value, dtype=dtype)
            return value.expand(batch, *value.shape[-1:]).clone() if value.ndim <= 1 else value

        hand = batched(hand, [])
        return cls(position, batched(quat, [1.0, 0, 0, 0]), batched(velocity, [0.0, 0, 0]),
                   batched(omega, [0.0, 0, 0]), batched(pusher, [0.0, 0, 10.0]), hand,
                   hand.clone() if hand_target is None else batched(hand_target, None))


_STATE_WIDTHS = {"position": (3,), "quat": (4,), "velocity": (3,), "omega": (3,), "pusher": (3,),
                 "hand": (0, N_JOINTS), "hand_target": (0, N_JOINTS)}


def is_finite(state: State) -> bool:
    """Whether every field of `state` is finite (a diverged rollout is not)."""
    return bool(torch.isfinite(torch.cat(state, dim=1)).all())


def check_state(state: State, name: str = "state") -> None:
    """Raise ValueError naming the field if `state` is not a batch of finite, unit-quaternion states."""
    if not isinstance(state, State):
        raise ValueError(f"{name}: expected a cgwm_env.physics.model.State, got {type(state).__name__}")
    batch = state.position.shape[0] if state.position.ndim == 2 else None
    for field_name, widths in _STATE_WIDTHS.items():
        value = getattr(state, field_name)
        if value.ndim != 2 or value.shape[0] != batch or value.shape[1] not in widths:
            want = " or ".join(f"(B, {w})" for w in widths)
            raise ValueError(f"{name}.{field_name}: expected shape {want} with the same B as position, "
                             f"got {tuple(value.shape)}")
    if state.hand_target.shape != state.hand.shape:
        raise ValueError(f"{name}.hand_target: expected the shape of hand {tuple(state.hand.shape)}, "
                         f"got {tuple(state.hand_target.shape)}")
    if not is_finite(state):
        bad = next(f for f in _STATE_WIDTHS if not torch.isfinite(getattr(state, f)).all())
        raise ValueError(f"{name}.{bad}: expected finite values, got NaN or inf")
    if ((state.quat.norm(dim=-1) - 1).abs() > 1e-3).any():
        raise ValueError(f"{name}.quat: expected unit quaternions (w, x, y, z)")


@dataclass(frozen=True)
class Model:
    """Everything that stays fixed along a rollout. Immutable: derive variants with dataclasses.replace.

    gaussians: the object's SphereGaussians (collision spheres r = 2 scale, body frame at the
    centre of mass); params: PhysicalParams; dt: physics step, s; gravity: m/s^2;
    ground_height: z of the ground plane (normal +z), or None for no ground; pusher_points (P, 3) and
    pusher_radii (P,): the pusher's query spheres in its own frame, m (P = 0: no pusher);
    hand: the LEAP Hand (hand.HandModel; the world frame is the hand's frame), or None. A model
    has a pusher or a hand, not both; the action of a step is the pusher's velocity (B, 3) or the
    change of the hand's joint targets (B, 16).
    ground_contacts: "hull" takes as ground contacts only the spheres that are outermost in some
    direction (collision.support_spheres; exact for a plane, and 8 instead of 488 for the shell
    cube), "all" every sphere.
    """

    gaussians: SphereGaussians
    params: PhysicalParams
    dt: float = 1.0 / 500.0
    gravity: tuple[float, float, float] = (0.0, 0.0, -9.81)
    ground_height: float | None = 0.0
    ground_contacts: str = "hull"
    pusher_points: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 3))
    pusher_radii: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    hand: HandModel | None = None
    sdf: SoftSDFSettings = field(default_factory=SoftSDFSettings)
    contact: ContactSettings = field(default_factory=ContactSettings)

    def __post_init__(self):
        if len(self.gaussians) == 0:
            raise ValueError("gaussians: expected at least one sphere to collide with, got an empty set")
        if not (self.dt > 0 and math.isfinite(self.dt)):
            raise ValueError(f"dt: expected a positive time step in seconds, got {self.dt}")
        if self.ground_contacts not in ("hull", "all"):
            raise ValueError(f"ground_contacts: expected 'hull' or 'all', got {self.ground_contacts!r}")
        if self.pusher_points.ndim != 2 or self.pusher_points.shape[1] != 3:
            raise ValueError(f"pusher_points: expected shape (P, 3), got {tuple(self.pusher_points.shape)}")
        if self.pusher_radii.shape != self.pusher_points.shape[:1]:
            raise ValueError(f"pusher_radii: expected shape ({self.pusher_points.shape[0]},), "
                             f"got {tuple(self.pusher_radii.shape)}")
        if (self.params.mass <= 0).any() or not torch.isfinite(self.params.mass).all():
            raise ValueError("params.mass: expected a positive finite mass")
        if self.hand is not None and self.pusher_points.shape[0] > 0:
            raise ValueError("hand: expected a model with a pusher or a hand, not both")

    def to(self, device=None, dtype=None) -> "Model":
        """The same model with its tensors on `device` and/or cast to the float `dtype` (a batch on
        CUDA: `model.to("cuda")` and a State on the same device)."""
        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device=device, dtype=dtype if t.is_floating_point() else None)

        return replace(
            self, gaussians=self.gaussians.to(device=device, dtype=dtype),
            params=PhysicalParams(*(move(t) for t in self.params.tensors())), pusher_points=move(self.pusher_points),
            pusher_radii=move(self.pusher_radii), hand=None if self.hand is None else self.hand.to(dtype, device))

    @property
    def action_size(self) -> int:
        """Width of a step's action: 16 joint-target changes with a hand, else a pusher velocity (3)."""
        return N_JOINTS if self.hand is not None else 3


    def ground_candidates(self) -> torch.Tensor | None:
        """Indices (K,) of the spheres that may touch the ground, or None for all of them."""
        if self.ground_contacts == "all":
            return None
        return self._of_geometry("support", lambda g: support_spheres(g.centers, g.radii))

    def sphere_grid(self) -> SphereGrid:
        """The spheres' neighbour grid for fast soft distances (collision.sphere_grid)."""
        return self._of_geometry(("grid", self.sdf), lambda g: sphere_grid(g.centers, g.radii, self.sdf))

    def solid_grid(self) -> SolidGrid:
        """The solid's signed-distance grid for the pusher's contacts (collision.solid_grid)."""
        return self._of_geometry("solid", solid_grid)

    def _of_geometry(self, kind, build):
        """build(gaussians) once per kind and sphere tensors, shared by every model of the same tensors
        (dataclasses.replace keeps them) and built again whenever they change, in place included."""
        g = self.gaussians
        key = (kind, id(g.centers), g.centers._version, id(g.log_scales), g.log_scales._version)
        hit = _OF_GEOMETRY.get(key)
        if hit is None or hit[0]() is not g.centers or hit[1]() is not g.log_scales:
            while len(_OF_GEOMETRY) >= 16:
                _OF_GEOMETRY.pop(next(iter(_OF_GEOMETRY)))
            hit = _OF_GEOMETRY[key] = (weakref.ref(g.centers), weakref.ref(g.log_scales), build(g))
        return hit[2]


# What Model._of_geometry built, by kind and sphere tensors (identity checked through weak references).
_OF_GEOMETRY: dict = {}


def box_model(size=0.05, mass: float = 0.1, mu: float = 0.5, per_edge: int = 10, stiffness: float = STIFFNESS,
              damping: float = DAMPING, dtype=None, edge_radius: float = 0.0, **model_kwargs) -> Model:
    """A uniform solid box (sides `size` m, `mass` kg) as a hollow shell of spheres, per_edge along
    its longest side (and spheres of edge_radius m along its edges: box_gaussians), with
    contact gains `stiffness` and `damping` (contact.py: 1/s^2 and 1/s in effective-mass mode, N/m and N s/m
    in plain mode); other Model fields by keyword."""
    params = PhysicalParams.from_values(mass, solid_box_inertia(mass, size), mu, stiffness, damping, dtype=dtype)
    gaussians = box_gaussians(size, per_edge, edge_radius=edge_radius).to(params.log_mass.dtype)
    return Model(gaussians, params, **model_kwargs)


_SETTINGS_KEYS = {"dt", "gravity", "ground_height", "ground_contacts", "sdf", "contact"}


def load_model_settings(path: str | Path) -> dict:
    """Keyword arguments for Model (or box_model) from a YAML file; a ValueError names any
    unknown or malformed key (configs/physics.yaml shows every key)."""
    data = read_yaml_mapping(path)
    unknown = set(data) - _SETTINGS_KEYS
    if unknown:
        raise ValueError(f"{sorted(unknown)[0]}: unknown setting in {path}; expected some of {sorted(_SETTINGS_KEYS)}")
    settings = {k: v for k, v in data.items() if k not in ("sdf", "contact")}
    if "gravity" in settings:
        settings["gravity"] = tuple(float(g) for g in settings["gravity"])
    for key, cls in (("sdf", SoftSDFSettings), ("contact", ContactSettings)):
        if key in data:
            settings[key] = settings_from_mapping(cls, data[key] or {}, key, str(path))
    return settings
