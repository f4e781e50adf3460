"""Batched rigid-body math in torch. Quaternions are (w, x, y, z), unit length, shape (..., 4)."""

from __future__ import annotations

import torch


def quat_normalize(q: torch.Tensor) -> torch.Tensor:
    """Unit quaternion with the same direction, (..., 4)."""
    return q / q.norm(dim=-1, keepdim=True)


def quat_mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product a * b, (..., 4)."""
    outer = (a[..., :, None] * b[..., None, :]).flatten(-2)
    return outer @ _HAMILTON.to(outer)


def quat_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Rotation matrix of a unit quaternion, (..., 4) -> (..., 3, 3)."""
    outer = (q[..., :, None] * q[..., None, :]).flatten(-2)
    return (outer @ _ROTATION.to(outer)).unflatten(-1, (3, 3))


def quat_from_axis_angle(axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Unit quaternion rotating by `angle` (rad, (...)) about `axis` ((..., 3), any length > 0)."""
    axis = axis / axis.norm(dim=-1, keepdim=True)
    half = 0.5 * angle
    return torch.cat((torch.cos(half)[..., None], torch.sin(half)[..., None] * axis), dim=-1)


def quat_exp(rotvec: torch.Tensor) -> torch.Tensor:
    """Unit quaternion of a rotation vector (axis * angle, rad), (..., 3) -> (..., 4).

    Smooth at zero: uses sin(t/2)/t = 0.5 sinc(t/(2 pi)) so gradients stay finite.
    """
    angle = torch.sqrt((rotvec * rotvec).sum(-1) + 1e-30)
    half_sinc = 0.5 * torch.sinc(angle / (2 * torch.pi))
    return torch.cat((torch.cos(0.5 * angle)[..., None], half_sinc[..., None] * rotvec), dim=-1)


def quat_log(q: torch.Tensor) -> torch.Tensor:
    """Rotation vector (axis * angle, rad, the shorter way round) of unit quaternions, (..., 4) -> (..., 3)."""
    q = torch.where(q[..., :1] < 0, -q, q)
    norm = q[..., 1:].norm(dim=-1, keepdim=True)
    rotvec = 2.0 * torch.atan2(norm, q[..., :1]) * q[..., 1:] / norm.clamp(min=1e-12)
    return torch.where(norm < 1e-12, torch.zeros_like(rotvec), rotvec)


def quat_conj(q: torch.Tensor) -> torch.Tensor:
    """The conjugate (the inverse of a unit quaternion), (..., 4)."""
    return q * q.new_tensor([1.0, -1.0, -1.0, -1.0])


def quat_integrate(q: torch.Tensor, omega: torch.Tensor, dt: float) -> torch.Tensor:
    """Orientation after turning at world-frame angular velocity `omega` (rad/s, (..., 3)) for `dt` s."""
    return quat_normalize(quat_mul(quat_exp(omega * dt), q))


def quat_angle(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Angle between two orientations, 2 acos(|<a, b>|), in rad, (...)."""
    dot = (a * b).sum(-1).abs().clamp(max=1.0)
    return 2 * torch.acos(dot)


def rotate(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Rotate vectors v (..., 3) by unit quaternions q (..., 4)."""
    return (quat_to_matrix(q) @ v[..., None])[..., 0]


def matvec(m: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """m @ v for matrices (..., 3, 3) and vectors (..., 3)."""
    return (m * v[..., None, :]).sum(-1)


def inverse3(m: torch.Tensor) -> torch.Tensor:
    """Inverse of 3x3 matrices (..., 3, 3) by the adjugate (much faster than linalg.inv on small batches)."""
    c0, c1, c2 = m[..., :, 0], m[..., :, 1], m[..., :, 2]
    rows = torch.stack((torch.linalg.cross(c1, c2), torch.linalg.cross(c2, c0), torch.linalg.cross(c0, c1)), dim=-2)
    det = (c0 * rows[..., 0, :]).sum(-1)
    return rows / det[..., None, None]


def skew(v: torch.Tensor) -> torch.Tensor:
    """Cross-product matrices [v]x with [v]x u = v x u, (..., 3) -> (..., 3, 3)."""
    return (v @ _SKEW.to(v)).unflatten(-1, (3, 3))


def axial(m: torch.Tensor) -> torch.Tensor:
    """The vector sum_ab eps_kab m_ab of matrices (..., 3, 3): for m = sum_c r_c f_c^T it is sum_c r_c x f_c."""
    return -(m.flatten(-2) @ _SKEW.to(m).T)


def fibonacci_sphere(n: int, phase: float = 0.0) -> torch.Tensor:
    """n unit vectors (n, 3), float64, spread evenly over the sphere: a Fibonacci lattice turned
    by `phase` rad about z."""
    k = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1.0 - 2.0 * k / n
    azimuth = torch.pi * (3.0 - 5.0**0.5) * k + phase
    ring = torch.sqrt(1.0 - z * z)
    return torch.stack((ring * torch.cos(azimuth), ring * torch.sin(azimuth), z), dim=1)


def _structure_constants():
    """Constant tensors that turn the quaternion product and the rotation matrix into one matmul
    of the outer product a_i b_j: (a * b)_k = sum_ij a_i b_j H[ij, k], R[mn] = sum_ij q_i q_j Q[ij, mn]."""
    hamilton = torch.zeros(4, 4, 4)
    for i, j, k, sign in [(0, 0, 0, 1), (1, 1, 0, -1), (2, 2, 0, -1), (3, 3, 0, -1),
                          (0, 1, 1, 1), (1, 0, 1, 1), (2, 3, 1, 1), (3, 2, 1, -1),
                          (0, 2, 2, 1), (1, 3, 2, -1), (2, 0, 2, 1), (3, 1, 2, 1),
                          (0, 3, 3, 1), (1, 2, 3, 1), (2, 1, 3, -1), (3, 0, 3, 1)]:
        hamilton[i, j, k] = sign
    rotation = torch.zeros(4, 4, 3, 3)
    w, x, y, z = range(4)
    for (m, n), terms in {
        (0, 0): [(w, w, 1), (x, x, 1), (y, y, -1), (z, z, -1)],
        (1, 1): [(w, w, 1), (x, x, -1), (y, y, 1), (z, z, -1)],
        (2, 2): [(w, w, 1), (x, x, -1), (y, y, -1), (z, z, 1)],
        (0, 1): [(x, y, 2), (w, z, -2)], (1, 0): [(x, y, 2), (w, z, 2)],
        (0, 2): [(x, z, 2), (w, y, 2)], (2, 0): [(x, z, 2), (w, y, -2)],
        (1, 2): [(y, z, 2), (w, x, -2)], (2, 1): [(y, z, 2), (w, x, 2)],
    }.items():
        for i, j, c in terms:
            rotation[i, j, m, n] = c
    levi_civita = torch.zeros(3, 3, 3)  # [e_k]x[a, b] = -eps_kab, stored as SKEW[k, 3 a + b]
    for k, a, b in [(0, 1, 2), (1, 2, 0), (2, 0, 1)]:
        levi_civita[k, a, b], levi_civita[k, b, a] = -1.0, 1.0
    return hamilton.reshape(16, 4), rotation.reshape(16, 9), levi_civita.reshape(3, 9)


_HAMILTON, _ROTATION, _SKEW = _structure_constants()
