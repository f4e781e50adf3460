"""Stage II, phys-geo refinement (paper section III-D, appendix E): learn theta = (mass and
inertia, mu, K, D) and fine-tune the Gaussians' geometry from video, by backpropagation through
the simulator and the renderer.

1. The clip's initial state is estimated from its own images, parameters frozen (appendix E):
   the pose by aligning renders with the first frame (orientations sampled, the best refined by
   gradient descent on the image and mask error), then, where nothing pushes the object, the
   velocity from the first three frames (a ballistic fit of the poses aligned in frames 1 and 2,
   refined through the simulator); a clip at rest is slid along the camera ray onto its support.
2. theta (LearnSettings.parameters, by default mu, K and D) and, with lr_geometry > 0, the
   geometry (sphere centres and scales) are fitted with Adam on the unconstrained parameters so
   that the rendered prediction matches the clip: loss (1 - l) L1 + l S per frame,
   S = D-SSIM (default) or a LoFTR feature distance (local LoFTR weights). Gradients run through
   time over the clip, cut every `window` frames (truncated BPTT). The image loss reaches the
   geometry only through the simulator: the renderer sees detached centres and scales (paper
   section III-D-4).

`cgwm learn --data DIR --gaussians FILE --out MODEL` (cgwm_env.learn.run) runs it on a folder of clips and saves a
WorldModel bundle (cgwm_env.learn.world_model), a per-iteration log (loss, PSNR, parameters) and its
picture, learning.png (cgwm_env.learn.plots).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time

import numpy as np
import torch

from cgwm_env import progress as progress_lines
from cgwm_env.learn.clips import FREE_INITIAL, LEAP_INITIAL, Clip, leap_model_kwargs, paste_recorded_hand
from cgwm_env.learn.identify import IdentifySettings, identify, rotation_distance2, stable_gains, track_velocities
from cgwm_env.learn.initial_state import estimate_initial_state, estimate_leap_state
from cgwm_env.learn.losses import ImageLoss
from cgwm_env.learn.settings import PARAMETERS, LearnSettings
from cgwm_env.learn.stage1 import volume_inertia
from cgwm_env.learn.track import Track, TrackSettings, pose_errors, track_clip
from cgwm_env.learn.world_model import WorldModel, params_values, predict_hand_states, predict_states, render_states
from cgwm_env.physics import math3d
from cgwm_env.physics.collision import SoftSDFSettings
from cgwm_env.physics.gaussians import SphereGaussians
from cgwm_env.physics.model import Model, PhysicalParams, State
from cgwm_env.render.metrics import psnr


def initial_params(gaussians: SphereGaussians, mass: float, mu: float, stiffness: float, damping: float) -> PhysicalParams:
    """PhysicalParams with the inertia of `mass` spread over the Gaussians' solid (volume_inertia)."""
    return PhysicalParams.from_values(mass, volume_inertia(gaussians, mass), mu, stiffness, damping)


def clip_model(gaussians: SphereGaussians, params: PhysicalParams, clip: Clip, substeps: int, **kwargs) -> Model:
    """The simulator Model for a clip: dt = 1 / (fps substeps), the clip's pusher as one query sphere."""
    if clip.pusher_radius is not None:
        kwargs.setdefault("pusher_points", torch.zeros(1, 3))
        kwargs.setdefault("pusher_radii", torch.tensor([clip.pusher_radius]))
    return Model(gaussians, params, dt=1.0 / (clip.fps * substeps), **kwargs)


def learn(gaussians: SphereGaussians, clips: list[Clip], params: PhysicalParams,
          settings: LearnSettings = LearnSettings(), progress: bool = True, log=None,
          model_kwargs: dict | None = None, starts: list[State] | None = None) -> tuple[WorldModel, list[dict]]:
    """Stage II on `clips` from stage I's `gaussians` and initial `params`. Returns the learned
    WorldModel (the iterate with the lowest training loss; its info holds the initial states; if
    a step makes a rollout non-finite, learning stops there and info["stopped"] says where) and
    the history, one dict per iteration (loss, psnr dB, parameter values). `log`: a writable
    text file that gets one JSON line per iteration. `starts`: the clips' initial states (batch
    1 each) where they are known; by default they are estimated from the images
    (estimate_initial_state). model_kwargs: other Model fields (contact, hand, ...; an sdf there
    replaces settings.sdf_beta's)."""
    if not clips:
        raise ValueError("clips: expected at least one training clip, got none")
    if not isinstance(params, PhysicalParams) or params.log_mass.ndim != 0:
        raise ValueError("params: expected unbatched PhysicalParams (scalars and a 3x3 inertia factor)")
    fps = {c.fps for c in clips}
    pusher = {c.pusher_radius for c in clips}
    if len(fps) != 1 or len(pusher) != 1:
        raise ValueError(f"clips: expected one frame rate and one pusher radius, got {sorted(fps)} and {pusher}")
    model_kwargs = {"sdf": SoftSDFSettings(beta=settings.sdf_beta), **(model_kwargs or {})}
    model_kwargs = leap_model_kwargs(clips, model_kwargs)  # the hand, for LEAP Hand clips
    start_time = time.perf_counter()
    base = clip_model(gaussians, params, clips[0], settings.substeps, **model_kwargs)
    if starts is None:
        starts, reports = estimate_starts(base, clips, settings, progress)
    else:
        if len(starts) != len(clips) or not all(isinstance(s, State) and s.position.shape == (1, 3) for s in starts):
            raise ValueError(f"starts: expected one State of batch 1 per clip ({len(clips)}), got {starts!r}")
        reports = [{"clip": c.path, "position": s.position[0].tolist(), "quat": s.quat[0].tolist(),
                    "velocity": s.velocity[0].tolist(), "omega": s.omega[0].tolist(), "given": True}
                   for c, s in zip(clips, starts)]
    init_seconds = time.perf_counter() - start_time

    params, start_moved = feasible_start(params, base, settings)
    learned = {i for name in settings.parameters for i in PARAMETERS[name]}
    leaves = [t.detach().clone().requires_grad_(i in learned) for i, t in enumerate(to_leaves(params))]
    centers0, log_scales0 = gaussians.centers.detach(), gaussians.log_scales.detach()
    centers = centers0.clone().requires_grad_(settings.lr_geometry > 0)
    log_scales = log_scales0.clone().requires_grad_(settings.lr_geometry > 0)
    groups = [{"params": [leaf for leaf in leaves if leaf.requires_grad], "lr": settings.lr}]
    if settings.lr_geometry > 0:
        groups += [{"params": [centers], "lr": settings.lr_geometry},
                   {"params": [log_scales], "lr": settings.lr_geometry / float(gaussians.scales.median())}]
    opt = torch.optim.Adam(groups)
    loss_fn = ImageLoss(settings)
    history, best, stopped = [], None, None
    with progress_lines.bar(settings.iterations, "stage II", unit="iteration", enabled=progress) as bar:
        for it in range(settings.iterations + 1):
            g = SphereGaussians(centers, log_scales, gaussians.opacity_logits.detach(), gaussians.colors.detach())
            model = clip_model(g, from_leaves(leaves), clips[0], settings.substeps, **model_kwargs)
            try:  # the inputs were checked by iteration 0; later, only a step of theta can make a state NaN
                total, psnrs = clips_loss(model, clips, starts, settings, loss_fn)
            except ValueError as err:
                if it == 0:
                    raise diverged_start(err, model, settings)
                stopped = f"iteration {it}: the rollout went non-finite ({err})"
                break
            if not torch.isfinite(total):
                if it == 0:
                    raise ValueError("params: the initial parameters give a non-finite image loss")
                stopped = f"iteration {it}: non-finite image loss"
                break
            record = {"iteration": it, "loss": float(total.detach()), "psnr": float(np.mean(psnrs)),
                      **{k: v for k, v in params_values(model.params).items() if k != "inertia"},
                      "seconds": time.perf_counter() - start_time}
            history.append(record)
            if log is not None:
                log.write(json.dumps(record) + "\n")
                log.flush()
            if best is None or record["loss"] < best[0]:
                best = (record["loss"], [t.detach().clone() for t in leaves], centers.detach().clone(),
                        log_scales.detach().clone(), it)
            if it == settings.iterations:
                break
            opt.zero_grad()
            total.backward()
            opt.step()
            project_iterate(leaves, centers, log_scales, centers0, log_scales0, settings, model)
            bar.update()
            bar.set_postfix(loss=f"{record['loss']:.4f}", psnr=f"{record['psnr']:.2f}", mu=f"{record['mu']:.3f}")
    _, best_leaves, best_centers, best_scales, best_it = best
    learned = SphereGaussians(best_centers, best_scales, gaussians.opacity_logits.detach(), gaussians.colors.detach())
    model = clip_model(learned, from_leaves(best_leaves), clips[0], settings.substeps, **model_kwargs)
    info = {"object": clips[0].object, "scenario": clips[0].scenario, "clips": [c.path for c in clips],
            "fps": clips[0].fps, "substeps": settings.substeps, "initial_states": reports,
            "settings": dataclasses.asdict(settings), "best_iteration": best_it, "stopped": stopped,
            "start_moved": start_moved, "initial_state_seconds": init_seconds, "seconds": time.perf_counter() - start_time,
            "geometry_shift_max_m": float((best_centers - centers0).norm(dim=1).max())}
    wm = WorldModel.from_model(model, initial_params=params, info=info)
    return dataclasses.replace(wm, initial_gaussians=SphereGaussians(*(t.detach() for t in gaussians.tensors()))), history


def estimate_starts(base: Model, clips: list[Clip], settings: LearnSettings,
                    progress: bool = True) -> tuple[list[State], list[dict]]:
    """Each clip's initial state (batch 1) estimated from its images with `base`'s parameters
    (estimate_leap_state for LEAP Hand clips, else estimate_initial_state), and each estimate's
    report; says so while it runs where `progress`."""
    starts, reports = [], []
    with progress_lines.bar(len(clips), "stage II: initial states from the first frames", unit="clip",
                            enabled=progress) as bar:
        for clip in clips:
            estimate = estimate_leap_state if clip.joint_target is not None else estimate_initial_state
            state, report = estimate(base, clip, settings)
            starts.append(state)
            reports.append({"clip": clip.path, **report})
            bar.update()
    return starts, reports


def fit_world_model(gaussians: SphereGaussians, clips: list[Clip], params: PhysicalParams,
                    settings: LearnSettings = LearnSettings(), progress=None, log=None,
                    model_kwargs: dict | None = None) -> tuple[WorldModel, list[dict]]:
    """Stage II on clips of a free object (a fall, a drop, a push): track, identify, refine, select.

    1. track: the object's pose in every frame (learn.track), against the ground plane z = 0;
    2. identify: mu, stiffness and damping fitted to the tracks in state space by multiple shooting
       (learn.identify) on the fitted part of the data;
    3. refine: the paper's image-space learning from there (learn(), short windows, the tracked start);
    4. select: the initial, identified and refined parameters each predict the held-out data open
       loop from the tracked start; the fitted one closest to the track is kept if it is closer than
       the initial parameters and identification determined every parameter it fitted (log standard
       error below `settings.determined`), or if it cuts the initial parameters' error by
       `settings.min_gain`; else the initial parameters are kept.
    Held out: every third clip when there are three or more, else the last `settings.holdout` of
    each clip's frames. Returns the WorldModel (info: tracks, each candidate's validation error, the
    one kept) and the history (one record per identification and refinement iteration)."""
    if not clips:
        raise ValueError("clips: expected at least one training clip, got none")
    for clip in clips:
        clip.require_on_clock(settings.substeps, "stage II for a free object (track, identify)")
    start_time = time.perf_counter()
    say = progress or (lambda message: None)
    model_kwargs = {"sdf": SoftSDFSettings(beta=settings.sdf_beta), **(model_kwargs or {})}
    base = clip_model(gaussians, params, clips[0], settings.substeps, **model_kwargs)
    track_settings = TrackSettings(candidates=settings.candidates, iterations=settings.track_iterations,
                                   seed=settings.seed)
    tracks, track_reports = [], []
    for k, clip in enumerate(clips):
        say(f"tracking clip {k + 1} of {len(clips)} ({len(clip)} frames)")
        track = track_clip(gaussians, clip, track_settings, ground=base.ground_height)
        tracks.append(track)
        report = {"clip": clip.path, "loss": float(track.loss.mean()), "iou_min": float(track.iou.min())}
        if clip.truth is not None:
            trans, rot = pose_errors(track, clip.truth.position[0], clip.truth.quat[0])
            report.update(error_median_m=float(trans.median()), error_median_rad=float(rot.median()))
            say(f"tracked clip {k + 1} against its states.npz: median {float(trans.median()) * 1e3:.1f} mm, "
                f"{math.degrees(float(rot.median())):.1f} deg; first frame {float(trans[0]) * 1e3:.1f} mm, "
                f"{math.degrees(float(rot[0])):.1f} deg")
        track_reports.append(report)
    if len(clips) >= 3:
        held = held_out_clips(len(clips))
        fit_frames = [len(c) for c in clips]
        scored = {k: 0 for k in held}  # score held-out clips on every frame
    else:
        held = list(range(len(clips)))
        fit_frames = [max(2, math.ceil((1.0 - settings.holdout) * len(c))) for c in clips]
        scored = {k: fit_frames[k] for k in held}  # score each clip on its frames not fitted
    fitted = [k for k in range(len(clips)) if k not in held or len(clips) < 3]
    say(f"identifying {', '.join(IdentifySettings.parameters)} on {len(fitted)} clip(s)")
    history = []

    def record(entry):
        entry = {**entry, "seconds": time.perf_counter() - start_time}
        history.append(entry)
        if log is not None:
            log.write(json.dumps(entry) + "\n")
            log.flush()

    pushers = [_pusher_track(clips[k]) for k in fitted]
    identified, id_report = identify(base, [tracks[k] for k in fitted], clips[0].fps, settings.substeps,
                                     None if pushers[0] is None else pushers, [fit_frames[k] for k in fitted],
                                     IdentifySettings(iterations=settings.identify_iterations,
                                                      window=settings.identify_window), log=record)
    starts = [_tracked_start(tracks[k], clips[k]) for k in range(len(clips))]
    for k, velocity, spin in zip(fitted, id_report["start_velocity"], id_report["start_spin"]):
        starts[k] = starts[k]._replace(velocity=torch.tensor([velocity]), omega=torch.tensor([spin]))
    candidates = {"initial": (params, gaussians), "identified": (identified, gaussians)}
    if settings.iterations > 0:
        say(f"refining in image space for {settings.iterations} iterations")
        refined, refine_history = learn(gaussians, [clips[k] for k in fitted], identified, settings,
                                        progress=progress is not None, model_kwargs=model_kwargs,
                                        starts=[starts[k] for k in fitted])
        for entry in refine_history:
            record({"stage": "refine", **entry})
        candidates["refined"] = (refined.params, refined.gaussians)
    errors = {}
    for name, (p, g) in candidates.items():
        model = clip_model(g, p, clips[0], settings.substeps, **model_kwargs)
        errors[name] = float(np.mean([_held_out_error(model, clips[k], starts[k], tracks[k], scored[k],
                                                      settings.substeps) for k in held]))
    kept = kept_candidate(errors, id_report["log_standard_error"], settings)
    say("held-out error: " + ", ".join(f"{n} {e:.3f}" for n, e in errors.items()) + f"; kept {kept}")
    p, g = candidates[kept]
    model = clip_model(g, p, clips[0], settings.substeps, **model_kwargs)
    info = {"object": clips[0].object, "scenario": clips[0].scenario, "clips": [c.path for c in clips],
            "fps": clips[0].fps, "substeps": settings.substeps, "settings": dataclasses.asdict(settings),
            "tracks": track_reports, "held_out": [clips[k].path for k in held], "fit_frames": fit_frames,
            "validation_error": errors, "kept": kept,
            "refined_iteration": refined.info["best_iteration"] if "refined" in candidates else None,
            "initial_states": [{"clip": c.path, "position": s.position[0].tolist(), "quat": s.quat[0].tolist(),
                                "velocity": s.velocity[0].tolist(), "omega": s.omega[0].tolist()}
                               for c, s in zip(clips, starts)],
            "identified": {k: v for k, v in params_values(identified).items() if k != "inertia"},
            "identified_log_standard_error": {name: error if math.isfinite(error) else None  # JSON has no inf
                                              for name, error in id_report["log_standard_error"].items()},
            "seconds": time.perf_counter() - start_time}
    wm = WorldModel.from_model(model, initial_params=params, info=info)
    return dataclasses.replace(wm, initial_gaussians=SphereGaussians(*(t.detach() for t in gaussians.tensors()))), history


def kept_candidate(errors: dict, log_standard_errors: dict, settings: LearnSettings) -> str:
    """The candidate to keep from held-out `errors` (name -> error, "initial" among them): the fitted one
    with the lowest error if it beats the initial one and identification's `log_standard_errors` are all
    below settings.determined, or if it cuts the initial error by settings.min_gain; else "initial"."""
    best = min((name for name in errors if name != "initial"), key=errors.get)
    determined = all(error < settings.determined for error in log_standard_errors.values())
    needed = 0.0 if determined else settings.min_gain
    return best if errors[best] < (1.0 - needed) * errors["initial"] else "initial"


def _pusher_track(clip: Clip):
    """The pusher's positions at the frames (T, 3) and velocities to the next (T - 1, 3), or None."""
    return None if clip.pusher_start is None else (clip.pusher_positions(), clip.pusher_velocity)


def _tracked_start(track: Track, clip: Clip) -> State:
    """The state at frame 0 (batch 1): the tracked pose, velocities by differences of the first frames."""
    velocity, spin = track_velocities(Track(*(x[:3] for x in track)), clip.fps)
    pusher = None if clip.pusher_start is None else clip.pusher_start[None]
    return State.make(track.position[:1], quat=track.quat[:1], velocity=velocity[:1], omega=spin[:1], pusher=pusher)


@torch.no_grad()
def _held_out_error(model: Model, clip: Clip, start: State, track: Track, first: int, substeps: int) -> float:
    """Mean over frames first.. of |position error| / 1 cm + rotation error / 0.1 rad of the model's open-loop
    prediction from `start` against the track (a prediction that goes non-finite scores infinity)."""
    actions = None if clip.pusher_velocity is None else clip.pusher_velocity[None]
    states = predict_states(model, start, len(clip), substeps, actions)
    if not (torch.isfinite(states.position).all() and torch.isfinite(states.quat).all()):
        return math.inf
    trans = (states.position[0, first:] - track.position[first:]).norm(dim=-1) / 0.01
    rot = rotation_distance2(math3d.quat_normalize(states.quat[0, first:]), track.quat[first:]).clamp(min=0).sqrt() / 0.1
    return float((trans + rot).mean())


def clips_loss(model: Model, clips: list[Clip], starts: list[State], settings: LearnSettings, loss_fn):
    """The image loss (a scalar tensor) averaged over the clips, and each clip's PSNR (dB), over
    frames 1..T-1 but the off-clock ones (Clip.scored)."""
    total, psnrs = 0.0, []
    for clip, pred in zip(clips, _predict_images(model, clips, starts, settings.substeps, settings.window)):
        scored = clip.scored()[1:]
        pred, target = pred[scored], clip.images[1:][scored]
        total = total + loss_fn(pred, target).mean() / len(clips)
        psnrs.append(float(psnr(pred.detach(), target).mean()))
    return total, psnrs


class DivergedRollout(ValueError):
    """A predicted rollout went non-finite: contact gains too stiff or damped for the step."""


def diverged_start(err: ValueError, model: Model, settings: LearnSettings) -> ValueError:
    """The error to raise when the first iterate's loss fails with `err`: a DivergedRollout
    becomes a ValueError naming the initial parameters and the units their contact gains take;
    any other error is `err` itself."""
    if not isinstance(err, DivergedRollout):
        return err
    v = params_values(model.params)
    text = (f"params: the initial parameters (mass {v['mass']:.4g} kg, mu {v['mu']:.3g}, stiffness "
            f"{v['stiffness']:.4g}, damping {v['damping']:.4g}) make {err}")
    if model.contact.gain_mode == "plain" and model.hand is not None:
        text += (f"; the LEAP Hand's contacts take plain gains (stiffness N/m, damping N s/m; default start "
                 f"{LEAP_INITIAL}), and damping <= {plain_damping_limit(model, model.params, settings):.3g} N s/m "
                 f"keeps all its contact rows stable at this mu")
    else:
        text += f"; with {model.contact.gain_mode} gains start nearer the default {FREE_INITIAL}"
    return ValueError(text)


def feasible_start(params: PhysicalParams, model: Model, settings: LearnSettings) -> tuple[PhysicalParams, dict]:
    """`params` moved into the set every iterate's gains are kept in (project_gains: with plain gains and
    the hand, the damping under plain_damping_limit), so that learning, and No_opt, start from a stable
    model; and what moved, {name: [given, used]} (empty: `params` itself is returned)."""
    leaves = [t.detach().clone() for t in to_leaves(params)]
    project_gains(leaves, settings, model)
    used = from_leaves(leaves)
    given, kept = params_values(params), params_values(used)
    moved = {name: [given[name], kept[name]] for name in ("stiffness", "damping")
             if not math.isclose(given[name], kept[name], rel_tol=1e-6)}
    return (used, moved) if moved else (params, {})


def say_caught(info: dict) -> None:
    """Print to stderr what learning caught (its bundle's `info`): a start moved into the stable range
    (feasible_start), and with held-out clips (leap.learn_leap) steps undone and iterates refused."""
    for name, (given, used) in info["start_moved"].items():
        print(f"stage II: started from {name} {used:.4g}, not the given {given:.4g}: the most at which its contacts "
              f"stay stable (learning keeps every iterate within it)", file=sys.stderr)
    for retry in info.get("retries", []):
        print(f"stage II: iteration {retry['iteration']} {retry['action']} (step now {retry['lr']:.3g})", file=sys.stderr)
    for rejected in info.get("rejected", []):
        print(f"stage II: iteration {rejected['iteration']} refused as implausible: "
              f"{', '.join(rejected['implausible'])}", file=sys.stderr)


def plain_damping_limit(model: Model, params: PhysicalParams, settings: LearnSettings) -> float:
    """With plain gains and the hand, the damping D (N s/m) at which the hand's n = max_contacts
    n_dirs contact rows, each along n - mu d, reach n (1 + mu^2) D dt / m = max_stiffness_damping."""
    rows = model.hand.max_contacts * model.contact.n_dirs * (1.0 + float(params.mu.detach()) ** 2)
    return settings.max_stiffness_damping * float(params.mass.detach()) / (rows * model.dt)


def to_leaves(params: PhysicalParams) -> list[torch.Tensor]:
    """The learned variables: log mass, the inertia factor's log diagonal (3,) and its strict
    lower triangle (3,) relative to the diagonal's geometric mean (PhysicalParams keeps those in
    absolute units, where one Adam step would swamp a small diagonal), softplus^-1 mu, log
    stiffness, log damping."""
    raw = params.inertia_factor.detach()
    log_diag = raw.diagonal()
    rows, cols = torch.tril_indices(3, 3, -1)
    relative = raw[rows, cols] / log_diag.mean().exp()
    return [params.log_mass, log_diag, relative, params.mu_raw, params.log_stiffness, params.log_damping]


def from_leaves(leaves: list[torch.Tensor]) -> PhysicalParams:
    """PhysicalParams of the variables of to_leaves (differentiable)."""
    log_mass, log_diag, relative, mu_raw, log_k, log_d = leaves
    rows, cols = torch.tril_indices(3, 3, -1)
    lower = torch.zeros(3, 3, dtype=log_diag.dtype).index_put((rows, cols), relative * log_diag.mean().exp())
    return PhysicalParams(log_mass, lower + torch.diag(log_diag), mu_raw, log_k, log_d)


def _predict_images(model: Model, clips: list[Clip], starts: list[State], substeps: int, window: int) -> list[torch.Tensor]:
    """Each clip's rendered prediction of frames 1..T-1 (T - 1, H, W, 3) from its start (batch 1),
    `substeps` physics steps per 1/fps, each frame at its recorded time (Clip.step_counts). Free-object
    clips that share a frame schedule are simulated as one batch (a step costs about the same for a
    few rows as for one)."""
    images: list = [None] * len(clips)
    schedules: dict = {}
    for i, clip in enumerate(clips):
        if clip.joint_target is not None:
            images[i] = predict_leap_images(model, clip, starts[i], substeps, window)
        else:
            schedules.setdefault(tuple(clip.step_counts(substeps)), []).append(i)
    for counts, members in schedules.items():
        start = State(*(torch.cat(parts) for parts in zip(*(starts[i] for i in members))))
        pushed = clips[members[0]].pusher_velocity is not None  # learn() takes clips of one pusher radius
        actions = torch.stack([clips[i].pusher_velocity for i in members]) if pushed else None
        states = predict_states(model, start, len(counts) + 1, list(counts), actions, detach_every=window)
        for row, i in enumerate(members):
            clip = clips[i]
            one = _finite(State(*(x[row:row + 1] for x in states)), clip)
            pushers = clip.pusher_positions()
            images[i] = render_states(model.gaussians, one.position[0, 1:], one.quat[0, 1:], clip.camera,
                                      clip.background, None if pushers is None else pushers[1:], clip.pusher_look())
    return images


def held_out_clips(count: int) -> list[int]:
    """The indices of the clips held out to choose what is kept, of `count` >= 3: every third."""
    return [k for k in range(count) if k % 3 == 2]


@torch.no_grad()
def project_gains(leaves, settings: LearnSettings, model: Model) -> None:
    """Keep an iterate's contact gains (to_leaves' variables, in place) valid: effective-mass gains where a
    step is stable (identify.stable_gains); with plain gains and the hand, n (1 + mu^2) D dt / m <=
    max_stiffness_damping for the n = max_contacts n_dirs rows of the hand's contacts, each along
    n - mu d (their damping, summed, overshoots above it: a learned cube resting on the palm crept
    1.6-4 mm in 2 s at mu 0.53, D 0.72 N s/m and at mu 1.16, D 0.475, not at all at D 0.2)."""
    log_k, log_d = leaves[4], leaves[5]
    if model.contact.gain_mode == "effective_mass":
        stable_gains(log_k, log_d, model.dt)
    elif model.hand is not None:
        log_d.clamp_(max=math.log(plain_damping_limit(model, from_leaves(leaves), settings)))


@torch.no_grad()
def project_iterate(leaves, centers, log_scales, centers0, log_scales0, settings: LearnSettings, model: Model) -> None:
    """Keep the iterate valid: its gains (project_gains); centres within max_shift of stage I's, scales
    within a fraction max_scale_change of stage I's."""
    project_gains(leaves, settings, model)
    if settings.lr_geometry == 0:  # frozen: writing them would rebuild the geometry's grids (Model._of_geometry)
        return
    shift = centers - centers0
    norm = shift.norm(dim=1, keepdim=True).clamp(min=1e-12)
    centers.copy_(centers0 + shift * (settings.max_shift / norm).clamp(max=1.0))
    change = settings.max_scale_change
    log_scales.copy_(log_scales0 + (log_scales - log_scales0).clamp(math.log1p(-change), math.log1p(change)))


def _finite(states: State, clip: Clip) -> State:
    """`states` (batch 1, over the clip's frames); a DivergedRollout names the first non-finite frame."""
    finite = torch.isfinite(states.position[0]).all(-1) & torch.isfinite(states.quat[0]).all(-1)
    if not finite.all():
        raise DivergedRollout(f"the rollout of {clip.path} non-finite from frame {int((~finite).nonzero()[0, 0])}")
    return states


def predict_leap_images(model: Model, clip: Clip, start: State, substeps: int, window: int) -> torch.Tensor:
    """Frames 1..T-1 (T - 1, H, W, 3) predicted from `start` with the hand following the recorded
    joint targets, `substeps` physics steps per 1/fps, each frame at its recorded time
    (Clip.step_counts): the object drawn over the background, the hand's pixels from the recording."""
    states = _finite(predict_hand_states(model, start, clip.joint_target[None], clip.step_counts(substeps),
                                         detach_every=window), clip)
    images = render_states(model.gaussians, states.position[0, 1:], states.quat[0, 1:], clip.camera, clip.background)
    return paste_recorded_hand(images, clip)
