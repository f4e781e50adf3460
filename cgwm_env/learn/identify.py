"""Physical parameters fitted in state space to a tracked trajectory, by multiple shooting.

The clip is cut into short windows of `window` frames that overlap by one frame. Every window starts
from the tracked pose of its first frame with a velocity of its own (initialised from the tracked
poses by central differences) and is simulated to its end; all windows run as one batch. The loss is
the windows' pose error against the track, plus a continuity penalty between each window's end state
and the next window's start, plus weak priors holding the start velocities near the tracked ones and
the contact gains near their initial values.
Adam fits mu, log stiffness and log damping together with the windows' start velocities. Short windows
keep the problem well conditioned where backpropagation through a whole contact-rich clip is not; the
free start velocities absorb what finite differences get wrong at an impact.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from cgwm_env.checks import check_count
from cgwm_env.learn.track import Track
from cgwm_env.learn.world_model import predict_states
from cgwm_env.physics import math3d
from cgwm_env.physics.model import Model, PhysicalParams, State

IDENTIFIED = ("mu", "stiffness", "damping")


@dataclass(frozen=True)
class IdentifySettings:
    """window: frames per shooting window (>= 2); iterations: Adam steps; lr: step on softplus^-1 mu, log
    stiffness and log damping; lr_velocity: step on the start velocities in units of their scales;
    position_scale (m), rotation_scale (rad), velocity_scale (m/s), spin_scale (rad/s): the error that
    counts as one unit in the loss; continuity: weight of the continuity penalty; prior: weight of the
    contact gains' pull to their initial values, per unit of log; measured: weight of the start
    velocities' pull to the tracked ones, per unit of scale; parameters: which of IDENTIFIED are fitted."""

    window: int = 5
    iterations: int = 100
    lr: float = 0.05
    lr_velocity: float = 0.05
    position_scale: float = 0.002
    rotation_scale: float = 0.05
    velocity_scale: float = 0.05
    spin_scale: float = 1.0
    continuity: float = 0.5
    prior: float = 0.1
    measured: float = 0.5
    parameters: tuple = IDENTIFIED

    def __post_init__(self):
        for name, least in (("window", 2), ("iterations", 0)):
            check_count(getattr(self, name), name, least)
        for name in ("lr", "lr_velocity", "position_scale", "rotation_scale", "velocity_scale", "spin_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: expected a positive number, got {getattr(self, name)!r}")
        for name in ("continuity", "prior", "measured"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}: expected a weight >= 0, got {getattr(self, name)!r}")
        names = tuple(self.parameters) if isinstance(self.parameters, (list, tuple)) else ()
        if not set(names) <= set(IDENTIFIED):
            raise ValueError(f"parameters: expected some of {IDENTIFIED}, got {self.parameters!r}")
        object.__setattr__(self, "parameters", names)


def track_velocities(track: Track, fps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Linear (T, 3) m/s and world angular (T, 3) rad/s velocities of a track by central differences
    (one-sided at its ends)."""
    T = track.position.shape[0]
    index = torch.arange(T)
    before, after = (index - 1).clamp(min=0), (index + 1).clamp(max=T - 1)
    span = ((after - before).to(track.position.dtype) / fps).clamp(min=1e-12)[:, None]
    velocity = (track.position[after] - track.position[before]) / span
    turn = math3d.quat_mul(track.quat[after], math3d.quat_conj(track.quat[before]))
    return velocity, math3d.quat_log(math3d.quat_normalize(turn)) / span


def rotation_distance2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """4 (1 - <a, b>^2), about the squared angle between unit quaternions for small angles, and smooth
    where they agree (..,)."""
    dot = (a * b).sum(-1)
    return 4.0 * (1.0 - dot * dot)


def stable_gains(log_stiffness: torch.Tensor, log_damping: torch.Tensor, dt: float) -> None:
    """Clamp effective-mass gains in place to where a step of dt is stable (damping dt < 2,
    stiffness dt^2 < 4 - 2 damping dt), with 10% to spare, and above 1/s^2 and 0.1/s."""
    log_damping.clamp_(math.log(0.1), math.log(0.9 * 2.0 / dt))
    limit = 0.9 * (4.0 - 2.0 * float(log_damping.exp()) * dt) / dt**2
    log_stiffness.clamp_(0.0, math.log(limit))


def identify(model: Model, tracks: list[Track], fps: float, substeps: int, pushers: list | None = None,
             frames: list[int] | None = None, settings: IdentifySettings = IdentifySettings(),
             log=None) -> tuple[PhysicalParams, dict]:
    """Fit model.params' mu, stiffness and damping (effective-mass gains) to tracks of the object (one
    per clip) at `fps` frames per second, simulated at dt = 1 / (fps substeps) (model.dt). pushers: per
    clip (positions (T, 3) m at the frames, velocities (T - 1, 3) m/s to the next) or None; frames: per
    clip, how many first frames to fit (the rest held out), or None for all. Returns the fitted
    PhysicalParams and a report (the loss per iteration, each fitted parameter's log_standard_errors, each
    clip's first window's fitted velocity)."""
    if model.contact.gain_mode != "effective_mass":
        raise ValueError(f"model.contact.gain_mode: identification fits effective-mass gains, got "
                         f"{model.contact.gain_mode!r}")
    W = settings.window
    pushers = pushers or [None] * len(tracks)
    windows = []  # per window: (first frame, clip index)
    for c, track in enumerate(tracks):
        T = track.position.shape[0] if frames is None else min(frames[c], track.position.shape[0])
        if T < 2:
            raise ValueError(f"frames: expected at least 2 tracked frames to fit, got {T}")
        windows += [(f, c, T) for f in range(0, T - 1, W - 1)]
    offsets = torch.arange(W)
    first = torch.tensor([w[0] for w in windows])
    frame = [(w[0] + offsets).clamp(max=w[2] - 1) for w in windows]
    valid = torch.stack([((w[0] + offsets) < w[2]) for w in windows]).to(tracks[0].position.dtype)
    position = torch.stack([tracks[w[1]].position.detach()[f] for w, f in zip(windows, frame)])  # (K, W, 3)
    quat = torch.stack([math3d.quat_normalize(tracks[w[1]].quat.detach()[f]) for w, f in zip(windows, frame)])
    rates = [track_velocities(t, fps) for t in tracks]
    scale = settings
    measured_velocity = torch.stack([rates[w[1]][0][w[0]] for w in windows]) / scale.velocity_scale
    measured_spin = torch.stack([rates[w[1]][1][w[0]] for w in windows]) / scale.spin_scale
    start_velocity, start_spin = measured_velocity.clone().requires_grad_(), measured_spin.clone().requires_grad_()
    pusher_start = pusher_velocity = None
    if pushers[0] is not None:
        pusher_start = torch.stack([pushers[w[1]][0][w[0]] for w in windows])
        padded = [torch.cat((p[1], p[1].new_zeros(W, 3))) for p in pushers]
        pusher_velocity = torch.stack([padded[w[1]][w[0] + offsets[:-1]] for w in windows])  # (K, W - 1, 3)
    # Continuity links a window's end to the next window of the same clip.
    follows = torch.tensor([k + 1 < len(windows) and windows[k + 1][1] == windows[k][1] for k in range(len(windows))])
    p = model.params
    leaves = {"mu": p.mu_raw.detach().clone(), "stiffness": p.log_stiffness.detach().clone(),
              "damping": p.log_damping.detach().clone()}
    initial = {name: value.clone() for name, value in leaves.items()}
    for name in settings.parameters:
        leaves[name].requires_grad_()
    optimizer = torch.optim.Adam([{"params": [leaves[n] for n in settings.parameters], "lr": settings.lr},
                                  {"params": [start_velocity, start_spin], "lr": settings.lr_velocity}])

    def windows_error(params: PhysicalParams, start: State) -> tuple[State, torch.Tensor]:
        """The windows simulated from `start` (K windows of W frames) and their pose error against the
        track per frame (K, W), in units of position_scale and rotation_scale, squared."""
        states = predict_states(dataclasses.replace(model, params=params), start, W, substeps, pusher_velocity)
        return states, (((states.position - position).norm(dim=-1) / scale.position_scale) ** 2
                        + rotation_distance2(states.quat, quat) / scale.rotation_scale**2)

    history = []
    for it in range(settings.iterations + 1):
        params = PhysicalParams(p.log_mass, p.inertia_factor, leaves["mu"], leaves["stiffness"], leaves["damping"])
        start = State.make(position[:, 0], quat=quat[:, 0], velocity=start_velocity * scale.velocity_scale,
                           omega=start_spin * scale.spin_scale, pusher=pusher_start)
        states, error = windows_error(params, start)
        fit = (error * valid).sum() / valid.sum()
        continuity = fit.new_zeros(())
        if follows.any():
            end = State(*(x[follows, -1] for x in states))
            after = torch.nonzero(follows)[:, 0] + 1
            continuity = (((end.velocity - start.velocity[after]).norm(dim=-1) / scale.velocity_scale) ** 2
                          + ((end.omega - start.omega[after]).norm(dim=-1) / scale.spin_scale) ** 2).mean()
        prior = sum(((leaves[n] - initial[n]) ** 2).sum() for n in ("stiffness", "damping"))
        measured = (((start_velocity - measured_velocity) ** 2).sum(-1) + ((start_spin - measured_spin) ** 2).sum(-1)).mean()
        loss = fit + settings.continuity * continuity + settings.prior * prior + settings.measured * measured
        record = {"stage": "identify", "iteration": it, "loss": float(loss.detach()), "fit": float(fit.detach()),
                  "continuity": float(continuity.detach()), "mu": float(params.mu.detach()),
                  "stiffness": float(params.stiffness.detach()),
                  "damping": float(params.damping.detach())}
        history.append(record)
        if log is not None:
            log(record)
        if not torch.isfinite(loss):
            raise ValueError(f"identification went non-finite at iteration {it}")
        if it == settings.iterations:
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            stable_gains(leaves["stiffness"], leaves["damping"], model.dt)
    fitted = PhysicalParams(p.log_mass, p.inertia_factor, *(leaves[n].detach() for n in IDENTIFIED))

    @torch.no_grad()
    def misfit(params: PhysicalParams) -> float:  # the summed pose error of the windows at their fitted starts
        return float((windows_error(params, start)[1] * valid).sum())

    firsts = [k for k, w in enumerate(windows) if w[0] == 0]
    errors = log_standard_errors(fitted, misfit, float(valid[:, 1:].sum()), settings.parameters)
    report = {"history": history, "windows": len(windows), "log_standard_error": errors,
              "start_velocity": [(start_velocity[k].detach() * scale.velocity_scale).tolist() for k in firsts],
              "start_spin": [(start_spin[k].detach() * scale.spin_scale).tolist() for k in firsts]}
    return fitted, report


def log_standard_errors(params: PhysicalParams, misfit, count: float, names, step: float = 0.1) -> dict:
    """How well the data determine each of `names` (some of IDENTIFIED) at `params`: the standard error of
    its logarithm, sqrt(2 s / c), from the curvature c of misfit(params) (a sum of `count` squared errors)
    along that logarithm by central differences of `step`, with the noise variance read off the residual,
    s = misfit(params) / count, and the other variables held. 0.1 means about +-10%; near 1 or above,
    the clips barely tell it."""
    base = misfit(params)
    errors = {}
    for name in names:
        curvature = (misfit(_scaled(params, name, math.exp(step))) - 2.0 * base
                     + misfit(_scaled(params, name, math.exp(-step)))) / step**2
        errors[name] = math.sqrt(2.0 * base / (count * curvature)) if curvature > 0 else math.inf
    return errors


def _scaled(params: PhysicalParams, name: str, factor: float) -> PhysicalParams:
    """params with mu, stiffness or damping (`name`) times `factor`."""
    if name == "mu":
        return dataclasses.replace(params, mu_raw=torch.log(torch.expm1(params.mu * factor)))
    field = {"stiffness": "log_stiffness", "damping": "log_damping"}[name]
    return dataclasses.replace(params, **{field: getattr(params, field) + math.log(factor)})
