"""step(model, state, action) and rollout: a free rigid object of spheres, the ground plane and a
kinematic pusher, under the complementarity-free contact model. Pure torch functions: batched over
a leading dimension and differentiable in the state, the physical parameters and the spheres.

One step of length h (semi-implicit, paper section III-D-2):
    b  = v + h M^-1 (f_gravity, -omega x I omega)
    v+ = b + h M^-1 J~^T lambda(b)          (contact.py)
    x+ = x + h v+,  q+ = exp(h omega+) q,  pusher+ = pusher + h action

Inside a step, per-contact vectors use a component-first layout, (B, 3, C), and rows (B, n_d, C):
elementwise work then runs over long contiguous runs of contacts, which is several times faster on
the CPU than (B, C, 3).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from cgwm_env import math3d
from cgwm_env.collision import contact_frames, plane_sdf, soft_sdf, surface_points
from cgwm_env.contact import cone_edges, contact_forces
from cgwm_env.model import Model, State, check_state


class Prepared(NamedTuple):
    """What a rollout needs of the model that does not change from step to step, batched (B, ...)."""

    inv_mass: torch.Tensor  # (B,) 1/kg
    inertia: torch.Tensor  # (B, 3, 3) body frame, kg m^2
    inv_inertia: torch.Tensor  # (B, 3, 3)
    mu: torch.Tensor  # (B,)
    stiffness: torch.Tensor  # (B,)
    damping: torch.Tensor  # (B,)
    gravity: torch.Tensor  # (3,) m/s^2
    ground_edges: torch.Tensor  # (B, 3, n_d, 1): the dual-cone rows' directions on the ground
    ground_index: torch.Tensor | None  # (K,) the spheres that may touch the ground, None: all


def prepare(model: Model, batch: int) -> Prepared:
    """Map the model's parameters to physical values once for a batch of `batch` environments."""
    p = model.params
    inertia = p.inertia.expand(batch, 3, 3)
    mu = p.mu.expand(batch)
    ground_frame = _GROUND_FRAME.to(inertia).expand(batch, 3, 3)[..., None]
    return Prepared(1.0 / p.mass.expand(batch), inertia, math3d.inverse3(inertia), mu,
                    p.stiffness.expand(batch), p.damping.expand(batch), inertia.new_tensor(model.gravity),
                    _edges(ground_frame, mu, model.contact.n_dirs), model.ground_candidates())


def step(model: Model, state: State, action: torch.Tensor | None = None) -> State:
    """Advance one step of model.dt. action: pusher velocity (B, 3) m/s, or None for a still pusher."""
    check_state(state)
    action = _check_action(action, state)
    return step_prepared(model, prepare(model, state.position.shape[0]), state, action)


def rollout(model: Model, state: State, actions: torch.Tensor | None = None, steps: int | None = None) -> State:
    """Run `steps` steps (or one per action in actions (B, T, 3)); returns the States stacked on a
    time axis after the batch axis, (B, T + 1, ...), the initial state first."""
    check_state(state)
    batch = state.position.shape[0]
    if actions is None:
        if steps is None or steps < 0:
            raise ValueError(f"steps: expected a count >= 0 when no actions are given, got {steps}")
        actions = state.position.new_zeros(batch, steps, 3)
    elif actions.ndim != 3 or actions.shape[0] != batch or actions.shape[2] != 3:
        raise ValueError(f"actions: expected shape (B, T, 3) with B = {batch}, got {tuple(actions.shape)}")
    elif not torch.isfinite(actions).all():
        raise ValueError("actions: expected finite pusher velocities, got NaN or inf")
    prepared = prepare(model, batch)
    states = [state]
    for t in range(actions.shape[1]):
        state = step_prepared(model, prepared, state, actions[:, t])
        states.append(state)
    return State(*(torch.stack(parts, dim=1) for parts in zip(*states)))


def step_prepared(model: Model, prepared: Prepared, state: State, action: torch.Tensor) -> State:
    """One step with the model's constants already prepared and no input checks: the inner loop
    of rollout, planners and learners. action: pusher velocity (B, 3), m/s."""
    dt, c = model.dt, prepared
    rot = math3d.quat_to_matrix(state.quat)
    inertia_world = rot @ c.inertia @ rot.transpose(-1, -2)
    inv_inertia_world = rot @ c.inv_inertia @ rot.transpose(-1, -2)

    # Contact-free velocity b: gravity and the gyroscopic torque -omega x (I omega).
    gyro = torch.linalg.cross(math3d.matvec(inertia_world, state.omega), state.omega)
    b_vel = state.velocity + dt * c.gravity
    b_omega = state.omega + dt * math3d.matvec(inv_inertia_world, gyro)

    kinds = []
    if model.ground_height is not None:
        kinds.append(ground_rows(model, c, state, rot))
    if model.pusher_points.shape[0] > 0:
        kinds.append(pusher_rows(model, c, state, rot, action))
    velocity, omega = b_vel, b_omega
    if kinds:
        sizes = [k.phi.shape[1] for k in kinds]

        def joined(parts, dim):
            return parts[0] if len(parts) == 1 else torch.cat(parts, dim=dim)

        def rows(lin, ang):
            return joined([k.row_velocity(lin, ang) for k in kinds], 2)

        def wrench(lam):
            parts = [k.wrench(part) for k, part in zip(kinds, lam.split(sizes, dim=2))]
            return sum(p[0] for p in parts), sum(p[1] for p in parts)

        def coupling(weights):  # J~ M^-1 J~^T weights
            force, torque = wrench(weights)
            return rows(force * c.inv_mass[:, None], math3d.matvec(inv_inertia_world, torque))

        lam = contact_forces(
            joined([k.row_velocity(b_vel - k.other_velocity, b_omega) for k in kinds], 2),
            joined([k.phi for k in kinds], 1),
            joined([k.row_inv_mass(c.inv_mass, inv_inertia_world) for k in kinds], 2),
            coupling, c.stiffness, c.damping, dt, model.contact)
        force, torque = wrench(lam)
        velocity = b_vel + dt * force * c.inv_mass[:, None]
        omega = b_omega + dt * math3d.matvec(inv_inertia_world, torque)

    return State(
        position=state.position + dt * velocity,
        quat=math3d.quat_integrate(state.quat, omega, dt),
        velocity=velocity,
        omega=omega,
        pusher=state.pusher + dt * action,
    )


class ContactRows(NamedTuple):
    """C contacts of one kind in component-first layout, with their dual-cone rows.

    phi (B, C): gaps, m; levers (B, 3, C): contact point minus the object's centre of mass, world
    frame, m; edges (B, 3, n_d, C), or (B, 3, n_d, 1) when all C contacts share them: the rows'
    directions e_j = n - mu (cos a_j t1 + sin a_j t2), n pointing the way the object's motion opens
    the gap; other_velocity (B, 3): velocity of the other (kinematic) body, m/s.
    """

    phi: torch.Tensor
    levers: torch.Tensor
    edges: torch.Tensor
    other_velocity: torch.Tensor

    def row_velocity(self, lin: torch.Tensor, ang: torch.Tensor) -> torch.Tensor:
        """J~ (lin, ang) for a twist (B, 3), (B, 3): the rows' velocities e_j . (lin + ang x r), (B, n_d, C)."""
        if self.edges.shape[-1] == 1:
            edges_t = self.edges[..., 0].transpose(1, 2)
            return edges_t @ lin[..., None] + (edges_t @ math3d.skew(ang)) @ self.levers
        point_vel = lin[..., None] + _cross(ang[..., None].expand_as(self.levers), self.levers)
        return (self.edges * point_vel[:, :, None]).sum(1)

    def wrench(self, lam: torch.Tensor):
        """Force and torque about the centre of mass, (B, 3) each, of row forces lam (B, n_d, C): J~^T lam."""
        if self.edges.shape[-1] == 1:
            edges = self.edges[..., 0]
            force = (edges @ lam.sum(-1)[..., None])[..., 0]
            moments = (self.levers @ lam.transpose(1, 2)) @ edges.transpose(1, 2)  # sum_c r_c f_c^T
        else:
            forces = (self.edges * lam[:, None]).sum(2)
            force, moments = forces.sum(-1), self.levers @ forces.transpose(1, 2)
        return force, math3d.axial(moments)

    def row_inv_mass(self, inv_mass: torch.Tensor, inv_inertia: torch.Tensor) -> torch.Tensor:
        """diag(J~ M^-1 J~^T) = |e|^2 / m + (r x e)^T I^-1 (r x e), (B, n_d, C)."""
        if self.edges.shape[-1] == 1:
            # (r x e)^T W (r x e) = r^T Q r with Q = [e]x^T W [e]x, one 3x3 per row direction.
            edges = self.edges[..., 0]
            skews = math3d.skew(edges.transpose(1, 2))  # (B, n_d, 3, 3)
            quadratic = skews.transpose(-1, -2) @ inv_inertia[:, None] @ skews
            outer = (self.levers[:, :, None] * self.levers[:, None, :]).flatten(1, 2)  # (B, 9, C)
            return ((edges * edges).sum(1) * inv_mass[:, None])[..., None] + quadratic.flatten(2) @ outer
        arms = _cross(self.levers[:, :, None].expand(-1, -1, self.edges.shape[2], -1), self.edges)
        turned = (inv_inertia @ arms.flatten(2)).view_as(arms)
        return (self.edges * self.edges).sum(1) * inv_mass[:, None, None] + (arms * turned).sum(1)


def ground_rows(model: Model, prepared: Prepared, state: State, rot: torch.Tensor) -> ContactRows:
    """The object's spheres (those in prepared.ground_index) against the plane z = ground_height."""
    g = model.gaussians
    centers, radii = g.centers, g.radii
    if prepared.ground_index is not None:
        centers, radii = centers[prepared.ground_index], radii[prepared.ground_index]
    levers = rot @ centers.T  # (B, 3, K) centres relative to the centre of mass, world frame
    heights = state.position[:, 2:] + levers[:, 2]
    phi = plane_sdf(heights[..., None], heights.new_ones(1), model.ground_height) - radii
    levers = torch.cat((levers[:, :2], levers[:, 2:] - radii), dim=1)  # down to the sphere's bottom
    return ContactRows(phi, levers, prepared.ground_edges, torch.zeros_like(state.velocity))


def pusher_rows(model: Model, prepared: Prepared, state: State, rot: torch.Tensor, pusher_velocity) -> ContactRows:
    """The pusher's query spheres against the object's soft signed distance."""
    query = state.pusher[:, None, :] + model.pusher_points  # (B, P, 3) world
    local = (query - state.position[:, None, :]) @ rot  # R^T (q - x), row-vector form
    g = model.gaussians
    dist, normals_local = soft_sdf(local, g.centers, g.radii, model.sdf)
    normals = normals_local @ rot.transpose(-1, -2)  # out of the object, towards the pusher
    levers = surface_points(query, dist, normals) - state.position[:, None, :]
    frames = contact_frames(-normals).permute(0, 2, 3, 1)  # (B, 3, 3, P); the object moves away along -n
    return ContactRows(dist - model.pusher_radii, levers.transpose(1, 2),
                       _edges(frames, prepared.mu, model.contact.n_dirs), pusher_velocity)


def _cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cross product along dim 1 (component-first layout), broadcasting the other dims."""
    a0, a1, a2 = a.unbind(1)
    b0, b1, b2 = b.unbind(1)
    return torch.stack((a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0), dim=1)


def _edges(frames: torch.Tensor, mu: torch.Tensor, n_dirs: int) -> torch.Tensor:
    """World directions of the dual-cone rows for frames (B, 3 (n, t1, t2), 3 (xyz), C): (B, 3, n_d, C)."""
    return torch.einsum("bkn,bkxc->bxnc", cone_edges(mu, n_dirs), frames)


# Rows (n, t1, t2) of the ground's contact frame: moving the object up opens the gap.
_GROUND_FRAME = torch.eye(3)[[2, 0, 1]]


def _check_action(action, state: State) -> torch.Tensor:
    batch = state.position.shape[0]
    if action is None:
        return state.position.new_zeros(batch, 3)
    if not isinstance(action, torch.Tensor) or action.shape != (batch, 3):
        raise ValueError(f"action: expected a pusher velocity tensor of shape ({batch}, 3), "
                         f"got {getattr(action, 'shape', type(action).__name__)}")
    if not torch.isfinite(action).all():
        raise ValueError("action: expected finite pusher velocities, got NaN or inf")
    return action
