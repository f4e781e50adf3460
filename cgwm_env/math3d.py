"""Batched rigid-body math in torch. Quaternions are (w, x, y, z), unit length, shape (..., 4)."""

from __future__ import annotations

import torch


def quat_normalize(q: torch.Tensor) -> torch.Tensor:
    """Unit quaternion with the same direction, (..., 4)."""
    return q / q.norm(dim=-1, keepdim=True)


def quat_mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product a * b, (..., 4)."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        (
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ),
        dim=-1,
    )


def quat_conj(q: torch.Tensor) -> torch.Tensor:
    """Conjugate (the inverse of a unit quaternion), (..., 4)."""
    return q * q.new_tensor([1.0, -1.0, -1.0, -1.0])


def quat_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Rotation matrix of a unit quaternion, (..., 4) -> (..., 3, 3)."""
    w, x, y, z = q.unbind(-1)
    row0 = torch.stack((1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)), -1)
    row1 = torch.stack((2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)), -1)
    row2 = torch.stack((2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)), -1)
    return torch.stack((row0, row1, row2), dim=-2)


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
