"""Complementarity-free contact model (paper section III-D-2, appendix C; Jin 2024): contact forces
in closed form from each contact's gap and velocities, with a few bounded sweeps for coupled contacts
(no complementarity problem is solved).

Each contact c has a frame (n, t1, t2) oriented for the object (moving the object along n opens the
gap). The friction cone is the dual cone's polygon of n_d edges n - mu d_j, d_j = cos(a_j) t1 +
sin(a_j) t2, a_j = 2 pi j / n_d (n_d = 4 is MuJoCo's pyramid). Let u = J v be a contact's velocities
at the step's start and a = J h M^-1 tau what the non-contact forces add to them over the step h.

Gain modes:
- "plain", the paper's rows: each edge e_j is a row with lambda_j = softplus(-K (h e_j . b + phi) -
  D e_j . b), b = u + a, K in N/m and D in N s/m the same for every row.
- "effective_mass" (default): one normal and a friction force per contact.
  normal: lambda_n = softplus(-(stiffness phi + damping u_n + a_n / h) / S_n), S_n the normal row's
    inverse effective mass including its coupling to the other pushing contacts. The normal
    acceleration is the reference -stiffness phi - damping u_n of a spring-damper per unit mass
    (MuJoCo's solref in acceleration form), stiffness in 1/s^2 and damping in 1/s, whatever the
    object's mass and the time step, and the applied forces' share a_n is cancelled in full: a
    soft contact gives way on impact and under a pusher but does not sink under the object's
    weight. Stable for damping h < 2 and stiffness h^2 < 4 - 2 damping h.
  friction: the force that stops the contact's slip within the step (the normal forces' share of
    the slip included), projected onto the cone's polygon of radius mu lambda_n: a contact that
    can stick sticks, one that slides gets the friction the cone allows (Coulomb's law). Solving
    the edges row by row instead pushes a sliding contact apart at mu |u_t| and makes slow slides
    viscous (docs/simulator.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

GAIN_MODES = ("effective_mass", "plain")
PUSHER_MODES = ("mocap", "driven")


@dataclass(frozen=True)
class ContactSettings:
    """n_dirs: edges of the friction cone's polygon (>= 4; 4 is MuJoCo's pyramid); gain_mode: see
    module doc; softplus_sharpness: SoftPlus beta in 1/N (per-contact loads are millinewtons, so it
    must be large or it lifts the resting height); activity_width: m, how sharply a contact counts as
    pushing when it scales the others' gains (effective_mass mode only); iterations: the coupled
    contacts' sweeps; max_contacts: ground contacts kept per step (the nearest); pusher: how a
    kinematic pusher meets the object, one of PUSHER_MODES: "mocap" (MuJoCo's mocap bodies, which
    datasets made by MuJoCo push with) the pusher is placed at the step's end before the contacts
    are solved, and its contact's damping and friction see the object's velocity only, so it sinks in by about (damping v +
    mu g) / stiffness while it pushes at speed v; "driven" they see the velocity relative to the
    pusher (a pusher driven stiffly at its speed, e.g. a robot's position-controlled finger)."""

    n_dirs: int = 4
    gain_mode: str = "effective_mass"
    softplus_sharpness: float = 1e4
    activity_width: float = 1e-5
    iterations: int = 4
    max_contacts: int = 64
    pusher: str = "mocap"

    def __post_init__(self):
        for name in ("iterations", "max_contacts"):
            if isinstance(getattr(self, name), bool) or not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name}: expected an int >= 1, got {getattr(self, name)!r}")
        if self.n_dirs < 4:
            raise ValueError(f"n_dirs: expected at least 4 cone edges, got {self.n_dirs}")
        if self.pusher not in PUSHER_MODES:
            raise ValueError(f"pusher: expected one of {PUSHER_MODES}, got {self.pusher!r}")
        if self.gain_mode not in GAIN_MODES:
            raise ValueError(f"gain_mode: expected one of {GAIN_MODES}, got {self.gain_mode!r}")
        for name in ("softplus_sharpness", "activity_width"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: expected a positive number, got {getattr(self, name)}")


def contact_rows(mu: torch.Tensor, settings: ContactSettings) -> torch.Tensor:
    """Each contact's rows in contact-frame coordinates (B, 3, R), column r a row's direction in
    (n, t1, t2): "plain" the dual cone's n_d edges (1, -mu cos a_j, -mu sin a_j) for mu (B,);
    "effective_mass" the frame itself (R = 3: the normal, then t1 and t2)."""
    if settings.gain_mode == "effective_mass":
        return torch.eye(3, dtype=mu.dtype, device=mu.device).expand(mu.shape[0], 3, 3)
    angles = torch.arange(settings.n_dirs, dtype=mu.dtype, device=mu.device) * (2 * torch.pi / settings.n_dirs)
    tangential = torch.stack((torch.cos(angles), torch.sin(angles)))  # (2, n_d)
    ones = torch.ones_like(angles).expand(mu.shape[0], 1, settings.n_dirs)
    return torch.cat((ones, -mu[:, None, None] * tangential), dim=1)


def contact_forces(
    row_vel: torch.Tensor,
    applied_vel: torch.Tensor,
    phi: torch.Tensor,
    inverse_mass: Callable[[], tuple[torch.Tensor, torch.Tensor]],
    stiffness: torch.Tensor,
    damping: torch.Tensor,
    mu: torch.Tensor,
    dt: float,
    settings: ContactSettings,
) -> torch.Tensor:
    """Forces (B, R, C) in N on the R rows (contact_rows) of C contacts.

    row_vel (B, R, C): the rows' velocities J v at the step's start (relative to any kinematic body),
    m/s; applied_vel (B, R, C): what the non-contact forces add to them over the step, J h M^-1 tau,
    m/s; phi (B, C): gaps, m; inverse_mass() -> (G, G W), each (B, R C, N): the rows' directions G in
    the N generalized coordinates and G times M^-1, so that A = J M^-1 J^T = (G W) G^T over the rows
    flattened in (R, C) order, 1/kg (called in "effective_mass" mode only; A is applied through its
    factors, and formed once for the sweeps' step bounds); stiffness, damping (B,): K (N/m) and D (N s/m)
    in "plain" mode, 1/s^2 and 1/s in "effective_mass" mode; mu (B,): friction coefficient (in "plain"
    mode it is in the rows already).
    """
    k, d = stiffness[:, None], damping[:, None]
    if settings.gain_mode == "plain":
        b = row_vel + applied_vel
        return F.softplus(-k[:, None] * (dt * b + phi[:, None]) - d[:, None] * b, beta=settings.softplus_sharpness)
    batch, rows, contacts = row_vel.shape
    u_n = row_vel[:, 0]
    free = row_vel + applied_vel
    # A touching contact's normal velocity is relaxed to u_n - h (stiffness phi + damping u_n) over the
    # step, whatever the forces; an open one gets no force.
    target = u_n - dt * (k * phi + d * u_n)
    touching = torch.sigmoid(-phi / settings.activity_width)
    acting = torch.sigmoid(-(phi + dt * free[:, 0]) / settings.activity_width)  # touching by the step's end
    directions, weighted = inverse_mass()
    across = directions.transpose(1, 2)  # G^T (B, N, R C)
    weighted_by_row = weighted.view(batch, rows, contacts, -1)
    across_by_row = across.view(batch, -1, rows, contacts).unbind(2)  # per row r: (B, N, C)

    def moved(forces: torch.Tensor, row: slice = slice(None)) -> torch.Tensor:
        """A restricted to the rows `row` applied to forces (B, R, C) in N: their velocities (B, r, C) per
        second of the step, m/s^2."""
        return (weighted_by_row[:, row] @ (across @ forces.view(batch, -1, 1))[:, None])[..., 0]

    def block_times(r: int, x: torch.Tensor) -> torch.Tensor:  # A's (r, r) block (B, C, C) times x (B, C)
        return (weighted_by_row[:, r] @ (across_by_row[r] @ x[..., None]))[..., 0]

    diagonal = (weighted * directions).sum(-1).view(batch, rows, contacts)
    own = diagonal[:, 0]
    # First estimate: each contact reaches its target with its effective mass in the mode where all
    # acting contacts move together (exact for a face under a uniform load).
    together = block_times(0, acting)
    normal = touching * F.softplus((target - free[:, 0]) / (dt * (own + F.relu(together - own * acting))),
                                   beta=settings.softplus_sharpness)
    # Sweeps with steps bounded by Gershgorin's sums over the acting rows: each sweep is a contraction,
    # so no mode (a rocking one, where the contacts' couplings have both signs) overshoots. The normal
    # forces settle first; then friction starts from the slip they leave, stopped in the mode where
    # all contacts slide together, and both are swept together.
    size = (weighted @ across).abs()  # |A| (B, R C, R C)
    # |A| times a vector as a product and a sum: several times faster on the CPU than a one-column bmm.
    normal_bound = (size[:, :contacts, :contacts] * acting[:, None, :]).sum(-1) + own * (1.0 - acting)
    for _ in range(settings.iterations):
        after = free[:, 0] + dt * block_times(0, normal)
        normal = touching * F.softplus(normal + (target - after) / (dt * normal_bound), beta=settings.softplus_sharpness)
    forces = torch.cat((normal[:, None], torch.zeros_like(row_vel[:, 1:])), dim=1)
    slip = free[:, 1:] + dt * moved(forces, slice(1, None))
    own_t = diagonal[:, 1:]
    together_t = torch.stack([block_times(r, acting) for r in range(1, rows)], dim=1)
    friction = project_to_cone(-slip / (dt * (own_t + F.relu(together_t - own_t * acting[:, None]))),
                               mu[:, None] * normal, settings.n_dirs)
    weights = acting.repeat(1, rows)
    bound = (size * weights[:, None, :]).sum(-1).view(batch, rows, contacts) + diagonal * (1.0 - acting[:, None])
    for _ in range(settings.iterations):
        forces = torch.cat((normal[:, None], friction), dim=1)
        after = free + dt * moved(forces)
        friction = project_to_cone(friction - after[:, 1:] / (dt * bound[:, 1:]), mu[:, None] * normal, settings.n_dirs)
        forces = torch.cat((normal[:, None], friction), dim=1)
        after = free + dt * moved(forces)
        normal = touching * F.softplus(normal + (target - after[:, 0]) / (dt * bound[:, 0]), beta=settings.softplus_sharpness)
    return torch.cat((normal[:, None], project_to_cone(friction, mu[:, None] * normal, settings.n_dirs)), dim=1)


def project_to_cone(force: torch.Tensor, radius: torch.Tensor, n_edges: int) -> torch.Tensor:
    """The nearest point (B, 2, C) to tangential forces (B, 2, C) (components along t1, t2) in the
    regular polygon with `n_edges` vertices at `radius` (B, C) and angles 2 pi j / n_edges."""
    half = math.pi / n_edges
    with torch.no_grad():
        angle = torch.atan2(force[:, 1], force[:, 0])
        side = (torch.floor(angle / (2 * half)) + 0.5) * (2 * half)  # the angle of the side facing the force
    outward = torch.stack((torch.cos(side), torch.sin(side)), dim=1)
    along = torch.stack((-outward[:, 1], outward[:, 0]), dim=1)
    apothem = radius * math.cos(half)
    reach = radius * math.sin(half)
    offset = torch.minimum(torch.maximum((force * along).sum(1), -reach), reach)
    on_side = apothem[:, None] * outward + offset[:, None] * along
    return torch.where(((force * outward).sum(1) > apothem)[:, None], on_side, force)
