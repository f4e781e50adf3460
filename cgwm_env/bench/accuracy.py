"""`cgwm bench accuracy`: the paper's simulation benchmark (section IV-A, Tables I and II, Fig. 3), end to
end on library objects, with the commands' defaults.

Per object, under a directional light (faces shaded by their orientation, as in a room): a multi-view
set and stage I give the Gaussians; per scene MuJoCo records one train clip (15 frames) and test clips
(60 frames) from unseen starts:
- fall: released 3-10 cm up with a random orientation and spin (up to 4 rad/s), tumbling;
- flatdrop: upright at a random yaw, dropped 2-5 cm with little spin;
- push: upright at rest, a sphere pushed through it at 0.2-0.4 m/s for 2-4 cm.
Stage II (`cgwm learn`'s defaults) learns from the train clip; every method predicts the test clips open
loop from their first true state: Ours, No_opt (the defaults learning starts from) and CEM+MuJoCo+R
(MuJoCo with the library object's true geometry, mass, friction and solref fitted by CEM on the train
clip's images). Beside them, the floor: MuJoCo, the data's own simulator, with the true parameters from
the stored float32 start, and with one of (mass, mu, solref time constant, damping ratio) off by 2%.
Also reported: the learned friction against the truth, the contact gains against MuJoCo's solref in the
same units, tracking errors on the train clip and the first test clip, and the time per stage.

Writes the JSON of every row with its per-clip errors (`--out`, default out/bench_accuracy.json), the
tables as markdown beside it (.md) and, in a folder of the same name, each run's data, bundle and videos.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from cgwm_env import progress
from cgwm_env.data.objects import get_object
from cgwm_env.data.synth import synth, synth_multiview
from cgwm_env.learn import stage1
from cgwm_env.learn.clips import clip_paths, load_clip
from cgwm_env.learn.evaluate import CemSettings, MujocoTwin, evaluate, first_state, format_table
from cgwm_env.learn.run import run_learn
from cgwm_env.learn.settings import LearnSettings
from cgwm_env.learn.track import TrackSettings, pose_errors, track_clip
from cgwm_env.learn.world_model import params_values
from cgwm_env.physics.gaussians import SphereGaussians
from cgwm_env.render.metrics import e_rot, e_trans

FULL_OBJECTS = ("cube", "duck", "lblock", "bottle", "mug")
QUICK_OBJECTS = ("cube",)
SCENARIOS = ("fall", "flatdrop", "push")
SENSITIVITY = 0.02
LIGHT = "directional"


@dataclasses.dataclass(frozen=True)
class Plan:
    """Sizes of one benchmark run: objects, image size px, views, test clips per scene, stage I, stage II
    and CEM settings."""

    objects: tuple
    size: int
    views: int
    tests: int
    init: stage1.Settings
    learn: LearnSettings
    cem: CemSettings


def plan(quick: bool) -> Plan:
    """The full benchmark (five objects, 96 px, two test clips of 60 frames per scene), or the quick
    one (the cube, 48 px, a few iterations) that CI runs to keep it working."""
    if quick:
        return Plan(QUICK_OBJECTS, 48, 20, 1,
                    stage1.Settings(grid=20, geometry_iterations=40, appearance_iterations=30, densify_every=20),
                    LearnSettings(iterations=2, candidates=8, track_iterations=3, identify_iterations=3),
                    CemSettings(samples=8, elites=2, iterations=2))
    return Plan(FULL_OBJECTS, 96, 48, 2, stage1.Settings(grid=32, geometry_iterations=150, appearance_iterations=150),
                LearnSettings(), CemSettings(samples=100, elites=10, iterations=5))


def mujoco_floor(data, fraction: float = SENSITIVITY) -> dict:
    """E_trans (m) and E_rot (rad) over the test clips under `data` of MuJoCo itself from each clip's stored
    (float32) first state: with the true parameters ("true"), and the mean over the runs with one of
    (mass, mu, solref time constant, damping ratio) off by -+`fraction` ("perturbed")."""
    tests = [load_clip(p) for p in clip_paths(data, "test")]
    physics = tests[0].physics
    true = np.array([physics["mass"], physics["friction"], *physics["solref"]], dtype=float)
    params = [true]
    for i in range(4):
        for sign in (-1.0, 1.0):
            params.append(true * np.where(np.arange(4) == i, 1.0 + sign * fraction, 1.0))
    twin = MujocoTwin(tests[0].object, physics["timestep"], physics["substeps"], tests[0].pusher_start is not None,
                      len(params), tests[0].pusher_radius or 0.01)
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


def solref_gains(solref, dmax: float = 0.95) -> dict:
    """MuJoCo's solref (time constant s, damping ratio) as this simulator's effective-mass gains: the
    reference acceleration -b v - k r with b = 2 / (dmax tau) (1/s) and k = 1 / (dmax^2 tau^2 zeta^2)
    (1/s^2), dmax = solimp[1] (MuJoCo's default 0.95)."""
    tau, zeta = solref
    return {"stiffness": 1.0 / (dmax * dmax * tau * tau * zeta * zeta), "damping": 2.0 / (dmax * tau)}


def tracking_row(gaussians_file, clip_dir, settings: TrackSettings) -> dict:
    """Median and largest per-frame tracking errors (m, rad) of one clip against its states.npz."""
    clip = load_clip(clip_dir)
    track = track_clip(SphereGaussians.load_npz(gaussians_file), clip, settings)
    trans, rot = pose_errors(track, clip.truth.position[0], clip.truth.quat[0])
    return {"clip": str(clip_dir), "trans_median": float(trans.median()), "trans_max": float(trans.max()),
            "rot_median": float(rot.median()), "rot_max": float(rot.max())}


def format_floor(rows: list[dict]) -> str:
    """The markdown table of the rows' MuJoCo floors."""
    lines = [f"MuJoCo on its own data: true parameters, and one parameter off by +-{SENSITIVITY:.0%} (mean)", "",
             "| object | scene | true Trans. [m] | true Orient. [rad] | perturbed Trans. [m] | perturbed Orient. [rad] |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        ref = r["floor"]
        lines.append(f"| {r['object']} | {r['scenario']} | {ref['true']['e_trans']:.4f} | {ref['true']['e_rot']:.4f} | "
                     f"{ref['perturbed']['e_trans']:.4f} | {ref['perturbed']['e_rot']:.4f} |")
    return "\n".join(lines)


def format_learned(rows: list[dict]) -> str:
    """The markdown table of learned against true friction and contact gains, tracking and time."""
    lines = ["Learned against true parameters (gains in MuJoCo's solref converted to 1/s^2 and 1/s), tracking "
             "errors (median per frame), time", "",
             "| object | scene | mu learned / true | stiffness learned / true | damping learned / true | kept | "
             "track train mm / deg | track test mm / deg | stage II s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        learned, true = r["learned"], r["true"]
        tracks = [f"{t['trans_median'] * 1e3:.1f} / {np.degrees(t['rot_median']):.1f}" if t else ""
                  for t in (r["tracking"].get("train"), r["tracking"].get("test"))]
        lines.append(f"| {r['object']} | {r['scenario']} | {learned['mu']:.3f} / {true['mu']:.3f} | "
                     f"{learned['stiffness']:.4g} / {true['stiffness']:.4g} | {learned['damping']:.4g} / "
                     f"{true['damping']:.4g} | {r['kept']} | {tracks[0]} | {tracks[1]} | {r['learn_seconds']:.0f} |")
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
    out.parent.mkdir(parents=True, exist_ok=True)
    cem = dataclasses.replace(p.cem, seed=seed)
    rows = []
    for name in names:
        start = time.perf_counter()
        views = synth_multiview(name, work / name / "views", n_views=p.views, size=p.size, seed=seed, light=LIGHT)
        gfile = work / name / "gaussians.npz"
        stage1.run_init(views, gfile, p.init, holdout_every=0, mesh_resolution=32 if quick else 64, progress=False)
        init_seconds = time.perf_counter() - start
        progress.say(f"bench accuracy: {name}: views and stage I done in {init_seconds:.0f} s")
        for scenario in SCENARIOS:
            data = work / name / scenario
            synth(scenario, name, data, episodes=p.tests, seed=seed, size=p.size, light=LIGHT)
            model_dir = work / name / f"{scenario}_model"
            start = time.perf_counter()
            wm, _ = run_learn(data, gfile, model_dir, p.learn, progress=False, clips=[0])
            learn_seconds = time.perf_counter() - start
            progress.say(f"bench accuracy: {name}, {scenario}: stage II done in {learn_seconds:.0f} s "
                         f"(kept {wm.info['kept']})")
            result = evaluate(wm, data, model_dir / "eval", cem, videos=not quick, progress=False)
            ours = (f"Ours E_trans {result['Ours']['e_trans']:.4f} m, E_rot {result['Ours']['e_rot']:.3f} rad"
                    if "Ours" in result else "Ours diverged")
            progress.say(f"bench accuracy: {name}, {scenario}: eval of {p.tests} test clip(s) done in "
                         f"{time.perf_counter() - start - learn_seconds:.0f} s, {ours}")
            physics = load_clip(clip_paths(data, "test")[0]).physics
            tracking = {"train": wm.info["tracks"][0] | {"trans_median": wm.info["tracks"][0]["error_median_m"],
                                                         "rot_median": wm.info["tracks"][0]["error_median_rad"]}}
            if not quick:
                tracking["test"] = tracking_row(gfile, clip_paths(data, "test")[0], TrackSettings())
            rows.append({"object": name, "scenario": scenario, "kept": wm.info["kept"],
                         "learned": {k: v for k, v in params_values(wm.params).items() if k != "inertia"},
                         "true": {"mu": physics["friction"], "mass": physics["mass"], **solref_gains(physics["solref"])},
                         "validation_error": wm.info["validation_error"], "tracking": tracking,
                         "stage1_seconds": init_seconds, "learn_seconds": learn_seconds,
                         **{m: result[m] for m in ("Ours", "No_opt", "CEM+MuJoCo+R") if m in result},
                         "cem_params": result.get("cem_params"), "floor": mujoco_floor(data)})
            out.write_text(json.dumps({"quick": quick, "seed": seed, "size": p.size, "light": LIGHT, "rows": rows},
                                      indent=1))
    tables = [format_table([r for r in rows if r["scenario"] == s], s) for s in SCENARIOS]
    text = "\n\n".join(tables + [format_floor(rows), format_learned(rows)]) + "\n"
    print(text)
    out.with_suffix(".md").write_text(text)
    return rows
