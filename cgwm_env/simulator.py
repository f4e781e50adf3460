"""step(model, state, action) and rollout: a free rigid object of spheres, the ground plane and a
kinematic pusher, under the complementarity-free contact model. Pure torch functions: batched over
a leading dimension and differentiable in the state, the physical parameters and the spheres.

One step of length h (semi-implicit, paper section III-D-2):
    b  = v + h M^-1 (f_gravity, -omega x I omega)
    v+ = b + h M^-1 J~^T lambda(b)          (contact.py)
    x+ = x + h v+,  q+ = exp(h omega+) q,  pusher+ = pusher + h action
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from cgwm_env import math3d
from cgwm_env.collision import contact_frames, plane_sdf, soft_sdf
from cgwm_env.contact import cone_edges, contact_forces
from cgwm_env.model import Model, State, check_state

# Rows (n, t1, t2) of the ground's contact frame: moving the object up opens the gap.
_GROUND_FRAME = torch.eye(3)[[2, 0, 1]]


class Contacts(NamedTuple):
    """Contact candidates, C of them. phi (B, C): gaps, m; frames (B, C, 3, 3): rows (n, t1, t2),
    n the direction in which the object's motion opens the gap; points (B, C, 3): contact points
    on the object's surface, world frame, m; other_velocity (B, C, 3): the velocity of the other
    (kinematic) body at the contact, m/s."""

    phi: torch.Tensor
    frames: torch.Tensor
    points: torch.Tensor
    other_velocity: torch.Tensor


def ground_contacts(model: Model, state: State, rot: torch.Tensor) -> Contacts:
    """The object's spheres against the plane z = ground_height; the k lowest if ground_contacts = k."""
    g = model.gaussians
    heights = state.position[:, 2:] + rot[:, 2, :] @ g.centers.T  # (B, N) world z of the centres
    radii = g.radii.expand(heights.shape)
    phi = plane_sdf(heights[..., None], heights.new_ones(1), model.ground_height) - radii
    centers = g.centers.expand(heights.shape[0], -1, -1)
    k = model.ground_contacts
    if k is not None and k < phi.shape[1]:
        idx = torch.topk(phi.detach(), k, dim=1, largest=False).indices
        phi, radii = phi.gather(1, idx), radii.gather(1, idx)
        centers = centers.gather(1, idx[..., None].expand(-1, -1, 3))
    points = centers @ rot.transpose(-1, -2) + state.position[:, None, :]
    points = points - radii[..., None] * points.new_tensor([0.0, 0.0, 1.0])
    frames = _GROUND_FRAME.to(points).expand(*phi.shape, 3, 3)
    return Contacts(phi, frames, points, torch.zeros_like(points))


def pusher_contacts(model: Model, state: State, rot: torch.Tensor, pusher_velocity: torch.Tensor) -> Contacts:
    """The pusher's query spheres against the object's soft signed distance."""
    query = state.pusher[:, None, :] + model.pusher_points  # (B, P, 3) world
    local = (query - state.position[:, None, :]) @ rot  # R^T (q - x), row-vector form
    g = model.gaussians
    dist, normals_local = soft_sdf(local, g.centers, g.radii, model.sdf)
    normals = normals_local @ rot.transpose(-1, -2)  # out of the object, towards the pusher
    points = query - dist[..., None] * normals
    phi = dist - model.pusher_radii
    return Contacts(phi, contact_frames(-normals), points, pusher_velocity[:, None, :].expand_as(points))


def step(model: Model, state: State, action: torch.Tensor | None = None) -> State:
    """Advance one step of model.dt. action: pusher velocity (B, 3) m/s, or None for a still pusher."""
    check_state(state)
    action = _check_action(action, state)
    return _step(model, state, action)


def rollout(model: Model, state: State, actions: torch.Tensor | None = None, steps: int | None = None) -> State:
    """Run `steps` steps (or one per action in actions (B, T, 3)); returns the States stacked on a
    time axis after the batch axis, (B, T + 1, ...), the initial state first."""
    check_state(state)
    if actions is None:
        if steps is None or steps < 0:
            raise ValueError(f"steps: expected a count >= 0 when no actions are given, got {steps}")
        actions = state.position.new_zeros(state.position.shape[0], steps, 3)
    elif actions.ndim != 3 or actions.shape[0] != state.position.shape[0] or actions.shape[2] != 3:
        raise ValueError(f"actions: expected shape (B, T, 3) with B = {state.position.shape[0]}, "
                         f"got {tuple(actions.shape)}")
    elif not torch.isfinite(actions).all():
        raise ValueError("actions: expected finite pusher velocities, got NaN or inf")
    states = [state]
    for t in range(actions.shape[1]):
        state = _step(model, state, actions[:, t])
        states.append(state)
    return State(*(torch.stack(parts, dim=1) for parts in zip(*states)))


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


def _step(model: Model, state: State, action: torch.Tensor) -> State:
    params, dt = model.params, model.dt
    batch = state.position.shape[0]
    mass = params.mass.expand(batch)[:, None]
    rot = math3d.quat_to_matrix(state.quat)
    inertia_body = params.inertia.expand(batch, 3, 3)
    inertia_world = rot @ inertia_body @ rot.transpose(-1, -2)
    inv_inertia_world = rot @ math3d.inverse3(inertia_body) @ rot.transpose(-1, -2)

    # Contact-free velocity b: gravity and the gyroscopic torque -omega x (I omega).
    gyro = -torch.linalg.cross(state.omega, math3d.matvec(inertia_world, state.omega))
    b_vel = state.velocity + dt * state.velocity.new_tensor(model.gravity)
    b_omega = state.omega + dt * math3d.matvec(inv_inertia_world, gyro)

    kinds = []
    if model.ground_height is not None:
        kinds.append(ground_contacts(model, state, rot))
    if model.pusher_points.shape[0] > 0:
        kinds.append(pusher_contacts(model, state, rot, action))
    velocity, omega = b_vel, b_omega
    if kinds:
        c = Contacts(*(torch.cat(parts, dim=1) for parts in zip(*kinds)))
        mu = params.mu.expand(batch)
        edges = cone_edges(mu, model.contact.n_dirs)  # (B, 3, n_d)
        levers = c.points - state.position[:, None, :]

        def rows(lin, ang, other=0.0):
            """Row velocities J~ (lin, ang) of a twist, less the other body's velocity: (B, C, n_d)."""
            point_vel = lin[:, None, :] + torch.linalg.cross(ang[:, None, :].expand_as(levers), levers) - other
            return (c.frames * point_vel[..., None, :]).sum(-1) @ edges

        def wrench(lam):
            """Force and torque (B, 3) about the centre of mass of row forces lam (B, C, n_d)."""
            forces = ((lam @ edges.transpose(1, 2))[..., None] * c.frames).sum(-2)
            return forces.sum(1), torch.linalg.cross(levers, forces).sum(1)

        def coupling(weights):
            force, torque = wrench(weights)
            return rows(force / mass, math3d.matvec(inv_inertia_world, torque))

        # diag(J~ M^-1 J~^T): |e|^2 / m + (r x e)^T I^-1 (r x e) for each row's direction e.
        arms = torch.linalg.cross(levers[..., None, :].expand_as(c.frames), c.frames)  # rows r x (n, t1, t2)
        row_arms = edges.transpose(1, 2)[:, None] @ arms  # (B, C, n_d, 3): r x e_j
        rot_term = (row_arms * (row_arms @ inv_inertia_world[:, None])).sum(-1)
        row_inv_mass = ((1 + mu * mu)[:, None] / mass)[..., None] + rot_term

        lam = contact_forces(rows(b_vel, b_omega, c.other_velocity), c.phi, row_inv_mass, coupling,
                             params.stiffness.expand(batch), params.damping.expand(batch), dt, model.contact)
        force, torque = wrench(lam)
        velocity = b_vel + dt * force / mass
        omega = b_omega + dt * math3d.matvec(inv_inertia_world, torque)

    return State(
        position=state.position + dt * velocity,
        quat=math3d.quat_integrate(state.quat, omega, dt),
        velocity=velocity,
        omega=omega,
        pusher=state.pusher + dt * action,
    )
