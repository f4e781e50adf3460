"""Stage II as `cgwm learn` runs it: the clips and Gaussians loaded, the learner chosen (a free
object: stage2.fit_world_model; LEAP Hand clips: leap.learn_leap with every third clip held out, or
stage2.learn with fewer than three), the bundle and its plot written, a summary printed."""

from __future__ import annotations

import math
import sys
from pathlib import Path

from cgwm_env import progress as progress_lines
from cgwm_env.learn.clips import clip_paths, initial_values, load_clip
from cgwm_env.learn.identify import IdentifySettings
from cgwm_env.learn.leap import learn_leap
from cgwm_env.learn.plots import kept_record, plot_learning
from cgwm_env.learn.settings import PARAMETERS, LearnSettings
from cgwm_env.learn.stage2 import fit_world_model, held_out_clips, initial_params, learn, say_caught
from cgwm_env.learn.world_model import WorldModel, params_values
from cgwm_env.physics.contact import ContactSettings
from cgwm_env.physics.gaussians import SphereGaussians


def run_learn(data, gaussians_file, out, settings: LearnSettings = LearnSettings(), progress: bool = True,
              clips: list[int] | None = None, pusher: str | None = None, **initial) -> tuple[WorldModel, list[dict]]:
    """`cgwm learn`: stage II on the train clips under `data` (all, or the indices `clips`)
    from the Gaussians in `gaussians_file` (.npz or .ply) and the initial values `initial` (some
    of mass, mu, stiffness, damping; the rest from clips.initial_values, in the units of the
    clips' contact gains), a pusher moved as `pusher` (ContactSettings.pusher; None: its default); writes the bundle
    `out`, out/learn_log.jsonl and out/learning.png (loss, PSNR and the learned
    parameters per iteration, the kept iterate marked); returns (bundle, history). Free objects:
    fit_world_model. LEAP Hand clips: with three or more, every third is held out and the iterate
    that predicts it best is kept (leap.learn_leap); with fewer, learn() keeps the lowest training loss."""
    gfile = Path(gaussians_file)
    if not gfile.is_file() or gfile.suffix not in (".npz", ".ply"):
        raise ValueError(f"gaussians: expected a stage I .npz or .ply file, got {str(gfile)!r}")
    gaussians = SphereGaussians.load_npz(gfile) if gfile.suffix == ".npz" else SphereGaussians.load_ply(gfile)
    paths = clip_paths(data, "train")
    if clips is not None:
        if not clips or not all(0 <= i < len(paths) for i in clips):
            raise ValueError(f"clips: expected indices in [0, {len(paths)}), got {clips}")
        paths = [paths[i] for i in clips]
    loaded = [load_clip(p) for p in paths]
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out: expected a folder for the world model, got the file {out}")
    out.mkdir(parents=True, exist_ok=True)
    values = initial_values(loaded, initial)
    params = initial_params(gaussians, values["mass"], values["mu"], values["stiffness"], values["damping"])
    hand = loaded[0].joint_target is not None
    if hand and pusher is not None:
        raise ValueError(f"pusher: the LEAP Hand's clips have no pusher, got {pusher!r}: leave it out")
    with open(out / "learn_log.jsonl", "w") as log:
        if hand and len(loaded) >= 3:  # every third clip held out to choose the kept iterate
            held = held_out_clips(len(loaded))
            wm, history = learn_leap(gaussians, [c for k, c in enumerate(loaded) if k not in held],
                                     [loaded[k] for k in held], params, settings, progress, log)
        elif hand:
            wm, history = learn(gaussians, loaded, params, settings, progress, log)
        else:
            say = (lambda message: progress_lines.say(f"stage II: {message}")) if progress else None
            wm, history = fit_world_model(gaussians, loaded, params, settings, say, log,
                                          {} if pusher is None else {"contact": ContactSettings(pusher=pusher)})
    wm.save(out)
    v = params_values(wm.params)
    kept = f"iteration {wm.info['best_iteration']}" if hand else f"the {wm.info['kept']} parameters"
    learned = set(settings.parameters) | (set() if hand else set(IdentifySettings.parameters))
    plot_learning(history, out / "learning.png", kept_record(history, wm.info),
                  [p for p in PARAMETERS if p in learned and any(p in h for h in history)],
                  f"stage II: {loaded[0].object}, kept {kept}")
    if hand:
        say_caught(wm.info)
        chosen = (f"kept iteration {wm.info['best_iteration']}, " + (
            f"chosen on held-out {', '.join(Path(p).name for p in wm.info['held_out'])}" if "held_out" in wm.info
            else "the lowest training loss (with 3 or more clips every third is held out to choose it)"))
        if wm.info["stopped"]:
            print(f"stage II stopped early at {wm.info['stopped']}; kept the best iteration, "
                  f"{wm.info['best_iteration']}", file=sys.stderr)
        print(f"stage II: {len(loaded)} clip(s), {len(history) - 1} iterations, {chosen}; PSNR {history[0]['psnr']:.2f} "
              f"-> {history[wm.info['best_iteration']]['psnr']:.2f} dB, mass {v['mass']:.4g} kg, mu {v['mu']:.3f}, "
              f"stiffness {v['stiffness']:.3g}, damping {v['damping']:.3g}, {wm.info['seconds']:.0f} s -> {out}")
    else:
        print(f"stage II: {len(loaded)} clip(s); kept the {wm.info['kept']} parameters (held-out error "
              f"{wm.info['validation_error'][wm.info['kept']]:.3f}, initial {wm.info['validation_error']['initial']:.3f}): "
              f"mu {v['mu']:.3f}, contact stiffness {v['stiffness']:.4g} 1/s^2, damping {v['damping']:.4g} 1/s; "
              f"mass {v['mass']:.4g} kg as given (not identifiable from falls and pushes by a kinematic pusher); "
              f"{wm.info['seconds']:.0f} s -> {out}")
        print("stage II: identification from the tracks: " + ", ".join(
            f"{name} {wm.info['identified'][name]:.4g} {_standard_error_text(error, settings.determined)}"
            for name, error in wm.info["identified_log_standard_error"].items()))
    return wm, history


def _standard_error_text(log_error: float | None, determined: float) -> str:
    """A parameter's standard error of its logarithm (None: unbounded) as the user reads it: '+-12%', or
    'not determined' from `determined` (LearnSettings.determined) up."""
    if log_error is None or log_error >= determined:
        return "(not determined by these clips)"
    return f"+-{100.0 * math.expm1(log_error):.0f}%"
