"""step(model, state, action) and rollout: a free rigid object of spheres, the ground plane, and a
kinematic pusher or the LEAP Hand, under the complementarity-free contact model. Pure torch
functions: batched over a leading dimension and differentiable in the state, the physical
parameters and the spheres.

One step of length h (semi-implicit, paper section III-D-2), generalized velocity v = (object
twist, hand joint rates):
    b  = v + h M^-1 tau: gravity and -omega x I omega on the object; on the hand its impedance
         controller pulling the joints to their targets (hand.HandModel), M_h = h (D + h K)
    v+ = b + h M^-1 J~^T lambda(b)          (contact.py)
    x+ = x + h v+,  q+ = exp(h omega+) q,  pusher+ = pusher + h action,  hand+ = hand + h qdot+
With a hand the action is the change of its joint targets, applied at the start of the step.

Inside a step, per-contact vectors use a component-first layout, (B, 3, C), and rows (B, n_d, C):
elementwise work then runs over long contiguous runs of contacts, which is several times faster on
the CPU than (B, C, 3).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch

from cgwm_env.physics import math3d
from cgwm_env.physics.collision import (SolidGrid, SphereGrid, contact_frames, plane_sdf, soft_sdf_grid, solid_sdf,
                                        surface_points)
from cgwm_env.physics.contact import contact_forces, contact_rows
from cgwm_env.physics.hand import forward_kinematics, jacobian_at, joint_axes, joint_jacobian, joint_origins, link_points
from cgwm_env.physics.model import Model, State, check_state


class Prepared(NamedTuple):
    """What a rollout needs of the model that does not change from step to step, batched (B, ...)."""

    inv_mass: torch.Tensor  # (B,) 1/kg
    inertia: torch.Tensor  # (B, 3, 3) body frame, kg m^2
    inv_inertia: torch.Tensor  # (B, 3, 3)
    stiffness: torch.Tensor  # (B,)
    damping: torch.Tensor  # (B,)
    gravity: torch.Tensor  # (3,) m/s^2
    mu: torch.Tensor  # (B,) friction coefficient
    cone: torch.Tensor  # (B, 3, R): each contact's rows in contact-frame coordinates (contact.contact_rows)
    ground_edges: torch.Tensor  # (B, 3, R, 1): the rows' directions on the ground
    ground_index: torch.Tensor | None  # (K,) the spheres that may touch the ground, None: all
    hand_inv_mass: torch.Tensor | None  # (B, 16) the hand's block of M^-1, 1 / (h (D + h K)); None: no hand
    grid: SphereGrid | None  # the object's neighbour grid for the hand's soft distances; None: no hand
    solid: SolidGrid | None  # the object's solid distance grid for the pusher's contacts; None: no pusher


def prepare(model: Model, batch: int) -> Prepared:
    """Map the model's parameters to physical values once for a batch of `batch` environments."""
    p = model.params
    inertia = p.inertia.expand(batch, 3, 3)
    mu = p.mu.expand(batch)
    ground_frame = _GROUND_FRAME.to(inertia).expand(batch, 3, 3)[..., None]
    hand_inv_mass = grid = None
    if model.hand is not None:
        h = model.hand
        hand_inv_mass = inertia.new_full((batch, len(h.lower)), 1.0 / (model.dt * (h.damping + model.dt * h.stiffness)))
        grid = model.sphere_grid()
    solid = model.solid_grid() if model.pusher_points.shape[0] > 0 else None
    cone = contact_rows(mu, model.contact)
    return Prepared(1.0 / p.mass.expand(batch), inertia, math3d.inverse3(inertia),
                    p.stiffness.expand(batch), p.damping.expand(batch), inertia.new_tensor(model.gravity), mu, cone,
                    _edges(ground_frame, cone), model.ground_candidates(), hand_inv_mass, grid, solid)


def step(model: Model, state: State, action: torch.Tensor | None = None) -> State:
    """Advance one step of model.dt. action: the pusher's velocity (B, 3) m/s, or with a hand the
    change of its joint targets (B, 16) rad; None: a still pusher, unchanged targets."""
    check_state(state)
    _check_hand(model, state)
    batch = state.position.shape[0]
    if action is None:
        action = state.position.new_zeros(batch, model.action_size)
    _check_actions(action, (batch, model.action_size), "action")
    return step_prepared(model, prepare(model, batch), state, action)


def rollout(model: Model, state: State, actions: torch.Tensor | None = None, steps: int | None = None) -> State:
    """Run `steps` steps (or one per action in actions (B, T, A), A = model.action_size); returns
    the States stacked on a time axis after the batch axis, (B, T + 1, ...), the initial state first."""
    check_state(state)
    _check_hand(model, state)
    batch = state.position.shape[0]
    if actions is None:
        if steps is None or steps < 0:
            raise ValueError(f"steps: expected a count >= 0 when no actions are given, got {steps}")
        actions = state.position.new_zeros(batch, steps, model.action_size)
    else:
        _check_actions(actions, (batch, None, model.action_size), "actions")
    prepared = prepare(model, batch)
    states = [state]
    for t in range(actions.shape[1]):
        state = step_prepared(model, prepared, state, actions[:, t])
        states.append(state)
    return State(*(torch.stack(parts, dim=1) for parts in zip(*states)))


class HandKinematics(NamedTuple):
    """The hand's kinematics at joint angles q0, held over a control step and used to first order in
    q - q0 (the joints move a few hundredths of a radian in one): joints q0 (B, 16) rad; table
    (B, P, 6), per query sphere its centre (m) and fixed contact normal (HandModel.query_normals in
    the world, zeros where none), read through the properties below; axes and origins (B, 16, 3),
    the joints' axes and origins in the world, m; moves (P, 16), 1 where joint j moves sphere p's
    link; gravity_torques (B, 16), N m, gravity on the links. A step needs the Jacobians of only
    the spheres it picks (jacobians_of), not of all P."""

    joints: torch.Tensor
    table: torch.Tensor
    axes: torch.Tensor
    origins: torch.Tensor
    moves: torch.Tensor
    gravity_torques: torch.Tensor

    @property
    def points(self) -> torch.Tensor:  # (B, P, 3)
        return self.table[..., :3]

    @property
    def normals(self) -> torch.Tensor:  # (B, P, 3)
        return self.table[..., 3:6]

    @property
    def jacobians(self) -> torch.Tensor:  # (B, P, 3, 16): d centre / d q
        return joint_jacobian(self.axes, self.origins, self.moves, self.points)

    def jacobians_of(self, points: torch.Tensor, moves: torch.Tensor) -> torch.Tensor:
        """d point / d q (B, C, 3, 16) of points (B, C, 3) on links moved by joints moves (B, C, 16)."""
        return joint_jacobian(self.axes, self.origins, moves, points)


def hand_kinematics(model: Model, joints: torch.Tensor) -> HandKinematics:
    """Forward kinematics of model.hand's query spheres and joints at joints (B, 16) rad."""
    hand = model.hand
    link_poses = forward_kinematics(joints)  # (B, L, 4, 4), hand frame = world
    points = link_points(link_poses, hand.query_link, hand.query_points.to(joints))
    rotations = link_poses[:, hand.query_link, :3, :3]
    normals = (rotations @ hand.query_normals.to(joints)[:, :, None])[..., 0]
    links = torch.arange(len(hand.link_masses), device=joints.device)
    coms = link_points(link_poses, links, hand.link_coms.to(joints))
    weights = hand.link_masses.to(joints)[:, None] * joints.new_tensor(model.gravity)  # (L, 3) N
    gravity_torques = torch.einsum("blxj,lx->bj", jacobian_at(link_poses, links, coms), weights)
    return HandKinematics(joints, torch.cat((points, normals), -1), joint_axes(link_poses), joint_origins(link_poses),
                          hand.moves[hand.query_link].to(joints), gravity_torques)


def control_step(model: Model, prepared: Prepared, state: State, action: torch.Tensor, substeps: int,
                 compiled: bool = False) -> State:
    """`substeps` physics steps as one control step, no input checks: a pusher keeps its velocity
    action (B, 3) m/s throughout; a hand's target change action (B, 16) rad is applied at the first,
    and its kinematics are worked out once, at the start (HandKinematics). compiled: run the physics
    steps through torch.compile (several times faster at small batches; the first call per model,
    batch size and dtype compiles for 20-60 s)."""
    physics_step = _compiled_step() if compiled else step_prepared
    if model.hand is None:
        for _ in range(substeps):
            state = physics_step(model, prepared, state, action)
        return state
    kinematics = hand_kinematics(model, state.hand)
    for i in range(substeps):
        state = physics_step(model, prepared, state, action if i == 0 else torch.zeros_like(action), kinematics)
    return state


@functools.cache
def _compiled_step():
    return torch.compile(step_prepared, dynamic=False)


def step_prepared(model: Model, prepared: Prepared, state: State, action: torch.Tensor,
                  kinematics: HandKinematics | None = None) -> State:
    """One step with the model's constants already prepared and no input checks: the inner loop
    of rollout, planners and learners. action: pusher velocity (B, 3) m/s, or with a hand the
    change of its joint targets (B, 16) rad; kinematics: the hand's, from an earlier joint state
    (control_step), or None to work them out at state.hand."""
    dt, c, hand = model.dt, prepared, model.hand
    rot = math3d.quat_to_matrix(state.quat)
    inertia_world = rot @ c.inertia @ rot.transpose(-1, -2)
    inv_inertia_world = rot @ c.inv_inertia @ rot.transpose(-1, -2)

    # Contact-free velocity b: gravity and the gyroscopic torque -omega x (I omega); the hand's
    # joints pulled to their targets by springs whose torque saturates at the actuators' limit.
    gyro = torch.linalg.cross(math3d.matvec(inertia_world, state.omega), state.omega)
    b_vel = state.velocity + dt * c.gravity
    b_omega = state.omega + dt * math3d.matvec(inv_inertia_world, gyro)
    pusher_velocity, target, b_hand = action, state.hand_target, None
    if hand is not None:
        pusher_velocity = torch.zeros_like(state.pusher)
        lower, upper = hand.lower.to(action), hand.upper.to(action)
        target = torch.minimum(torch.maximum(state.hand_target + action, lower), upper)
        kinematics = kinematics or hand_kinematics(model, state.hand)
        spring = hand.torque_limit * torch.tanh(hand.stiffness * (target - state.hand) / hand.torque_limit)
        drive = torch.nn.functional.softshrink(spring + kinematics.gravity_torques, hand.friction_loss)
        b_hand = drive * (dt * c.hand_inv_mass)

    kinds = []
    if model.ground_height is not None:
        kinds.append(ground_rows(model, c, state, rot))
    if model.pusher_points.shape[0] > 0:
        kinds.append(pusher_rows(model, c, state, rot, pusher_velocity))
    if hand is not None:
        kinds.append(hand_rows(model, c, state, rot, kinematics))
    velocity, omega, hand_velocity = b_vel, b_omega, b_hand
    if kinds:
        sizes = [k.phi.shape[1] for k in kinds]

        def joined(parts, dim):
            return parts[0] if len(parts) == 1 else torch.cat(parts, dim=dim)

        def generalized_force(lam):  # J~^T lam: force and torque on the object, torques on the hand's joints
            parts = [k.wrench(part) for k, part in zip(kinds, lam.split(sizes, dim=2))]
            hand_torques = [p[2] for p in parts if p[2] is not None]
            return sum(p[0] for p in parts), sum(p[1] for p in parts), sum(hand_torques) if hand_torques else None


        def inverse_mass():  # J~ M^-1 J~^T = (G W) G^T: G and G W (B, R C, N), rows in joined(..., 2)'s order
            parts = list(zip(*(k.directions(c.hand_inv_mass) for k in kinds)))
            lin, ang = (joined(list(p), 2).flatten(1, 2) for p in parts[:2])
            directions = [lin, ang]
            weighted = [lin * c.inv_mass[:, None, None], ang @ inv_inertia_world]
            if parts[2][0] is not None:
                joints = joined(list(parts[2]), 2).flatten(1, 2)
                directions.append(joints)
                weighted.append(joints)
            return torch.cat(directions, dim=2), torch.cat(weighted, dim=2)

        lam = contact_forces(
            joined([k.row_velocity(state.velocity - k.other_velocity, state.omega, None) for k in kinds], 2),
            joined([k.row_velocity(b_vel - state.velocity, b_omega - state.omega, b_hand) for k in kinds], 2),
            joined([k.phi for k in kinds], 1),
            inverse_mass, c.stiffness, c.damping, c.mu, dt, model.contact)
        force, torque, hand_torque = generalized_force(lam)
        velocity = b_vel + dt * force * c.inv_mass[:, None]
        omega = b_omega + dt * math3d.matvec(inv_inertia_world, torque)
        if hand_torque is not None:
            hand_velocity = b_hand + dt * hand_torque * c.hand_inv_mass

    joints = state.hand
    if hand is not None:
        joints = torch.minimum(torch.maximum(joints + dt * hand_velocity, lower), upper)
    return State(
        position=state.position + dt * velocity,
        quat=math3d.quat_integrate(state.quat, omega, dt),
        velocity=velocity,
        omega=omega,
        pusher=state.pusher + dt * pusher_velocity,
        hand=joints,
        hand_target=target,
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
    hand_jacobian: torch.Tensor | None = None

    def row_velocity(self, lin: torch.Tensor, ang: torch.Tensor, joint_rates: torch.Tensor | None) -> torch.Tensor:
        """J~ (lin, ang, joint_rates) for an object twist (B, 3), (B, 3) and hand joint rates (B, 16)
        (None: still, as the quasi-static hand is at a step's start): the rows' velocities
        e_j . (lin + ang x r - J_hand joint_rates), (B, n_d, C)."""
        if self.edges.shape[-1] == 1:
            edges_t = self.edges[..., 0].transpose(1, 2)
            return edges_t @ lin[..., None] + (edges_t @ math3d.skew(ang)) @ self.levers
        point_vel = lin[..., None] + _cross(ang[..., None].expand_as(self.levers), self.levers)
        if self.hand_jacobian is not None and joint_rates is not None:
            point_vel = point_vel - torch.einsum("bxjc,bj->bxc", self.hand_jacobian, joint_rates)
        return (self.edges * point_vel[:, :, None]).sum(1)

    def wrench(self, lam: torch.Tensor):
        """J~^T lam for row forces lam (B, n_d, C): force and torque on the object about its centre of
        mass, (B, 3) each, and the torques on the hand's joints (B, 16) (None without a hand)."""
        if self.edges.shape[-1] == 1:
            edges = self.edges[..., 0]
            force = (edges @ lam.sum(-1)[..., None])[..., 0]
            moments = (self.levers @ lam.transpose(1, 2)) @ edges.transpose(1, 2)  # sum_c r_c f_c^T
            return force, math3d.axial(moments), None
        forces = (self.edges * lam[:, None]).sum(2)
        force, moments = forces.sum(-1), self.levers @ forces.transpose(1, 2)
        joint_torques = None
        if self.hand_jacobian is not None:  # the reaction on the hand
            joint_torques = -torch.einsum("bxjc,bxc->bj", self.hand_jacobian, forces)
        return force, math3d.axial(moments), joint_torques

    def directions(self, hand_inv_mass: torch.Tensor | None) -> tuple:
        """Each row's direction in generalized coordinates: the force's (B, R, C, 3), its moment about
        the centre of mass (B, R, C, 3) and, with the hand, the reaction's joint torques scaled by
        sqrt(1 / M_h) (B, R, C, 16) (None without a hand)."""
        edges = self.edges.expand(-1, -1, -1, self.levers.shape[-1])  # (B, 3, R, C)
        arms = _cross(self.levers[:, :, None].expand_as(edges), edges)
        joints = None
        if self.hand_jacobian is not None:
            joints = -torch.einsum("bxrc,bxjc->brcj", edges, self.hand_jacobian) * hand_inv_mass[:, None, None].sqrt()
        return edges.permute(0, 2, 3, 1), arms.permute(0, 2, 3, 1), joints

    def row_inv_mass(self, inv_mass: torch.Tensor, inv_inertia: torch.Tensor,
                     hand_inv_mass: torch.Tensor | None) -> torch.Tensor:
        """diag(J~ M^-1 J~^T) = |e|^2 / m + (r x e)^T I^-1 (r x e) + sum_j (e . J_hand,j)^2 / M_h,j, (B, n_d, C)."""
        if self.edges.shape[-1] == 1:
            # (r x e)^T W (r x e) = r^T Q r with Q = [e]x^T W [e]x, one 3x3 per row direction.
            edges = self.edges[..., 0]
            skews = math3d.skew(edges.transpose(1, 2))  # (B, n_d, 3, 3)
            quadratic = skews.transpose(-1, -2) @ inv_inertia[:, None] @ skews
            outer = (self.levers[:, :, None] * self.levers[:, None, :]).flatten(1, 2)  # (B, 9, C)
            return ((edges * edges).sum(1) * inv_mass[:, None])[..., None] + quadratic.flatten(2) @ outer
        arms = _cross(self.levers[:, :, None].expand(-1, -1, self.edges.shape[2], -1), self.edges)
        turned = (inv_inertia @ arms.flatten(2)).view_as(arms)
        diagonal = (self.edges * self.edges).sum(1) * inv_mass[:, None, None] + (arms * turned).sum(1)
        if self.hand_jacobian is not None:
            along = torch.einsum("bxnc,bxjc->bnjc", self.edges, self.hand_jacobian)
            diagonal = diagonal + (along * along * hand_inv_mass[:, None, :, None]).sum(2)
        return diagonal


def ground_rows(model: Model, prepared: Prepared, state: State, rot: torch.Tensor) -> ContactRows:
    """The object's spheres (those in prepared.ground_index) against the plane z = ground_height."""
    g = model.gaussians
    centers, radii = g.centers, g.radii
    if prepared.ground_index is not None:
        centers, radii = centers[prepared.ground_index], radii[prepared.ground_index]
    levers = rot @ centers.T  # (B, 3, K) centres relative to the centre of mass, world frame
    heights = state.position[:, 2:] + levers[:, 2]
    phi = plane_sdf(heights[..., None], heights.new_ones(1), model.ground_height) - radii
    if model.contact.gain_mode == "effective_mass" and phi.shape[1] > model.contact.max_contacts:
        nearest = phi.detach().topk(model.contact.max_contacts, dim=1, largest=False).indices  # (B, K')
        phi, radii = phi.gather(1, nearest), radii[nearest]
        levers = levers.gather(2, nearest[:, None].expand(-1, 3, -1))
    levers = torch.cat((levers[:, :2], levers[:, 2:] - radii[..., None, :]), dim=1)  # down to the sphere's bottom
    return ContactRows(phi, levers, prepared.ground_edges, torch.zeros_like(state.velocity))


def pusher_rows(model: Model, prepared: Prepared, state: State, rot: torch.Tensor, pusher_velocity) -> ContactRows:
    """The pusher's query spheres against the object's solid signed distance (collision.solid_sdf: a
    pusher may sink deep, see ContactSettings.pusher)."""
    mocap = model.contact.pusher == "mocap"
    placed = state.pusher + model.dt * pusher_velocity if mocap else state.pusher  # a mocap body is placed, then stepped
    query = placed[:, None, :] + model.pusher_points  # (B, P, 3) world
    local = (query - state.position[:, None, :]) @ rot  # R^T (q - x), row-vector form
    g = model.gaussians
    dist, normals_local = solid_sdf(local, g.centers, g.radii, prepared.solid, model.sdf)
    normals = normals_local @ rot.transpose(-1, -2)  # out of the object, towards the pusher
    levers = surface_points(query, dist, normals) - state.position[:, None, :]
    frames = contact_frames(-normals).permute(0, 2, 3, 1)  # (B, 3, 3, P); the object moves away along -n
    other = torch.zeros_like(pusher_velocity) if mocap else pusher_velocity
    return ContactRows(dist - model.pusher_radii, levers.transpose(1, 2), _edges(frames, prepared.cone), other)


def hand_rows(model: Model, prepared: Prepared, state: State, rot: torch.Tensor,
              kinematics: HandKinematics) -> ContactRows:
    """The hand's query spheres nearest the object (hand.max_contacts of them, picked by the grid's
    broad phase where they were at the control step's start) against the object's soft signed
    distance, with the hand's contact Jacobians."""
    hand, g, k = model.hand, model.gaussians, kinematics
    batch, count = k.points.shape[:2]
    grid = prepared.grid
    radii = hand.query_radii.to(rot)
    start = (k.points - state.position[:, None, :]) @ rot  # R^T (p - x), row-vector form
    coarse = grid.nearest[grid.cell_of(start)] - radii
    pick = coarse.topk(min(hand.max_contacts, count), dim=1, largest=False).indices  # (B, C)
    rows = (pick + count * torch.arange(batch, device=pick.device)[:, None]).flatten()

    def picked(x):  # (B, P, ...) -> (B, C, ...)
        return x.reshape(batch * count, *x.shape[2:]).index_select(0, rows).view(*pick.shape, *x.shape[2:])

    table = picked(k.table)
    moves = hand.moves[hand.query_link[pick]]  # (B, C, 16)
    jacobians = k.jacobians_of(table[..., :3], moves)  # (B, C, 3, 16) at the spheres' centres
    query = table[..., :3] + (jacobians * (state.hand - k.joints)[:, None, None, :]).sum(-1)  # world
    local = (query - state.position[:, None, :]) @ rot
    dist, normals_local = soft_sdf_grid(local, g.centers, g.radii, grid, model.sdf)
    normals = normals_local @ rot.transpose(-1, -2)  # out of the object, towards the hand
    levers = surface_points(local @ rot.transpose(-1, -2), dist, normals)  # from the object's centre
    # Where the hand's surface is flat (the palm's face), its normal is the contact's.
    fixed = table[..., 3:6]
    normals = torch.where((fixed != 0).any(-1, keepdim=True), -fixed, normals)
    # The Jacobian at the contact point: the centre's plus each joint's turn of the offset from the
    # moved centre, axis x offset, = axis x (contact - moved centre + centre - origin).
    jacobians = k.jacobians_of(levers + state.position[:, None, :] - query + table[..., :3], moves)
    frames = contact_frames(-normals).permute(0, 2, 3, 1)  # (B, 3, 3, C); the object moves away along -n
    return ContactRows(dist - radii[pick], levers.transpose(1, 2), _edges(frames, prepared.cone),
                       torch.zeros_like(state.velocity), jacobians.permute(0, 2, 3, 1))


def _cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cross product along dim 1 (component-first layout), broadcasting the other dims."""
    a0, a1, a2 = a.unbind(1)
    b0, b1, b2 = b.unbind(1)
    return torch.stack((a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0), dim=1)


def _edges(frames: torch.Tensor, cone: torch.Tensor) -> torch.Tensor:
    """World directions of the dual-cone rows for frames (B, 3 (n, t1, t2), 3 (xyz), C) and the
    cone's rows in frame coordinates (B, 3, n_d): (B, 3, n_d, C)."""
    return torch.einsum("bkn,bkxc->bxnc", cone, frames)


# Rows (n, t1, t2) of the ground's contact frame: moving the object up opens the gap.
_GROUND_FRAME = torch.eye(3)[[2, 0, 1]]


def _check_hand(model: Model, state: State) -> None:
    want = 0 if model.hand is None else len(model.hand.lower)
    if state.hand.shape[1] != want:
        raise ValueError(f"state.hand: expected shape (B, {want}) for a model {'with' if want else 'without'} "
                         f"a hand, got {tuple(state.hand.shape)}")


def _check_actions(action, shape: tuple, name: str) -> None:
    """ValueError naming `name` unless action is a finite tensor of `shape` (None: any size there)."""
    if (not isinstance(action, torch.Tensor) or action.ndim != len(shape)
            or any(w is not None and a != w for a, w in zip(action.shape, shape))):
        want = tuple("T" if w is None else w for w in shape)
        raise ValueError(f"{name}: expected a tensor of shape {want} (pusher velocities m/s, or hand "
                         f"joint-target changes rad), got {getattr(action, 'shape', type(action).__name__)}")
    if not torch.isfinite(action).all():
        raise ValueError(f"{name}: expected finite values, got NaN or inf")
