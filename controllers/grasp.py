"""The pre-grasp from the object's geometry: a cage of the four fingertip pads around the object on
the palm, found by the hand's inverse kinematics.

The object's collision spheres (a world model's Gaussians, radius 2 x scale) at its pose give its
footprint: its vertical axis (through its centre of mass), how far its spheres reach from that axis
(a pad farther than that plus its radius is clear of the object at any yaw) and its height. Each
pad has a slot about the axis (SLOTS: the index finger ahead on the -y side, the middle finger
ahead, the ring finger ahead on the +y side, the thumb behind: where each finger stands over the
palm) at the height of the centre of mass. Damped least squares on the pads' Jacobians (forward
kinematics by pytorch-kinematics, physics.hand) puts the pads' centres on their slots, first at
the radius clear at any yaw; each slot's radius is then moved until the finger's last two links
are CLEARANCE from the object as it stands, and solved again (any_yaw: never nearer the axis than
the radius clear at any yaw). The hand reaches its cage through DESCENT_WAYPOINTS joint-target
waypoints, the pads APPROACH_OFFSET further out than in the cage going from over the object down
beside it with the thumb's two distal joints open, then the cage. An object whose cage the pads
cannot reach raises a ValueError that names its size and the largest cage the pads reach.
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple

import mujoco
import torch

from cgwm_env.physics import hand
from cgwm_env.physics.gaussians import SphereGaussians
from cgwm_env.physics.hand_mjcf import LINK_NAMES, PALM_Z, mjcf

FINGERTIPS = ("if_ds", "mf_ds", "rf_ds", "th_ds")  # the links whose pads cage the object, in slot order
FINGER_LINKS = (("if_md", "if_ds"), ("mf_md", "mf_ds"), ("rf_md", "rf_ds"), ("th_px", "th_ds"))  # kept clear
SLOTS = tuple(math.radians(a) for a in (-60.0, 0.0, 75.0, 165.0))  # rad about +z from +x: each pad's direction
THUMB_BASE = (12, 14)  # th_cmc, th_axl: turned first; th_mcp and th_ipl open until the last waypoint
APPROACH_OFFSET = 0.01  # m: the approach's descent puts the pads this much farther out than the cage
DESCENT_WAYPOINTS = 3  # the pads descend from over the object to beside it through this many waypoints
# The inverse kinematics' start and the posture it keeps in the null space of the pads' positions:
# the fingers half curled with no spread (mcp, rot, pip, dip), the thumb turned in over the palm.
REST_POSTURE = (0.8, 0.0, 1.2, 1.0) * 3 + (1.0, 1.5, 0.6, 0.8)
CLEARANCE = 0.005  # m between each finger and the object's swept volume in the cage
REACH_TOLERANCE = 0.002  # m: a pad farther than this from its slot has not reached it
IK_ITERATIONS = 150
IK_DAMPING = 0.005  # m: the damped least squares' damping
IK_CONVERGED = 1e-4  # m: the iterations stop when every pad is this near its target
IK_POSTURE_GAIN = 0.05  # per iteration: the pull towards REST_POSTURE in the pads' null space
CAGE_ROUNDS = 8  # at most this many slot radius corrections for the clearance
CAGE_TOLERANCE = 2e-4  # m: the corrections stop when every finger's clearance is this near CLEARANCE
MAX_CAGE_STEP = 0.01  # m: the largest correction of a slot's radius in one round
MAX_EXTRA_RADIUS = 0.015  # m: a pad goes at most this far past the radius clear at any yaw
# (rad, m): the moves of a slot (turned about the axis, raised) tried in turn for a pad that cannot be
# placed clear of the object on it
SLOT_MOVES = tuple((math.radians(turn), rise) for turn, rise in (
    (0, 0.0), (20, 0.0), (-20, 0.0), (0, 0.015), (20, 0.015), (-20, 0.015), (40, 0.0), (-40, 0.0), (0, 0.03),
    (40, 0.015), (-40, 0.015)))


class Footprint(NamedTuple):
    """An object on the palm: axis (2,) m, the horizontal position of its vertical axis (its
    centre of mass); radius m, the farthest its collision spheres reach from the axis (at any yaw);
    bottom, top, centre_z m: the heights of its lowest and highest points and of its centre."""

    axis: torch.Tensor
    radius: float
    bottom: float
    top: float
    centre_z: float


class Cage(NamedTuple):
    """The pre-grasp: waypoints, joint targets (each (16,) rad, the last the cage) moved through
    before planning; radii (4,) m, each pad's distance from the object's axis in the cage (index,
    middle, ring, thumb); clear_radius m: a pad this far from the axis is clear of the object at
    any yaw; footprint: the object's (Footprint)."""

    waypoints: tuple[torch.Tensor, ...]
    radii: torch.Tensor
    clear_radius: float
    footprint: Footprint


def footprint(gaussians: SphereGaussians, position, quat) -> Footprint:
    """The Footprint of the object of `gaussians` (its collision spheres) at position (3,) m and
    orientation quat (4,) (w, x, y, z)."""
    centres, radii = _world_spheres(gaussians, position, quat)
    axis = torch.as_tensor(position, dtype=centres.dtype)[:2]
    reach = (centres[:, :2] - axis).norm(dim=-1) + radii
    return Footprint(axis, float(reach.max()), float((centres[:, 2] - radii).min()),
                     float((centres[:, 2] + radii).max()), float(torch.as_tensor(position)[2]))


def clear_radius(foot: Footprint, clearance: float = CLEARANCE) -> float:
    """m: how far from the axis of the object of Footprint `foot` a pad's centre is `clearance` m
    clear of it at any yaw."""
    return foot.radius + _pad_radius() + clearance


def cage(gaussians: SphereGaussians, position, quat, clearance: float = CLEARANCE, any_yaw: bool = False) -> Cage:
    """The Cage around the object of `gaussians` (collision spheres) resting at position (3,) m,
    quat (4,) on the palm: each pad at its slot (SLOTS) at the height of the centre, its finger's
    last two links `clearance` m from the object; any_yaw: no pad nearer the axis than the clear
    radius (clear_radius: clear of the object however it has turned about its axis since).
    Raises ValueError naming the object's size and the hand's limit when the pads cannot reach
    such a cage."""
    if not (math.isfinite(clearance) and clearance > 0):
        raise ValueError(f"clearance: expected a positive distance (m), got {clearance!r}")
    centres, sphere_radii = _world_spheres(gaussians, position, quat)
    foot = footprint(gaussians, position, quat)
    height = max(foot.centre_z, PALM_Z + _pad_radius() + clearance)
    clear_at_any_yaw = clear_radius(foot, clearance)
    slots = torch.tensor(SLOTS, dtype=torch.float64)
    angles, heights = slots.clone(), torch.full((4,), height, dtype=torch.float64)
    failed = torch.ones(4, dtype=torch.bool)
    for turn, rise in SLOT_MOVES:  # a pad that cannot be placed clear on its slot tries the slot moved
        angles = torch.where(failed, slots + turn, angles)
        heights = torch.where(failed, min(height + rise, max(height, foot.top - _pad_radius())), heights)
        joints, radii, gap, miss = _fit_radii(centres, sphere_radii, foot.axis, angles, heights, clear_at_any_yaw,
                                              clearance, clear_at_any_yaw if any_yaw else 0.0)
        failed = (miss > REACH_TOLERANCE) | (gap < 0.5 * clearance)
        if not failed.any():
            break
    else:
        worst = int((miss + (clearance - gap).clamp(min=0)).argmax())
        needed = float(radii[worst] + (clearance - gap[worst]).clamp(min=0))
        raise ValueError(
            f"object: does not fit the LEAP Hand's grasp: it reaches {100 * foot.radius:.1f} cm from its vertical axis "
            f"and stands {100 * (foot.top - foot.bottom):.1f} cm tall; its cage needs the {FINGERTIPS[worst][:2]} pad "
            f"{100 * needed:.1f} cm from that axis at {100 * (height - PALM_Z):.1f} cm above the palm, and the pads "
            f"reach a circle of at most {100 * reach_limit(foot.axis, height):.1f} cm there")
    outside = radii + APPROACH_OFFSET
    over = max(height, foot.top + _pad_radius() + clearance)
    levels = heights + torch.linspace(1.0, 0.0, DESCENT_WAYPOINTS, dtype=torch.float64)[:, None] * (over - heights)
    descent = solve_pads(slot_points(foot.axis, outside.expand(len(levels), 4), levels, angles), joints, joints)[0]
    descent[:, THUMB_BASE[0]:THUMB_BASE[1]] = joints[THUMB_BASE[0]:THUMB_BASE[1]]  # the thumb turned in,
    descent[:, THUMB_BASE[1]:] = 0.0  # its distal joints open until the cage
    return Cage((*descent, joints), radii, clear_at_any_yaw, foot)


def _fit_radii(centres, sphere_radii, axis, angles, heights, clear_at_any_yaw, clearance, least_radius):
    """The cage's joints (16,), each pad's radius (4,) m on its slot (angles (4,) rad at heights
    (4,) m), each finger's clearance (4,) m and each pad's distance from its slot (4,) m: the pads
    start at clear_at_any_yaw and each radius is corrected (secant steps, at most MAX_CAGE_STEP)
    until its finger is `clearance` from the object, within CAGE_TOLERANCE or CAGE_ROUNDS, none
    nearer the axis than least_radius m."""
    radii = torch.full((4,), clear_at_any_yaw, dtype=torch.float64)
    joints, miss = solve_pads(slot_points(axis, radii, heights, angles))
    gap = finger_clearance(joints, centres, sphere_radii)
    slope = torch.ones(4, dtype=torch.float64)  # d gap / d radius, per pad (a secant, from the second round)
    for _ in range(CAGE_ROUNDS):
        if float((gap - clearance).abs().max()) < CAGE_TOLERANCE:
            break
        new_radii = (radii + ((clearance - gap) / slope).clamp(-MAX_CAGE_STEP, MAX_CAGE_STEP)).clamp(
            least_radius, clear_at_any_yaw + MAX_EXTRA_RADIUS)
        step = new_radii - radii
        radii = new_radii
        joints, miss = solve_pads(slot_points(axis, radii, heights, angles), joints)
        new_gap = finger_clearance(joints, centres, sphere_radii)
        moved = step.abs() > 1e-6
        slope = torch.where(moved, ((new_gap - gap) / step.where(moved, 1.0)).clamp(0.2, 2.0), slope)
        gap = new_gap
    return joints, radii, gap, miss


def slot_points(axis: torch.Tensor, radii: torch.Tensor, height, angles: torch.Tensor | None = None) -> torch.Tensor:
    """The pads' targets (..., 4, 3) m: radii (..., 4) m from the axis (2,) m in the directions
    `angles` (4,) rad (default SLOTS), at height m (a number, or per pad (..., 4))."""
    angles = torch.tensor(SLOTS, dtype=torch.float64) if angles is None else angles
    xy = axis.double() + radii[..., None] * torch.stack((angles.cos(), angles.sin()), -1)
    return torch.cat((xy, (torch.zeros_like(xy[..., 0]) + height)[..., None]), -1)


def solve_pads(targets: torch.Tensor, start: torch.Tensor | None = None,
               posture: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Joint angles (..., 16) rad within the joint range putting the four pads' centres at targets
    (..., 4, 3) m (damped least squares from `start`, held towards `posture` in the null space;
    both REST_POSTURE by default), and each pad's remaining distance from its target (..., 4) m."""
    lower, upper = hand.LOWER.double(), hand.UPPER.double()
    links, local = _pads()
    rest = torch.tensor(REST_POSTURE, dtype=torch.float64) if posture is None else posture.double()
    rest = rest.expand(*targets.shape[:-2], -1)
    q = (rest if start is None else start.double().expand_as(rest)).clone()
    eye = torch.eye(12, dtype=torch.float64)
    for _ in range(IK_ITERATIONS):
        x, jac = hand.point_jacobian(q, links, local)
        if float((targets - x).norm(dim=-1).max()) < IK_CONVERGED:
            break
        jac = jac.flatten(-3, -2)  # (..., 12, 16)
        gram = jac @ jac.transpose(-1, -2) + IK_DAMPING ** 2 * eye
        error = (targets - x).flatten(-2)[..., None]
        step = jac.transpose(-1, -2) @ torch.linalg.solve(gram, error)
        null = rest[..., None] - q[..., None]
        null = null - jac.transpose(-1, -2) @ torch.linalg.solve(gram, jac @ null)
        q = torch.minimum(torch.maximum(q + (step + IK_POSTURE_GAIN * null)[..., 0], lower), upper)
    x, _ = hand.point_jacobian(q, links, local)
    return q, (targets - x).norm(dim=-1)


def finger_clearance(joints: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """Each finger's (FINGER_LINKS: its last two links) least distance (4,) m from the object's
    spheres, centres (N, 3) and radii (N,) m, at joints (16,) rad."""
    link, _, query_radii, _ = hand.query_points(torch.float64)
    points = hand.query_points_world(joints.double())
    gap = (torch.cdist(points, centres) - radii - query_radii[:, None]).min(1).values
    return torch.stack([gap[torch.isin(link, torch.tensor([LINK_NAMES.index(n) for n in f]))].min()
                        for f in FINGER_LINKS])


def reach_limit(axis: torch.Tensor, height: float) -> float:
    """The radius (m) of the largest circle about axis (2,) m at `height` m on whose slots all four
    pads reach (within REACH_TOLERANCE), from 1 cm to 12 cm by 2.5 mm."""
    radii = torch.arange(0.01, 0.12, 0.0025, dtype=torch.float64)
    _, miss = solve_pads(slot_points(axis, radii[:, None].expand(-1, 4), height))
    reached = radii[(miss.max(-1).values <= REACH_TOLERANCE)]
    return float(reached.max()) if len(reached) else 0.0


def _world_spheres(gaussians: SphereGaussians, position, quat) -> tuple[torch.Tensor, torch.Tensor]:
    position = torch.as_tensor(position, dtype=torch.float64)
    quat = torch.as_tensor(quat, dtype=torch.float64)
    if position.shape != (3,) or quat.shape != (4,) or not (torch.isfinite(position).all() and torch.isfinite(quat).all()):
        raise ValueError(f"position, quat: expected (3,) m and a (4,) quaternion, got {tuple(position.shape)} "
                         f"and {tuple(quat.shape)}")
    g = SphereGaussians(*(t.detach().double() for t in gaussians.tensors()))
    return g.transformed_centers(position, quat / quat.norm()), g.radii


@functools.cache
def _pads() -> tuple[torch.Tensor, torch.Tensor]:
    """The pads' links (4,) and their centres (4, 3) m in the link frames: the means of each pad's
    query spheres (hand.query_points lists them first, PAD_POINTS a pad)."""
    link, points, _, _ = hand.query_points(torch.float64)
    links = torch.tensor([LINK_NAMES.index(n) for n in FINGERTIPS])
    pads = slice(0, len(FINGERTIPS) * hand.PAD_POINTS)
    centres = torch.stack([points[pads][link[pads] == k].mean(0) for k in links])
    return links, centres


@functools.cache
def _pad_radius() -> float:
    """m: the pads' capsule radius (the MJCF's)."""
    model = mjcf()
    return float(max(model.geom_size[g, 0] for g in range(model.ngeom)
                     if model.geom_type[g] == mujoco.mjtGeom.mjGEOM_CAPSULE))
