"""`cgwm eval`: open-loop prediction accuracy of a world model on test clips, beside the paper's
baselines (section IV-A, appendix D; Tables I and II, Fig. 3).

Every method starts each test clip from its first true state and predicts the rest open loop
(the pusher follows its recorded velocities). Errors are the paper's E_trans (m), E_rot (rad) and
E_psnr (dB) over the predicted frames 1..T-1 of all test clips (frame 0 is given, not predicted).

- Ours: the learned WorldModel.
- No_opt: the same simulator with the parameters and geometry learning started from.
- CEM+MuJoCo+R: MuJoCo with the object's geometry (`--mjcf`: the user's MJCF or mesh; else the
  library object named in the clips' meta.json; else stage I's mesh), its mass, friction and contact
  softness (solref time constant and damping ratio)
  fitted by the cross-entropy method on the L1 error of the images of the train clips ours
  learned from (by folder name; all train_* clips under DIR if the model names none), 100
  parameter samples per iteration rolled out in parallel by `mujoco.rollout`, each drawn by our
  renderer with the stage I Gaussians. It starts from the same estimated initial states as ours.

A method whose prediction turns non-finite on a test clip (unstable contact gains) is not scored:
eval.json names it and the clips under "diverged".
"""

from __future__ import annotations

import copy
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from cgwm_env import progress as progress_lines
from cgwm_env.checks import check_count
from cgwm_env.data.objects import OBJECTS, get_object
from cgwm_env.learn.clips import Clip, clip_paths, hand_fields, leap_state, load_clip, paste_recorded_hand
from cgwm_env.learn.plots import plot_curves
from cgwm_env.learn.stage1 import save_mesh
from cgwm_env.learn.world_model import WorldModel, predict_hand_states, predict_states, render_states
from cgwm_env.physics import math3d
from cgwm_env.physics.gaussians import SphereGaussians
from cgwm_env.physics.model import Model, State
from cgwm_env.render.annotate import panel_video
from cgwm_env.render.annotate import write_video as write_titled_video
from cgwm_env.render.metrics import e_psnr, e_rot, e_trans

METHODS = ("Ours", "No_opt", "CEM+MuJoCo+R")


# ---------------------------------------------------------------------------- predictions


def first_state(clip: Clip) -> State:
    """The clip's first true state (batch of 1); with the LEAP Hand, the hand as recorded."""
    if clip.truth is None:
        raise ValueError(f"clip: {clip.path} has no recorded states (states.npz) to start from and compare with")
    if clip.joint_target is not None:
        return leap_state(clip, clip.truth.position[:, 0], clip.truth.quat[:, 0])
    return type(clip.truth)(*(x[:, 0] for x in clip.truth))


@torch.no_grad()
def predict_ours(model: Model, clip: Clip, start: State, substeps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions (T, 3) and quaternions (T, 4) at the clip's frames, open loop from `start` (the
    hand, if any, following the recorded joint targets), `substeps` physics steps per 1/fps at the
    clip's recorded times (Clip.step_counts)."""
    steps = clip.step_counts(substeps)
    if clip.joint_target is not None:
        states = predict_hand_states(model, start, clip.joint_target[None], steps)
        return states.position[0], states.quat[0]
    actions = None if clip.pusher_velocity is None else clip.pusher_velocity[None]
    states = predict_states(model, start, len(clip), steps, actions)
    return states.position[0], states.quat[0]


@torch.no_grad()
def render_prediction(gaussians: SphereGaussians, clip: Clip, position, quat) -> torch.Tensor:
    """Images (T, H, W, 3) of predicted poses over the clip's background, pusher included; a LEAP
    Hand's pixels are the recording's (clips.paste_recorded_hand)."""
    images = render_states(gaussians, position, quat, clip.camera, clip.background, clip.pusher_positions(),
                           clip.pusher_look()).clamp(0.0, 1.0)
    return images if clip.joint_target is None else paste_recorded_hand(images, clip, first=0)


def scores(clips: list[Clip], positions: list, quats: list, images: list) -> dict:
    """E_trans (m), E_rot (rad), E_psnr (dB) over frames 1..T-1 of every clip but its off-clock
    ones (appendix D)."""
    kept = [c.scored()[1:] for c in clips]
    truth_p = torch.cat([c.truth.position[0, 1:][k] for c, k in zip(clips, kept)])
    truth_q = torch.cat([c.truth.quat[0, 1:][k] for c, k in zip(clips, kept)])
    truth_i = torch.cat([c.images[1:][k] for c, k in zip(clips, kept)])
    pred_p = torch.cat([p[1:][k] for p, k in zip(positions, kept)])
    pred_q = torch.cat([math3d.quat_normalize(q[1:][k]) for q, k in zip(quats, kept)])
    pred_i = torch.cat([i[1:][k] for i, k in zip(images, kept)])
    return {"e_trans": float(e_trans(truth_p, pred_p)), "e_rot": float(e_rot(truth_q, pred_q)),
            "e_psnr": float(e_psnr(truth_i, pred_i))}


# ---------------------------------------------------------------------------- CEM + MuJoCo + R


@dataclass(frozen=True)
class CemSettings:
    """samples per iteration, elites kept, iterations; the initial sampling ranges (appendix D:
    the parameters shared with ours use the same ranges): mass as a factor of `mass` kg, mu,
    solref time constant (s, log-uniform) and damping ratio; seed."""

    samples: int = 100
    elites: int = 10
    iterations: int = 8
    mass_range: tuple = (0.5, 2.0)
    mu_range: tuple = (0.1, 1.0)
    timeconst_range: tuple = (0.005, 0.04)
    dampratio_range: tuple = (0.1, 1.0)
    seed: int = 0

    def __post_init__(self):
        for name, least in (("samples", 2), ("elites", 1), ("iterations", 1), ("seed", 0)):
            check_count(getattr(self, name), name, least)
        if self.elites > self.samples:
            raise ValueError(f"elites: expected at most samples = {self.samples}, got {self.elites}")
        for name in ("mass_range", "mu_range", "timeconst_range", "dampratio_range"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"{name}: expected 0 < low <= high, got {(lo, hi)}")


def object_spec(source) -> "mujoco.MjSpec":
    """The object as a MuJoCo model spec: a library object's name, an MJCF file (.xml) holding the object
    as a body with a free joint (body frame at its centre of mass, as in the clips), or a mesh (.obj or
    .stl, in the body frame; MuJoCo collides with its convex hull)."""
    import mujoco

    if isinstance(source, str) and source in OBJECTS:
        return mujoco.MjSpec.from_string(f"<mujoco><worldbody>{get_object(source).mjcf('object')}</worldbody></mujoco>")
    path = Path(source)
    if not path.is_file():
        raise ValueError(f"--mjcf: expected a library object ({', '.join(sorted(OBJECTS))}), an MJCF .xml or a mesh "
                         f".obj/.stl, got {str(source)!r}")
    try:
        if path.suffix.lower() in (".obj", ".stl"):
            return mujoco.MjSpec.from_string(
                f'<mujoco><asset><mesh name="object" file="{path.resolve()}"/></asset><worldbody><body name="object">'
                '<freejoint name="object"/><geom type="mesh" mesh="object" density="1000"/></body></worldbody></mujoco>')
        spec = mujoco.MjSpec.from_file(str(path))
        spec.compile()
    except Exception as err:  # MuJoCo raises its own error types for unreadable models
        raise ValueError(f"--mjcf: MuJoCo cannot load {path} ({err})") from err
    return spec


class MujocoTwin:
    """The clips' scene in MuJoCo: the object (object_spec) with a free joint on a ground plane at z = 0,
    a mocap sphere pusher, rolled out for a batch of parameter vectors (mass kg, mu, solref time
    constant s, damping ratio) at once."""

    def __init__(self, source, timestep: float, substeps: int, pusher: bool, batch: int, pusher_radius: float = 0.01):
        import mujoco

        spec = object_spec(source)
        if not any(j.type == mujoco.mjtJoint.mjJNT_FREE for j in spec.joints):
            raise ValueError(f"--mjcf: expected the object as a body with a free joint in {source}")
        spec.worldbody.add_geom(name="cgwm_ground", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[1.0, 1.0, 0.1])
        if pusher:
            ball = spec.worldbody.add_body(name="cgwm_pusher", mocap=True, pos=[0.0, 0.0, 1e4])
            ball.add_geom(type=mujoco.mjtGeom.mjGEOM_SPHERE, size=[pusher_radius, 0.0, 0.0])
        spec.option.timestep = timestep
        base = spec.compile()
        free = [i for i in range(base.njnt) if base.jnt_type[i] == mujoco.mjtJoint.mjJNT_FREE]
        if len(free) != 1:
            raise ValueError(f"--mjcf: expected one body with a free joint (the object), got {len(free)} in {source}")
        self.mujoco = mujoco
        self.substeps, self.pusher = substeps, pusher
        self.body = int(base.jnt_bodyid[free[0]])
        self.qpos = int(base.jnt_qposadr[free[0]])
        self.models = [copy.deepcopy(base) for _ in range(batch)]
        self.datas = [mujoco.MjData(base) for _ in range(2)]
        self.inertia = base.body_inertia[self.body].copy() / base.body_mass[self.body]

    def rollout(self, params: np.ndarray, start: State, frames: int, pusher_start=None, pusher_velocity=None):
        """Positions (S, frames, 3) and unit quaternions (S, frames, 4) at the frames for params
        (S, 4), from `start` (batch 1; angular velocity in the world frame)."""
        import mujoco.rollout

        mj = self.mujoco
        models = self.models[:len(params)]
        for m, (mass, mu, timeconst, dampratio) in zip(models, params):
            m.body_mass[self.body] = mass
            m.body_inertia[self.body] = self.inertia * mass
            m.geom_friction[:, 0] = mu
            m.geom_solref[:] = (timeconst, dampratio)
        d, a = self.datas[0], self.qpos
        mj.mj_resetData(models[0], d)
        d.qpos[a:a + 3], d.qpos[a + 3:a + 7] = start.position[0].double().numpy(), start.quat[0].double().numpy()
        mj.mj_forward(models[0], d)
        rot = d.xmat[self.body].reshape(3, 3)
        v = int(models[0].jnt_dofadr[models[0].body_jntadr[self.body]])
        d.qvel[v:v + 3] = start.velocity[0].double().numpy()
        d.qvel[v + 3:v + 6] = rot.T @ start.omega[0].double().numpy()
        spec = mj.mjtState.mjSTATE_FULLPHYSICS
        state0 = np.zeros(mj.mj_stateSize(models[0], spec))
        mj.mj_getState(models[0], d, state0, spec)
        steps = (frames - 1) * self.substeps
        control = None
        kwargs = {}
        if self.pusher:
            dt = models[0].opt.timestep
            per_step = np.repeat(np.asarray(pusher_velocity, float), self.substeps, axis=0) * dt
            control = (np.asarray(pusher_start, float) + np.cumsum(per_step, axis=0))[None]
            kwargs["control_spec"] = int(mj.mjtState.mjSTATE_MOCAP_POS)
        else:
            kwargs["nstep"] = steps
        out, _ = mujoco.rollout.rollout(models, self.datas, state0[None].repeat(len(models), 0), control, **kwargs)
        q = slice(1 + a, 8 + a)  # the state vector starts with time
        qpos = out[:, self.substeps - 1::self.substeps, q]
        qpos = np.concatenate((np.broadcast_to(state0[q], (len(models), 1, 7)), qpos), axis=1)
        pos = torch.as_tensor(qpos[..., :3], dtype=torch.float32)
        quat = math3d.quat_normalize(torch.as_tensor(qpos[..., 3:], dtype=torch.float32))
        return pos, quat


def cem_fit(twin: MujocoTwin, gaussians: SphereGaussians, clips: list[Clip], starts: list[State], mass: float,
            settings: CemSettings = CemSettings(), progress: bool = False) -> tuple[np.ndarray, list[float]]:
    """CEM over (mass, mu, time constant, damping ratio) on the mean L1 image error of the
    clips' frames 1..T-1; returns the best parameters (4,) seen and the PSNR (dB) of the best
    sample of each iteration (the training curve)."""
    rng = np.random.default_rng(settings.seed)
    lows = np.array([math.log(mass * settings.mass_range[0]), settings.mu_range[0],
                     math.log(settings.timeconst_range[0]), settings.dampratio_range[0]])
    highs = np.array([math.log(mass * settings.mass_range[1]), settings.mu_range[1],
                      math.log(settings.timeconst_range[1]), settings.dampratio_range[1]])
    samples = rng.uniform(lows, highs, (settings.samples, 4))
    best, curve = (math.inf, None), []
    floor = 0.02 * (highs - lows)
    with progress_lines.bar(settings.iterations, "CEM+MuJoCo+R", unit="iteration", enabled=progress) as bar:
        for _ in range(settings.iterations):
            samples = np.clip(samples, [-np.inf, 0.0, math.log(2 * twin.models[0].opt.timestep), 0.01], np.inf)
            physical = np.column_stack((np.exp(samples[:, 0]), samples[:, 1], np.exp(samples[:, 2]), samples[:, 3]))
            losses, mses = np.zeros(len(samples)), np.zeros(len(samples))
            for clip, start in zip(clips, starts):
                pos, quat = twin.rollout(physical, start, len(clip), clip.pusher_start, clip.pusher_velocity)
                for s in range(len(samples)):
                    images = render_prediction(gaussians, clip, pos[s, 1:], quat[s, 1:])
                    losses[s] += float((images - clip.images[1:]).abs().mean()) / len(clips)
                    mse = ((images - clip.images[1:]) ** 2).mean(dim=(-3, -2, -1))
                    mses[s] += float(mse.log10().mean()) / len(clips)
            order = np.argsort(losses)
            curve.append(-10.0 * float(mses[order[0]]))
            if losses[order[0]] < best[0]:
                best = (losses[order[0]], physical[order[0]].copy())
            elite = samples[order[:settings.elites]]
            mean, std = elite.mean(0), np.maximum(elite.std(0), floor)
            samples = rng.normal(mean, std, (settings.samples, 4))
            bar.update()
    return best[1], curve


# ---------------------------------------------------------------------------- the command


def evaluate(world_model: WorldModel, data, out=None, cem: CemSettings | None = CemSettings(),
             videos: bool = True, progress: bool = True, history: list[float] | None = None, mjcf=None) -> dict:
    """Score Ours, No_opt and (unless cem is None) CEM+MuJoCo+R on the test clips under `data`;
    write eval.json, table.md, psnr_curves.png (with `history`, ours' training PSNR per
    iteration, dB) and titled side-by-side videos (MP4 and GIF) under `out`; return the results {method: {e_trans,
    e_rot, e_psnr}, ...}."""
    if not isinstance(world_model, WorldModel):
        raise ValueError(f"world_model: expected a WorldModel, got {type(world_model).__name__}")
    tests = [load_clip(p) for p in clip_paths(data, "test")]
    substeps = int(world_model.info.get("substeps", round(1.0 / (world_model.dt * tests[0].fps))))
    if abs(world_model.dt * substeps * tests[0].fps - 1.0) > 1e-6:
        raise ValueError(f"data: the test clips' {tests[0].fps} fps is not a whole number of the model's "
                         f"dt = {world_model.dt} s steps")
    start_time = time.perf_counter()
    initial_g = world_model.gaussians if world_model.initial_gaussians is None else world_model.initial_gaussians
    scene = hand_fields(tests)  # the LEAP Hand, for its clips
    models = {"Ours": (world_model.model(**scene), world_model.gaussians)}
    if world_model.initial_params is not None:
        models["No_opt"] = (world_model.model(params=world_model.initial_params, gaussians=initial_g, **scene),
                            initial_g)
    results = {"object": tests[0].object, "scenario": tests[0].scenario, "test_clips": [c.path for c in tests]}
    predictions = {}
    for name, (model, g) in models.items():
        runs = [predict_ours(model, c, first_state(c), substeps) for c in tests]
        diverged = [str(c.path) for c, (p, q) in zip(tests, runs) if not (p.isfinite().all() and q.isfinite().all())]
        if diverged:  # unstable parameters: no score, and said so
            results.setdefault("diverged", {})[name] = diverged
            print(f"{name}: the prediction went non-finite on {', '.join(diverged)}; not scored", file=sys.stderr)
        else:
            predictions[name] = (runs, g)
    curves = {"Ours": list(history), "No_opt": [history[0]] * len(history)} if history else {}
    if cem is not None and not scene:  # the MuJoCo twin of the baseline has no hand
        cem_result = _run_cem(world_model, data, tests, initial_g, cem, progress, mjcf, out)
        if cem_result is not None:
            twin, params, curve = cem_result
            runs = [tuple(x[0] for x in twin.rollout(params[None], first_state(c), len(c), c.pusher_start,
                                                     c.pusher_velocity)) for c in tests]
            predictions["CEM+MuJoCo+R"] = (runs, initial_g)
            curves["CEM+MuJoCo+R"] = curve
            results["cem_params"] = dict(zip(("mass", "mu", "timeconst", "dampratio"), map(float, params)))
            results["cem_settings"] = asdict(cem)
    images = {}
    for name, (runs, g) in predictions.items():
        images[name] = [render_prediction(g, c, p, q) for c, (p, q) in zip(tests, runs)]
        results[name] = {**scores(tests, [r[0] for r in runs], [r[1] for r in runs], images[name]),
                         "per_clip": [scores([c], [p], [q], [i]) for c, (p, q), i in zip(tests, runs, images[name])]}
    results["seconds"] = time.perf_counter() - start_time
    table = format_table([{"object": results["object"], **{m: results[m] for m in METHODS if m in results}}],
                         results["scenario"])
    print(table)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "eval.json").write_text(json.dumps({**results, "curves": curves}, indent=1))
        (out / "table.md").write_text(table + "\n")
        if curves:
            plot_curves(curves, out / "psnr_curves.png", f"{results['scenario']}: {results['object']}")
        if videos:
            for i, clip in enumerate(tests):
                write_video(out / f"test_{i:03d}", clip, {m: images[m][i] for m in images})
    return results


def learn_history(model_dir) -> list[float]:
    """Training PSNR per iteration (dB) from a bundle folder's learn_log.jsonl; [] without one."""
    path = Path(model_dir) / "learn_log.jsonl"
    if not path.is_file():
        return []
    try:
        return [float(json.loads(line)["psnr"]) for line in path.read_text().splitlines()
                if line.strip() and "psnr" in json.loads(line)]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"model: {path} is not a learning log of JSON lines with 'psnr' ({err})") from err


def _run_cem(world_model: WorldModel, data, tests: list[Clip], gaussians: SphereGaussians, cem: CemSettings,
             progress: bool, mjcf=None, out=None):
    """Fit CEM+MuJoCo+R on the train clips under `data` with the object from `mjcf` (object_spec), the
    library's when the clips name a library object, else stage I's mesh; None (with a note) where there
    are no train clips."""
    name = tests[0].object
    if mjcf is None and name not in OBJECTS:
        mjcf = _stage1_mesh(gaussians, out)
        print(f"CEM+MuJoCo+R: {name!r} is not a library object and no --mjcf was given; MuJoCo gets stage I's "
              f"mesh ({mjcf}, collided as its convex hull)", file=sys.stderr)
    try:
        paths = clip_paths(data, "train")
    except ValueError:
        print(f"CEM+MuJoCo+R skipped: no train_* clips under {data}")
        return None
    used = {Path(c).name for c in world_model.info.get("clips", [])}
    if used and any(p.name in used for p in paths):
        paths = [p for p in paths if p.name in used]  # the clips ours learned from
    trains = [load_clip(p) for p in paths]
    estimated = {Path(r["clip"]).name: r for r in world_model.info.get("initial_states", [])}
    starts = []
    for clip in trains:
        r = estimated.get(Path(clip.path).name)
        if r is None:
            starts.append(first_state(clip))
            print(f"CEM+MuJoCo+R: no estimated initial state for {clip.path} in the model; using the recorded one")
        else:
            pusher = None if clip.pusher_start is None else clip.pusher_start[None]
            starts.append(State.make(torch.tensor([r["position"]]), quat=torch.tensor([r["quat"]]),
                                     velocity=torch.tensor([r["velocity"]]), omega=torch.tensor([r["omega"]]),
                                     pusher=pusher))
    physics = trains[0].physics
    substeps = int(physics.get("substeps", 20))
    for clip in trains + tests:
        clip.require_on_clock(substeps, "CEM+MuJoCo+R (MuJoCo's twin)")
    timestep = float(physics.get("timestep", 1.0 / (trains[0].fps * substeps)))
    mass = float(world_model.initial_params.mass) if world_model.initial_params is not None else OBJECTS[name].mass
    twin = MujocoTwin(mjcf or name, timestep, substeps, trains[0].pusher_start is not None, cem.samples,
                      trains[0].pusher_radius or 0.01)
    params, curve = cem_fit(twin, gaussians, trains, starts, mass, cem, progress)
    return twin, params, curve


def _stage1_mesh(gaussians: SphereGaussians, out) -> Path:
    """The soft SDF's zero level set of `gaussians` written as a mesh under `out` (or a temporary folder)."""
    import tempfile

    folder = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="cgwm_cem_"))
    folder.mkdir(parents=True, exist_ok=True)
    save_mesh(gaussians, folder / "stage1_mesh.obj", 64)
    return folder / "stage1_mesh.obj"


def format_table(rows: list[dict], scenario: str) -> str:
    """Markdown in the layout of the paper's Tables I and II: one row per object, E_trans (m) and
    E_rot (rad) per method, then E_psnr (dB) per method. rows: [{object, method: {e_trans, ...}}]."""
    methods = [m for m in METHODS if any(m in r for r in rows)]
    title = {"fall": "Fall-and-rebound", "flatdrop": "Flat drop", "push": "Push-slide-settle"}.get(scenario, scenario)
    head = "| object | " + " | ".join(f"{m} Trans. [m] | {m} Orient. [rad]" for m in methods)
    head += " | " + " | ".join(f"{m} PSNR [dB]" for m in methods) + " |"
    lines = [f"{title}: open-loop test errors (lower is better; PSNR higher)", "", head,
             "|" + "---|" * (1 + 3 * len(methods))]
    for r in rows:
        cells = []
        for m in methods:
            cells += [f"{r[m]['e_trans']:.4f}", f"{r[m]['e_rot']:.4f}"] if m in r else ["", ""]
        cells += [f"{r[m]['e_psnr']:.2f}" if m in r else "" for m in methods]
        lines.append(f"| {r['object']} | " + " | ".join(cells) + " |")
    if len(rows) > 1:
        cells = []
        for m in methods:
            have = [r[m] for r in rows if m in r]
            cells += [f"{np.mean([h['e_trans'] for h in have]):.4f}", f"{np.mean([h['e_rot'] for h in have]):.4f}"]
        cells += [f"{np.mean([r[m]['e_psnr'] for r in rows if m in r]):.2f}" for m in methods]
        lines.append("| **mean** | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_video(path, clip: Clip, predictions: dict) -> None:
    """The true frames, then each prediction (T, H, W, 3) in the order given, side by side under
    their titles, as path.mp4 and path.gif at the clip's frame rate (render.annotate.write_video)."""
    videos = {"truth": clip.images, **predictions}
    frames = panel_video({name: (v.clamp(0, 1) * 255).round().to(torch.uint8).numpy() for name, v in videos.items()})
    write_titled_video(frames, Path(path).with_suffix(""), clip.fps)
