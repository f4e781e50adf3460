"""Complementarity-free contact model (paper section III-D-2, appendix C; Jin 2024).

Each contact c has a frame (n, t1, t2) oriented for the object (moving the object along n opens
the gap) and contributes n_d rows on the faces of the dual friction cone, J~_cj = J_n - mu J_dj
with d_j = cos(a_j) t1 + sin(a_j) t2, a_j = 2 pi j / n_d, and its gap phi repeated n_d times.
With b = v + h M^-1 tau (the contact-free velocity),

    lambda = softplus(-K (h J~ b + phi~) - D J~ b),    v+ = b + h M^-1 J~^T lambda.

Gain modes:
- "plain": K (N/m) and D (N s/m) are the same for every row, as the paper writes them.
- "effective_mass" (default): K_r = kappa / (h^2 S_r), D_r = delta / (h S_r) with dimensionless
  kappa, delta and S_r the row's inverse effective mass including its coupling to the other
  pushing rows: S_r = A_rr + relu(sum_{s != r} A_rs a_s), A = J~ M^-1 J~^T, a_s in (0, 1) the
  smooth indicator that row s pushes; all n_d rows of a contact take the largest S_r among them
  (one gain per contact). One setting then serves a resting face and a lone corner; linearized, a
  row is stable for 0 < kappa + delta < 2 and rests without penetration at kappa + delta = 1
  (docs/design.md: why one gain per contact, and the rebounds measured).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

GAIN_MODES = ("effective_mass", "plain")


@dataclass(frozen=True)
class ContactSettings:
    """n_dirs: tangent directions per contact (>= 4); gain_mode: see module doc;
    softplus_sharpness: SoftPlus beta in 1/N (per-row loads are millinewtons, so it must be
    large or it lifts the resting height); activity_width: m, how sharply a row counts as
    pushing when it scales the others' gains (effective_mass mode only)."""

    n_dirs: int = 4
    gain_mode: str = "effective_mass"
    softplus_sharpness: float = 1e4
    activity_width: float = 1e-5

    def __post_init__(self):
        if self.n_dirs < 4:
            raise ValueError(f"n_dirs: expected at least 4 tangent directions, got {self.n_dirs}")
        if self.gain_mode not in GAIN_MODES:
            raise ValueError(f"gain_mode: expected one of {GAIN_MODES}, got {self.gain_mode!r}")
        for name in ("softplus_sharpness", "activity_width"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: expected a positive number, got {getattr(self, name)}")


def cone_edges(mu: torch.Tensor, n_dirs: int) -> torch.Tensor:
    """Dual-cone rows in contact-frame coordinates: column j is (1, -mu cos a_j, -mu sin a_j).

    mu: (B,) -> (B, 3, n_dirs). A row's velocity is (frame velocity) @ edges, and a row force
    lambda_j acts along the frame vector edges[:, :, j].
    """
    angles = torch.arange(n_dirs, dtype=mu.dtype, device=mu.device) * (2 * torch.pi / n_dirs)
    tangential = torch.stack((torch.cos(angles), torch.sin(angles)))  # (2, n_dirs)
    ones = torch.ones_like(angles).expand(mu.shape[0], 1, n_dirs)
    return torch.cat((ones, -mu[:, None, None] * tangential), dim=1)


def contact_forces(
    row_vel: torch.Tensor,
    phi: torch.Tensor,
    row_inv_mass: Callable[[], torch.Tensor],
    coupling: Callable[[torch.Tensor], torch.Tensor],
    stiffness: torch.Tensor,
    damping: torch.Tensor,
    dt: float,
    settings: ContactSettings,
) -> torch.Tensor:
    """Closed-form dual-cone forces lambda (B, n_d, C) in N, for C contacts of n_d rows each.

    row_vel (B, n_d, C): J~ b (relative to any kinematic body), m/s; phi (B, C): gaps, m;
    row_inv_mass() -> (B, n_d, C): the diagonal of A = J~ M^-1 J~^T, 1/kg; coupling(a) = A a for
    row weights a (B, n_d, C) (both called in "effective_mass" mode only); stiffness, damping (B,): K and D in "plain" mode, kappa and delta
    in "effective_mass" mode.
    """
    k, d = stiffness[:, None, None], damping[:, None, None]
    phi = phi[:, None, :]
    if settings.gain_mode == "plain":
        arg = -k * (dt * row_vel + phi) - d * row_vel
    else:
        push = -(k * (dt * row_vel + phi) + d * dt * row_vel)  # m; > 0 where the row pushes
        active = torch.sigmoid(push / settings.activity_width)
        diagonal = row_inv_mass()
        inv_eff_mass = diagonal + F.relu(coupling(active) - diagonal * active)
        # One gain for all rows of a contact (their largest S): rows with their own gains pull
        # unequally at rest, and an object on an uneven support of sub-mm bumps crept cm/s.
        arg = push / (dt * dt * inv_eff_mass.amax(dim=1, keepdim=True))
    return F.softplus(arg, beta=settings.softplus_sharpness)
