"""`cgwm bench accuracy`: the paper's simulation benchmark (section IV-A, Tables I and II, Fig. 3),
end to end on library objects.

Per object: a multi-view set and stage I (SG-GS) give the Gaussians; per scenario (fall-and-
rebound, push-slide-settle) MuJoCo records `episodes` train/test clip pairs; stage II learns from
the first train clip (15 frames) and every method predicts the test clips (60 frames, unseen
poses or pusher velocities) open loop from their first true state. The initial physical values
are drawn once per object and scenario from one randomization range (appendix D): mass x [0.5, 2]
of the true mass and mu in [0.1, 1] for ours, No_opt and CEM alike, stiffness and damping
(kappa, delta) in [0.2, 0.9] for ours; CEM samples its 100 first parameter sets from the same mass
and mu ranges (its time constant and damping ratio from CemSettings' ranges).

Beside the methods, each row has "MuJoCo reference": the data's own simulator on the test clips,
with its true parameters and with each of them (mass, mu, solref time constant and damping ratio)
off by +-SENSITIVITY (2%) in turn. It is the floor any learned model meets on that data: with a
tumbling fall, 2% off in one parameter already costs centimetres and tenths of a radian.

Writes the JSON of every row (`--out`, default out/bench_accuracy.json), the two tables as
markdown beside it (.md) and, in a folder of the same name, each run's bundle, PSNR curves and
side-by-side GIFs.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from cgwm_env.data.objects import get_object
from cgwm_env.data.synth import synth, synth_multiview
from cgwm_env.learn import stage1
from cgwm_env.learn.clips import clip_paths, load_clip
from cgwm_env.learn.evaluate import CemSettings, MujocoTwin, evaluate, first_state, format_table
from cgwm_env.learn.settings import LearnSettings
from cgwm_env.learn.stage2 import run_learn
from cgwm_env.learn.world_model import params_values
from cgwm_env.render.metrics import e_rot, e_trans

FULL_OBJECTS = ("cube", "duck", "lblock", "bottle", "mug")
QUICK_OBJECTS = ("cube",)
SCENARIOS = ("fall", "push")
MU_RANGE, MASS_FACTOR, GAIN_RANGE = (0.1, 1.0), (0.5, 2.0), (0.2, 0.9)
SENSITIVITY = 0.02


@dataclasses.dataclass(frozen=True)
class Plan:
    """Sizes of one benchmark run."""

    objects: tuple
    size: int
    views: int
    episodes: int
    init: stage1.Settings
    learn: LearnSettings
    cem: CemSettings


def plan(quick: bool) -> Plan:
    """The full benchmark (five objects, 96 px, two test clips of 60 frames per scenario; about
    half an hour on 2 cores), or the quick one (one object, 48 px, a few iterations) CI runs."""
    if quick:
        return Plan(QUICK_OBJECTS, 48, 20, 1,
                    stage1.Settings(grid=20, geometry_iterations=40, appearance_iterations=30, densify_every=20),
                    LearnSettings(iterations=6, candidates=8, pose_iterations=10, velocity_iterations=5),
                    CemSettings(samples=8, elites=2, iterations=2))
    return Plan(FULL_OBJECTS, 96, 48, 2, stage1.Settings(grid=32, geometry_iterations=150, appearance_iterations=150),
                LearnSettings(iterations=80), CemSettings(samples=100, elites=10, iterations=5))


def draw_initial(name: str, scenario: str, seed: int) -> dict:
    """Initial values for one object and scenario from the shared randomization range."""
    rng = np.random.default_rng([seed, sum(map(ord, name)), SCENARIOS.index(scenario)])
    mass = get_object(name).mass * rng.uniform(*MASS_FACTOR)
    return {"mass": float(mass), "mu": float(rng.uniform(*MU_RANGE)), "stiffness": float(rng.uniform(*GAIN_RANGE)),
            "damping": float(rng.uniform(*GAIN_RANGE))}


def mujoco_reference(data, fraction: float = SENSITIVITY) -> dict:
    """E_trans (m) and E_rot (rad) over the test clips under `data` of MuJoCo itself: with the
    clips' true parameters ("true"; what is left is float32 states and rollout rounding), and the
    mean over the runs with one parameter of (mass, mu, solref time constant, damping ratio) off
    by -+`fraction` ("perturbed")."""
    tests = [load_clip(p) for p in clip_paths(data, "test")]
    physics = tests[0].physics
    true = np.array([physics["mass"], physics["friction"], *physics["solref"]], dtype=float)
    params = [true]
    for i in range(4):
        for sign in (-1.0, 1.0):
            params.append(true * np.where(np.arange(4) == i, 1.0 + sign * fraction, 1.0))
    twin = MujocoTwin(tests[0].object, physics["timestep"], physics["substeps"], tests[0].pusher_start is not None,
                      len(params))
    trans, rot = [], []
    for clip in tests:
        pos, quat = twin.rollout(np.stack(params), first_state(clip), len(clip), clip.pusher_start,
                                 clip.pusher_velocity)
        true_pos, true_quat = clip.truth.position[0, 1:], clip.truth.quat[0, 1:]
        trans.append([float(e_trans(p[1:], true_pos)) for p in pos])
        rot.append([float(e_rot(q[1:], true_quat)) for q in quat])
    trans, rot = np.mean(trans, axis=0), np.mean(rot, axis=0)
    return {"fraction": fraction, "true": {"e_trans": float(trans[0]), "e_rot": float(rot[0])},
            "perturbed": {"e_trans": float(trans[1:].mean()), "e_rot": float(rot[1:].mean())}}


def format_reference(rows: list[dict]) -> str:
    """The markdown table of the rows' MuJoCo references."""
    lines = [f"MuJoCo on its own data: true parameters, and one parameter off by +-{SENSITIVITY:.0%} (mean)", "",
             "| object | scenario | true Trans. [m] | true Orient. [rad] | perturbed Trans. [m] | perturbed Orient. [rad] |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        ref = r["MuJoCo reference"]
        lines.append(f"| {r['object']} | {r['scenario']} | {ref['true']['e_trans']:.4f} | {ref['true']['e_rot']:.4f} | "
                     f"{ref['perturbed']['e_trans']:.4f} | {ref['perturbed']['e_rot']:.4f} |")
    return "\n".join(lines)


def run(out: str | None = None, quick: bool = False, seed: int = 0, objects=None) -> list[dict]:
    """Run the benchmark; print the tables; write JSON (and .md, and the artefacts folder)."""
    p = plan(quick)
    names = tuple(objects) if objects else p.objects
    for name in names:
        get_object(name)
    out = Path(out or "out/bench_accuracy.json")
    work = out.with_suffix("")
    work.mkdir(parents=True, exist_ok=True)
    cem = dataclasses.replace(p.cem, seed=seed, mass_range=MASS_FACTOR, mu_range=MU_RANGE)
    rows = []
    for name in names:
        start = time.perf_counter()
        views = synth_multiview(name, work / name / "views", n_views=p.views, size=p.size, seed=seed)
        gfile = work / name / "gaussians.npz"
        stage1.run_init(views, gfile, p.init, holdout_every=0, mesh_resolution=32 if quick else 64, progress=False)
        init_seconds = time.perf_counter() - start
        for scenario in SCENARIOS:
            data = work / name / scenario
            synth(scenario, name, data, episodes=p.episodes, seed=seed, size=p.size)
            initial = draw_initial(name, scenario, seed)
            model_dir = work / name / f"{scenario}_model"
            start = time.perf_counter()
            wm, history = run_learn(data, gfile, model_dir, p.learn, progress=False, clips=[0], **initial)
            learn_seconds = time.perf_counter() - start
            # CEM's mass range is relative to the initial mass; make it the true mass's range, as ours.
            true_mass = get_object(name).mass
            factor = (MASS_FACTOR[0] * true_mass / initial["mass"], MASS_FACTOR[1] * true_mass / initial["mass"])
            result = evaluate(wm, data, model_dir / "eval", dataclasses.replace(cem, mass_range=factor),
                              videos=True, progress=False, history=[h["psnr"] for h in history])
            rows.append({"object": name, "scenario": scenario, "initial": initial,
                         "learned": {k: v for k, v in params_values(wm.params).items() if k != "inertia"},
                         "train_psnr_first": history[0]["psnr"], "train_psnr_best": history[wm.info["best_iteration"]]["psnr"],
                         "stage1_seconds": init_seconds, "learn_seconds": learn_seconds,
                         **{m: result[m] for m in ("Ours", "No_opt", "CEM+MuJoCo+R") if m in result},
                         "cem_params": result.get("cem_params"), "MuJoCo reference": mujoco_reference(data)})
    tables = [format_table([r for r in rows if r["scenario"] == s], s) for s in SCENARIOS] + [format_reference(rows)]
    timing = "\n".join(f"- {r['object']} {r['scenario']}: stage II {r['learn_seconds']:.0f} s" for r in rows)
    text = "\n\n".join(tables) + "\n\n" + timing + "\n"
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"quick": quick, "seed": seed, "size": p.size, "rows": rows}, indent=1))
    out.with_suffix(".md").write_text(text)
    return rows
