"""Stage II on LEAP Hand clips with the same settings for any object: held-out clips choose the
kept iterate, a diverging step is caught and retried at half the step, and parameters outside
what a hand-held object can have are refused in favour of the best plausible iterate.

The model is stage II's (cgwm_env.learn.stage2): the object's Gaussians with the LEAP Hand
following the recorded joint targets, plain contact gains (K N/m, D N s/m), the hand's pixels
pasted from the recording. configs/learn_leap.yaml (leap_settings()) and clips.LEAP_INITIAL are the
settings every object is learned with. Each validate_every iterations (and at the first and
last) the iterate predicts the held-out
clips' first HELD_OUT_FRAMES frames; the kept iterate is the one whose held-out image loss is
lowest among those whose parameters lie in PLAUSIBLE. A step that makes a training rollout
non-finite is undone: learning goes on from the best held-out iterate with Adam restarted at half
the step, at most MAX_RETRIES times.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from cgwm_env import progress as progress_lines
from cgwm_env.config import config_file, settings_from_yaml
from cgwm_env.learn.clips import Clip, clip_paths, initial_values, leap_model_kwargs, load_clip
from cgwm_env.learn.losses import ImageLoss
from cgwm_env.learn.plots import kept_record, plot_learning
from cgwm_env.learn.settings import PARAMETERS, LearnSettings
from cgwm_env.learn.stage2 import (clip_model, clips_loss, diverged_start, estimate_starts, feasible_start, from_leaves,
                                   initial_params, project_gains, say_caught, to_leaves)
from cgwm_env.learn.world_model import WorldModel, params_values
from cgwm_env.physics.collision import SoftSDFSettings
from cgwm_env.physics.gaussians import SphereGaussians
from cgwm_env.physics.model import PhysicalParams, State

# What a hand-sized object on the LEAP Hand's palm can have: friction coefficient, K N/m, D N s/m.
PLAUSIBLE = {"mu": (0.05, 1.2), "stiffness": (1.0, 2000.0), "damping": (1e-3, 10.0)}
HELD_OUT_FRAMES = 30  # frames of each held-out clip predicted to score an iterate
VALIDATE_EVERY = 5
MAX_RETRIES = 3


def leap_settings() -> LearnSettings:
    """The LearnSettings every LEAP Hand object is learned with: configs/learn_leap.yaml's."""
    return settings_from_yaml(LearnSettings, config_file("learn_leap.yaml"))


def implausible(values: dict) -> list[str]:
    """The parameters of `values` (params_values' dict) outside PLAUSIBLE, as "name value" strings."""
    return [f"{name} {values[name]:.4g} (expected {low:g} to {high:g})" for name, (low, high) in PLAUSIBLE.items()
            if not low <= values[name] <= high]


def learn_leap(gaussians: SphereGaussians, clips: list[Clip], held_out: list[Clip], params: PhysicalParams,
               settings: LearnSettings | None = None, progress: bool = True, log=None,
               validate_every: int = VALIDATE_EVERY, model_kwargs: dict | None = None,
               starts: list[State] | None = None) -> tuple[WorldModel, list[dict]]:
    """Stage II on the LEAP Hand clips `clips` from stage I's `gaussians` and initial `params`
    with `settings` (default leap_settings()), keeping the iterate that predicts the clips
    `held_out` best (module doc). Returns the WorldModel
    (its info as stage2.learn's, plus held_out, retries, rejected: the iterates refused as
    implausible) and the history, one dict per iteration (training loss and PSNR, the held-out loss
    and PSNR where scored, the parameter values). `log`: a text file that gets each as a JSON line.
    model_kwargs: other Model fields (the hand, ...) over the LEAP scene's; starts: the initial
    states (batch 1) of clips + held_out where they are known (default: estimated from the images,
    estimate_leap_state)."""
    settings = settings or leap_settings()
    if not clips or not held_out:
        raise ValueError(f"clips, held_out: expected training and held-out LEAP Hand clips, got {len(clips)} "
                         f"and {len(held_out)}")
    if not all(c.joint_target is not None for c in clips + held_out):
        raise ValueError("clips: expected LEAP Hand clips (scenario leap), got others")
    if settings.lr_geometry:
        raise ValueError(f"settings.lr_geometry: LEAP Hand learning keeps stage I's geometry; expected 0, "
                         f"got {settings.lr_geometry!r}")
    if isinstance(validate_every, bool) or not isinstance(validate_every, int) or validate_every < 1:
        raise ValueError(f"validate_every: expected a count >= 1, got {validate_every!r}")
    held_out = [_first_frames(c, HELD_OUT_FRAMES) for c in held_out]
    model_kwargs = leap_model_kwargs(clips, {"sdf": SoftSDFSettings(beta=settings.sdf_beta), **(model_kwargs or {})})
    start_time = time.perf_counter()
    base = clip_model(gaussians, params, clips[0], settings.substeps, **model_kwargs)
    if starts is None:
        starts, reports = estimate_starts(base, clips + held_out, settings, progress)
    elif len(starts) != len(clips) + len(held_out):
        raise ValueError(f"starts: expected one State per clip and held-out clip ({len(clips) + len(held_out)}), "
                         f"got {len(starts)}")
    else:
        reports = [{"clip": c.path, "given": True} for c in clips + held_out]
    train_starts, held_out_starts = starts[:len(clips)], starts[len(clips):]

    params, start_moved = feasible_start(params, base, settings)
    learned = {i for name in settings.parameters for i in PARAMETERS[name]}
    leaves = [t.detach().clone().requires_grad_(i in learned) for i, t in enumerate(to_leaves(params))]
    lr = settings.lr
    opt = torch.optim.Adam([leaf for leaf in leaves if leaf.requires_grad], lr=lr)
    loss_fn = ImageLoss(settings)
    history, best, retries, rejected = [], None, [], []

    def model_of(values):
        return clip_model(gaussians, from_leaves(values), clips[0], settings.substeps, **model_kwargs)

    with progress_lines.bar(settings.iterations, "stage II (LEAP)", unit="iteration", enabled=progress) as bar:
        it = 0
        while True:
            model = model_of(leaves)
            try:
                total, psnrs = clips_loss(model, clips, train_starts, settings, loss_fn)
                finite = bool(torch.isfinite(total))
            except ValueError as err:  # a state went non-finite: only a step of theta can do that after iteration 0
                if it == 0:
                    raise diverged_start(err, model, settings)
                finite = False
            if not finite:
                if it == 0:
                    raise ValueError("params: the initial parameters give a non-finite image loss")
                if len(retries) == MAX_RETRIES:
                    retries.append({"iteration": it, "lr": lr, "action": "stopped"})
                    break
                lr /= 2.0
                retries.append({"iteration": it, "lr": lr, "action": f"went non-finite; back to iteration {best[1]}"})
                with torch.no_grad():
                    for leaf, value in zip(leaves, best[2]):
                        leaf.copy_(value)
                opt = torch.optim.Adam([leaf for leaf in leaves if leaf.requires_grad], lr=lr)
                continue
            values = params_values(model.params)
            record = {"iteration": it, "loss": float(total.detach()), "psnr": float(np.mean(psnrs)),
                      **{k: v for k, v in values.items() if k != "inertia"}, "lr": lr,
                      "seconds": time.perf_counter() - start_time}
            if it % validate_every == 0 or it == settings.iterations:
                with torch.no_grad():
                    score, held_psnrs = clips_loss(model, held_out, held_out_starts, settings, loss_fn)
                record.update(held_out_loss=float(score), held_out_psnr=float(np.mean(held_psnrs)))
                bad = implausible(values)
                if bad:
                    rejected.append({"iteration": it, "implausible": bad})
                elif best is None or record["held_out_loss"] < best[0]:
                    best = (record["held_out_loss"], it, [t.detach().clone() for t in leaves])
            history.append(record)
            if log is not None:
                log.write(json.dumps(record) + "\n")
                log.flush()
            if it == settings.iterations:
                break
            opt.zero_grad()
            total.backward()
            opt.step()
            with torch.no_grad():
                project_gains(leaves, settings, model)  # the geometry stays stage I's
            it += 1
            bar.update()
            bar.set_postfix(loss=f"{record['loss']:.4f}", psnr=f"{record['psnr']:.2f}", mu=f"{record['mu']:.3f}")
    if best is None:
        raise ValueError(f"params: every scored iterate was implausible ({rejected[0]['implausible']}); "
                         f"start from values within {PLAUSIBLE}")
    _, best_it, best_leaves = best
    model = model_of(best_leaves)
    info = {"object": clips[0].object, "scenario": clips[0].scenario, "clips": [c.path for c in clips],
            "held_out": [c.path for c in held_out], "held_out_frames": HELD_OUT_FRAMES, "fps": clips[0].fps,
            "substeps": settings.substeps, "initial_states": reports, "settings": dataclasses.asdict(settings),
            "best_iteration": best_it, "selected_by": "held-out image loss", "retries": retries,
            "rejected": rejected, "start_moved": start_moved,
            "stopped": retries[-1]["action"] if retries and retries[-1]["action"] == "stopped" else None,
            "seconds": time.perf_counter() - start_time}
    wm = WorldModel.from_model(model, initial_params=params, info=info)
    return dataclasses.replace(wm, initial_gaussians=SphereGaussians(*(t.detach() for t in gaussians.tensors()))), history


def run_learn_leap(data, gaussians_file, out, settings: LearnSettings | None = None, progress: bool = True,
                   **initial) -> tuple[WorldModel, list[dict]]:
    """Stage II (`settings`: default leap_settings()) on the LEAP Hand clips under `data` (train_*
    learned from, test_* held out) from the
    Gaussians in `gaussians_file` (.npz), starting from clips.LEAP_INITIAL with `initial`'s values (some of
    mass, mu, stiffness, damping) over it; writes the bundle `out`, out/learn_log.jsonl and
    out/learning.png (loss, PSNR and the learned parameters per iteration, the kept iterate marked),
    prints a summary (and on stderr what was caught) and returns (bundle, history)."""
    settings = settings or leap_settings()
    gfile = Path(gaussians_file)
    if not gfile.is_file() or gfile.suffix != ".npz":
        raise ValueError(f"gaussians: expected a stage I .npz file, got {str(gfile)!r}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out: expected a folder for the world model, got the file {out}")
    clips = [load_clip(p) for p in clip_paths(data, "train")]
    held_out = [load_clip(p) for p in clip_paths(data, "test")]
    values = initial_values(clips, initial)
    gaussians = SphereGaussians.load_npz(gfile)
    params = initial_params(gaussians, values["mass"], values["mu"], values["stiffness"], values["damping"])
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "learn_log.jsonl", "w") as log:
        wm, history = learn_leap(gaussians, clips, held_out, params, settings, progress, log)
    wm.save(out)
    plot_learning(history, out / "learning.png", kept_record(history, wm.info),
                  [p for p in settings.parameters if any(p in h for h in history)],
                  f"stage II (LEAP Hand): {clips[0].object}, kept iteration {wm.info['best_iteration']} "
                  f"(lowest held-out loss)")
    say_caught(wm.info)
    v, chosen = params_values(wm.params), history[wm.info["best_iteration"]]
    print(f"stage II (LEAP Hand): {len(clips)} clips, {len(history) - 1} iterations, kept iteration "
          f"{wm.info['best_iteration']} (held-out PSNR {history[0]['held_out_psnr']:.2f} -> "
          f"{chosen['held_out_psnr']:.2f} dB, training {history[0]['psnr']:.2f} -> {chosen['psnr']:.2f} dB), "
          f"mu {v['mu']:.3f}, K {v['stiffness']:.3g} N/m, D {v['damping']:.3g} N s/m, "
          f"{wm.info['seconds']:.0f} s -> {out}")
    return wm, history


def _first_frames(clip: Clip, frames: int) -> Clip:
    """The clip's first `frames` frames (all of a shorter clip)."""
    keep = slice(0, min(frames, len(clip)))
    sliced = {name: getattr(clip, name)[keep] for name in ("images", "masks", "joint_pos", "joint_target",
                                                            "hand_masks")}
    truth = None if clip.truth is None else type(clip.truth)(*(x[:, keep] for x in clip.truth))
    times = None if clip.times is None else clip.times[keep]
    off_clock = tuple(k for k in clip.off_clock if k < keep.stop)
    return dataclasses.replace(clip, truth=truth, times=times, off_clock=off_clock, **sliced)
