"""Gradient-based model-predictive control of the LEAP Hand over a world model (paper section IV-C).

Each control step the planner optimizes the changes of the 16 joint targets over a horizon of H
control steps, U (H, 16) rad within +-action_bound, by projected Adam steps (one second moment for
the whole plan) on the cost of the complementarity-free MPC literature (Jin 2024, on-palm
reorientation), backpropagating through the world model:

    sum_t  w_o (1 - <q_t, q*>^2) + w_p |x_t - x_hold|^2 + w_f sum_i |tip_i,t - x_t|^2 + w_u |u_t|^2

over the predicted states t = 1..H (orientation error, the object's centre held where it started,
the four fingertip pads drawn to the object, the action's size). It sends U[0] and keeps the rest,
shifted, as the next call's start. The rollout runs on a coarser copy of the world model
(planning_model: physics step plan_dt, plain contact gains bounded to stay stable there, fewer hand
contacts, no dry joint friction) with the hand's kinematics linearized once per call
(simulator.HandKinematics). compile=True runs the rollout and cost through torch.compile (the same
plan up to rounding, about 4x faster solves at batch 1; the first plan compiles).

Before the first plan the hand moves into a cage of the four fingertip pads around the object,
computed from the model's Gaussians at the object's pose (controllers.grasp); near the goal the
orientation weight grows (settle_error, settle_weight); each command keeps a joint's target within
max_lead of its measured position; when the error stalls the planner lets go (the pads out to where
they clear the object at any yaw) and regrasps: it moves into the cage about the object's start
axis with the pads at that radius (regrasp_*, release_*). MPCSettings() is the planner `cgwm demo`
runs; docs/design.md says why each part is there and what was measured without it.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import torch

from cgwm_env.config import settings_from_yaml
from cgwm_env.envs.leap.task import ACTION_BOUND, CONTROL_DT, orientation_error
from cgwm_env.physics.hand import PAD_POINTS
from cgwm_env.physics.hand_mjcf import LINK_NAMES
from cgwm_env.physics.model import Model, State, check_state
from cgwm_env.physics.simulator import HandKinematics, hand_kinematics, prepare, step_prepared
from controllers.grasp import FINGERTIPS, Cage, cage, clear_radius, footprint

RELEASE_MARGIN = 0.01  # m: the release term's target lies this far past the cage's clear radius, so the pads pass it


@dataclass(frozen=True)
class MPCSettings:
    """horizon: control steps planned ahead; iterations: projected Adam steps per control step;
    step_size: Adam's step, rad (about the largest move of a coordinate per iteration); betas:
    Adam's moment decays; plan_dt: the planning model's physics step, s (a divisor of the control
    step); stiffness_limit, damping_limit: the bounds on the rows' summed plain contact
    stiffness and damping, damping_scale: the multiplier of the scaled damping (module doc);
    max_contacts: hand query spheres in the planning model's contact solve; the cost's weights
    (module doc), each per step of the horizon: w_fingertip (1/m^2, on the four pads' squared
    distances to the object's centre), w_action (1/rad^2), w_position (1/m^2), w_orientation
    (per unit of error); pregrasp: move into the cage (controllers.grasp) before the first plan
    and after each release (False: plan from wherever the hand is); cage_clearance: m between each
    fingertip and the object's swept volume in the cage;
    regrasp_after: planned steps without the orientation error falling by regrasp_progress before
    a regrasp (0: never); release_steps, w_release (1/m^2): the release before
    a regrasp (module doc); settle_error, settle_weight: while the orientation error is below
    settle_error (and the pads are not releasing), w_orientation is multiplied by settle_weight
    (module doc); max_lead: the farthest, rad, a planned step leaves a joint's target from its
    measured position; a target farther already is brought back, at most action_bound a step
    (0: no bound; module doc)."""

    horizon: int = 3
    iterations: int = 1
    step_size: float = 0.2
    betas: tuple[float, float] = (0.7, 0.9)
    plan_dt: float = 1.0 / 60.0
    stiffness_limit: float = 0.3
    damping_scale: float = 1.0
    damping_limit: float = 1.5
    max_contacts: int = 48
    w_fingertip: float = 5.0
    w_action: float = 0.1
    w_position: float = 600.0
    w_orientation: float = 1.0
    pregrasp: bool = True
    cage_clearance: float = 0.005
    regrasp_after: int = 40
    regrasp_progress: float = 0.01
    release_steps: int = 20
    w_release: float = 100.0
    settle_error: float = 0.1
    settle_weight: float = 30.0
    max_lead: float = 0.16

    def __post_init__(self):
        if isinstance(self.regrasp_after, bool) or not isinstance(self.regrasp_after, int) or self.regrasp_after < 0:
            raise ValueError(f"regrasp_after: expected an integer >= 0, got {self.regrasp_after!r}")
        for name in ("horizon", "iterations", "max_contacts", "release_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
        for name in ("step_size", "plan_dt", "stiffness_limit", "damping_scale", "damping_limit", "regrasp_progress",
                     "cage_clearance"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name}: expected a positive number, got {value!r}")
        for name in ("w_orientation", "w_position", "w_fingertip", "w_action", "w_release", "settle_error",
                     "settle_weight", "max_lead"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}: expected a number >= 0, got {value!r}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas: expected two numbers in [0, 1), got {self.betas!r}")
        if not isinstance(self.pregrasp, bool):
            raise ValueError(f"pregrasp: expected true or false, got {self.pregrasp!r}")



def load_settings(config=None) -> tuple[MPCSettings, str]:
    """MPCSettings with the YAML file `config` (configs/mpc.yaml shows every key) over the defaults,
    which are the shipped planner; returns them and where they came from (the file, or "MPCSettings
    defaults")."""
    if config is None:
        return MPCSettings(), "MPCSettings defaults"
    return settings_from_yaml(MPCSettings, config, "--config"), str(config)


def planning_model(model: Model, settings: MPCSettings, control_dt: float = CONTROL_DT) -> tuple[Model, int]:
    """The coarse copy of `model` the planner rolls out, and its physics steps per control step.
    Plain gains (N/m, N s/m) are bounded by stiffness_limit and damping_limit (module doc), the
    damping rescaled to plan_dt first; effective-mass gains are dimensionless and kept;
    the hand keeps settings.max_contacts contacts at most and loses its dry joint friction."""
    if model.hand is None:
        raise ValueError("model: expected a Model with a hand (hand=cgwm_env.physics.hand.HandModel())")
    substeps = round(control_dt / settings.plan_dt)
    if substeps < 1 or abs(substeps * settings.plan_dt - control_dt) > 1e-9:
        raise ValueError(f"plan_dt: expected a divisor of the control step {control_dt:.6g} s, got {settings.plan_dt}")
    params, hand = model.params, dataclasses.replace(
        model.hand, max_contacts=min(settings.max_contacts, model.hand.max_contacts), friction_loss=0.0)
    if model.contact.gain_mode == "plain":
        damping = settings.damping_scale * model.dt / settings.plan_dt * params.damping.detach()
        per_row = params.mass.detach() / (hand.max_contacts * model.contact.n_dirs * settings.plan_dt)
        stiffness_bound = settings.stiffness_limit * per_row / settings.plan_dt
        params = dataclasses.replace(
            params, log_stiffness=torch.minimum(params.stiffness.detach(), stiffness_bound).log(),
            log_damping=torch.minimum(damping, settings.damping_limit * per_row).log())
    return dataclasses.replace(model, dt=settings.plan_dt, params=params, hand=hand), substeps


class ReorientationMPC:
    """Gradient-based MPC turning the object on the palm to a goal orientation (module doc).

    model: the world model (a cgwm_env Model with a hand); settings: MPCSettings; action_bound:
    the largest change of a joint target per control step, rad. Call plan(state, goal) once per
    control step; reset() between episodes. solve_times holds each plan's wall time, s (not the
    pre-grasp's steps); cage, the controllers.grasp.Cage around the object (with settings.pregrasp,
    computed at the episode's first plan) and recage, the one moved into after each release
    (computed at the first release); cage_times the wall time of each call, s; waypoints, the
    cage's waypoints still ahead; regrasps, the regrasps begun since reset(). compile: run the rollout and cost through torch.compile (module doc);
    the first plan's wall time, which compiles, goes to compile_seconds instead of solve_times.
    """

    def __init__(self, model: Model, settings: MPCSettings = MPCSettings(), action_bound: float = ACTION_BOUND,
                 control_dt: float = CONTROL_DT, compile: bool = False):
        if not (math.isfinite(action_bound) and action_bound > 0):
            raise ValueError(f"action_bound: expected a positive number of radians, got {action_bound!r}")
        self.settings, self.action_bound = settings, float(action_bound)
        self.model, self.substeps = planning_model(model, settings, control_dt)
        self.prepared = prepare(self.model, 1)
        self.plan_dtype = self.model.params.log_mass.dtype
        hand = self.model.hand
        tips = torch.as_tensor([LINK_NAMES.index(name) for name in FINGERTIPS])
        # hand.query_points lists the pads' spheres first, PAD_POINTS a pad
        first = torch.arange(len(hand.query_link)) < len(FINGERTIPS) * PAD_POINTS
        on_pad = first & (hand.query_link[:, None] == tips).any(1)
        pad_of = (hand.query_link[:, None] == tips).float().argmax(1)
        # (4, P): each pad's mean over its query spheres; the pads' centres are this times the spheres'
        self._pad_mean = torch.stack([(on_pad & (pad_of == i)).float() for i in range(len(FINGERTIPS))])
        self._pad_mean = (self._pad_mean / self._pad_mean.sum(1, keepdim=True)).to(self.plan_dtype)
        self.solve_times: list[float] = []
        self.cage_times: list[float] = []
        self.compiled = bool(compile)
        self.compile_seconds: float | None = None
        self._rollout_cost = torch.compile(self._cost, dynamic=False) if self.compiled else self._cost
        self.reset()

    def reset(self) -> None:
        """Forget the previous plan and the solver's moments (a new episode)."""
        shape, dtype = (self.settings.horizon, len(self.model.hand.lower)), self.plan_dtype
        self.plan_actions = torch.zeros(shape, dtype=dtype)
        self._m, self._v, self._count = torch.zeros(shape, dtype=dtype), torch.zeros((), dtype=dtype), 0
        self.last_cost = math.nan
        self.cage: Cage | None = None
        self.waypoints: list[torch.Tensor] = []
        self._clear_radius: torch.Tensor | None = None  # m, set with the cage at the episode's first plan
        self.recage: Cage | None = None
        self.regrasps = 0
        self._release_from = None  # the orientation held while releasing, (4,); None when not releasing
        self._release_count, self._best_error, self._stalled_for = 0, math.inf, 0

    def _cage_around(self, state: State) -> None:
        """At the episode's first plan: with settings.pregrasp, the cage around the object as it
        stands in `state` (controllers.grasp.cage) and its waypoints ahead; in any case the radius
        the release pushes the pads out to (grasp.clear_radius). After a release: the last two
        waypoints of the cage about the object's start axis with the pads at that radius (grasp.cage any_yaw:
        clear of the object however it has turned; the first cage where the pads cannot reach
        that). The time it took goes to cage_times."""
        start = time.perf_counter()
        s = self.settings
        if self._clear_radius is None:
            self._start_pose = state.position[0].clone(), state.quat[0].clone()
            if s.pregrasp:
                self.cage = cage(self.model.gaussians, *self._start_pose, s.cage_clearance)
                self.waypoints, clear = [w.to(self.plan_dtype) for w in self.cage.waypoints], self.cage.clear_radius
            else:
                clear = clear_radius(footprint(self.model.gaussians, *self._start_pose), s.cage_clearance)
            self._clear_radius = torch.tensor(clear, dtype=self.plan_dtype)
        elif s.pregrasp:
            if self.recage is None:
                try:
                    self.recage = cage(self.model.gaussians, *self._start_pose, s.cage_clearance, any_yaw=True)
                except ValueError:  # the pads cannot reach that far round this object: the first cage
                    self.recage = self.cage
            # beside the object, the thumb open, then the cage: no lift over the object it is turning
            self.waypoints = [w.to(self.plan_dtype) for w in self.recage.waypoints[-2:]]
        self.cage_times.append(time.perf_counter() - start)

    def _restart_plan(self) -> None:
        self.plan_actions.zero_()
        self._m.zero_()

    def plan(self, state: State, goal, hold_position=None) -> torch.Tensor:
        """The next joint-target change (16,) rad, within +-action_bound, for the world-model state
        `state` (batch 1), the goal orientation `goal` (4,) unit quaternion (w, x, y, z) and the
        object position to hold, hold_position (3,) m (default: the state's). The episode's first
        call computes the cage around the object (controllers.grasp.cage: a ValueError if the
        object does not fit the hand); while its waypoints remain, the step towards the next one
        instead; while releasing for a regrasp, a step of the release (module doc). A NaN state or
        an impossible goal raises ValueError before anything is planned."""
        start = time.perf_counter()
        state, goal, hold = self._checked(state, goal, hold_position)
        s = self.settings
        if self._clear_radius is None:
            self._cage_around(state)
        while self.waypoints:
            step = self.waypoints[0] - state.hand_target[0]
            if step.abs().max() > 1e-4:
                return step.clamp(-self.action_bound, self.action_bound)
            self.waypoints.pop(0)
        with torch.no_grad():
            kinematics = hand_kinematics(self.model, state.hand)
            tips0 = self._pad_mean @ kinematics.points[0]  # (4, 3) m, the pads' centres
            tips_jac = torch.einsum("ip,pxj->ixj", self._pad_mean, kinematics.jacobians[0])  # (4, 3, 16)
        error = float(orientation_error(state.quat[0].numpy(), goal.numpy()))  # to the task's goal
        if self._release_from is None and self._stalled(error):
            self.regrasps += 1
            self._release_from, self._release_count = state.quat[0].clone(), 0
            self._restart_plan()
        if self._release_from is not None:
            out = float((tips0[:, :2] - state.position[0, :2]).norm(dim=-1).min() - self._clear_radius)
            if out >= 0 or self._release_count >= s.release_steps:
                self._release_from = None
                self._cage_around(state)
                self._restart_plan()
                return self.plan(state, goal, hold_position)
            self._release_count += 1
            goal = self._release_from
        actions = self.plan_actions.clone()
        releasing = self._release_from is not None
        settling = not releasing and error < s.settle_error
        w_orientation = torch.tensor(s.w_orientation * (s.settle_weight if settling else 1.0), dtype=self.plan_dtype)
        release_flag = torch.tensor(releasing)
        for _ in range(s.iterations):
            actions.requires_grad_(True)
            cost = self._rollout_cost(state, kinematics, tips0, tips_jac, goal, hold, actions[None], release_flag,
                                      self._clear_radius, w_orientation)[0]
            (grad,) = torch.autograd.grad(cost, actions)
            with torch.no_grad():
                grad = torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)
                self._count += 1
                b1, b2 = s.betas
                self._m = b1 * self._m + (1 - b1) * grad
                self._v = b2 * self._v + (1 - b2) * grad.square().max()
                m_hat, v_hat = self._m / (1 - b1 ** self._count), self._v / (1 - b2 ** self._count)
                actions = (actions - s.step_size * m_hat / (v_hat.sqrt() + 1e-12)).clamp(-self.action_bound,
                                                                                         self.action_bound)
            self.last_cost = float(cost.detach())
        first = actions[0].detach().clone()
        if s.max_lead > 0:  # keep the commanded targets within max_lead of the measured joints
            lead = state.hand_target[0] + first - state.hand[0]
            first = (first - lead + lead.clamp(-s.max_lead, s.max_lead)).clamp(-self.action_bound, self.action_bound)
        self.plan_actions = torch.cat((actions[1:].detach(), torch.zeros_like(actions[:1])))
        self._m = torch.cat((self._m[1:], torch.zeros_like(self._m[:1])))
        if self.compiled and self.compile_seconds is None:
            self.compile_seconds = time.perf_counter() - start
        else:
            self.solve_times.append(time.perf_counter() - start)
        return first

    def _stalled(self, error: float) -> bool:
        """Whether the orientation error (this step's: `error`) has not fallen by regrasp_progress
        over the last regrasp_after planned steps (counting this one); never with regrasp_after 0."""
        if not self.settings.regrasp_after:
            return False
        if error < self._best_error - self.settings.regrasp_progress:
            self._best_error, self._stalled_for = error, 0
            return False
        self._stalled_for += 1
        if self._stalled_for < self.settings.regrasp_after:
            return False
        self._best_error, self._stalled_for = math.inf, 0
        return True

    def _cost(self, state: State, kinematics: HandKinematics, tips0, tips_jac, goal, hold, actions,
              releasing: torch.Tensor, clear_radius: torch.Tensor, w_orientation: torch.Tensor) -> torch.Tensor:
        """The costs (B,) (module doc) of the plans `actions` (B, H, 16) rad from `state` (batch B);
        tips0 (4, 3) m and tips_jac (4, 3, 16): the pads' centres and their Jacobians at kinematics.joints.
        While releasing (a bool tensor), the pads' term pushes them out to RELEASE_MARGIN past
        clear_radius m (the cage's: clear of the object at any yaw) from the object's vertical axis
        instead of drawing them to its centre.
        w_orientation: the orientation term's weight (a tensor: settling changes it, not the graph)."""
        s = self.settings
        total = s.w_action * actions.square().sum((1, 2))
        for t in range(actions.shape[1]):
            for i in range(self.substeps):
                action = actions[:, t] if i == 0 else torch.zeros_like(actions[:, t])
                state = step_prepared(self.model, self.prepared, state, action, kinematics)
            tips = tips0 + torch.einsum("ixj,bj->bix", tips_jac, state.hand - kinematics.joints)  # (B, 4, 3)
            dot = (state.quat * goal).sum(-1)
            offsets = tips - state.position[:, None]  # (B, 4, 3) m
            shortfall = clear_radius + RELEASE_MARGIN - offsets[..., :2].norm(dim=-1)
            reach = torch.where(releasing, s.w_release * torch.relu(shortfall).square().sum(-1),
                                s.w_fingertip * offsets.square().sum((1, 2)))
            total = total + (reach
                             + s.w_position * (state.position - hold).square().sum(-1)
                             + w_orientation * (1 - dot * dot))
        return total

    def _checked(self, state: State, goal, hold_position):
        check_state(state)
        if state.position.shape[0] != 1 or state.hand.shape[1] != len(self.model.hand.lower):
            raise ValueError(f"state: expected a batch of 1 with {len(self.model.hand.lower)} hand joints, "
                             f"got batch {state.position.shape[0]} and hand {tuple(state.hand.shape)}")
        dtype = self.plan_actions.dtype
        state = State(*(x.detach().to(dtype) for x in state))
        goal = torch.as_tensor(goal, dtype=torch.float64).detach()
        if goal.shape != (4,) or not torch.isfinite(goal).all() or abs(float(goal.norm()) - 1.0) > 1e-3:
            raise ValueError(f"goal: expected a unit quaternion (w, x, y, z) of shape (4,), "
                             f"got {goal.tolist() if goal.numel() <= 8 else tuple(goal.shape)}")
        if hold_position is None:
            hold = state.position[0]
        else:
            hold = torch.as_tensor(hold_position, dtype=torch.float64).detach()
            if hold.shape != (3,) or not torch.isfinite(hold).all():
                raise ValueError(f"hold_position: expected 3 finite numbers (m), got {hold.tolist()}")
        return state, (goal / goal.norm()).to(dtype), hold.to(dtype)
