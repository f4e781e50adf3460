"""WorldModel: the bundle a learned world model is saved as, and prediction of states and images.

A bundle is a folder holding
- gaussians.npz (SphereGaussians.save_npz; gaussians.ply beside it for splat viewers) and, if
  learning fine-tuned them, initial_gaussians.npz (stage I's, for the No_opt baseline),
- world_model.json: format and version, the physical parameters both in their unconstrained form
  (what is loaded back, exactly) and as physical values (to read), the parameters learning
  started from (the No_opt baseline), dt, gravity, ground, pusher query spheres, the soft-SDF and
  contact settings, and `info` (provenance: object, scenario, clips, learning settings, timings).

Nothing is pickled: arrays are .npz read with allow_pickle=False, the rest JSON. WorldModel.load
checks every field and raises a ValueError naming the file and the field at fault.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cgwm_env.config import is_number
from cgwm_env.physics.collision import SoftSDFSettings
from cgwm_env.physics.contact import ContactSettings
from cgwm_env.physics.gaussians import SphereGaussians
from cgwm_env.physics.math3d import fibonacci_sphere
from cgwm_env.physics.model import Model, PhysicalParams, State, is_finite
from cgwm_env.physics.simulator import control_step, prepare, step_prepared
from cgwm_env.render import render
from cgwm_env.render.camera import Camera

FORMAT, VERSION = "cgwm-world-model", 1
JSON_NAME, GAUSSIANS_NAME, INITIAL_GAUSSIANS_NAME = "world_model.json", "gaussians.npz", "initial_gaussians.npz"
_PARAM_FIELDS = ("log_mass", "inertia_factor", "mu_raw", "log_stiffness", "log_damping")
_PARAM_SHAPES = {"log_mass": (), "inertia_factor": (3, 3), "mu_raw": (), "log_stiffness": (), "log_damping": ()}


@dataclass(frozen=True)
class WorldModel:
    """A world model: Gaussians, physical parameters and the simulator's settings.

    gaussians: the object's SphereGaussians (body frame at the centre of mass); params: the
    PhysicalParams in use (unbatched: scalars and a 3x3 inertia factor); initial_params: those
    learning started from, or None; dt: physics step, s; pusher_points (P, 3), pusher_radii (P,):
    the pusher's query spheres in its frame, m (P = 0: none); info: JSON-able provenance;
    initial_gaussians: stage I's Gaussians before the geometry was fine-tuned, or None.
    """

    gaussians: SphereGaussians
    params: PhysicalParams
    initial_params: PhysicalParams | None = None
    dt: float = 1.0 / 480.0
    gravity: tuple[float, float, float] = (0.0, 0.0, -9.81)
    ground_height: float | None = 0.0
    ground_contacts: str = "hull"
    pusher_points: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 3))
    pusher_radii: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    sdf: SoftSDFSettings = field(default_factory=SoftSDFSettings)
    contact: ContactSettings = field(default_factory=ContactSettings)
    info: dict = field(default_factory=dict)
    initial_gaussians: SphereGaussians | None = None

    def model(self, **overrides) -> Model:
        """The simulator's Model of this bundle; keyword arguments replace Model fields
        (e.g. params=wm.initial_params, dt=1/960)."""
        names = {f.name for f in dataclasses.fields(Model) if f.init}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ValueError(f"{unknown[0]}: not a Model field; expected some of {sorted(names)}")
        kwargs = dict(gaussians=self.gaussians, params=self.params, dt=self.dt, gravity=self.gravity,
                      ground_height=self.ground_height, ground_contacts=self.ground_contacts,
                      pusher_points=self.pusher_points, pusher_radii=self.pusher_radii, sdf=self.sdf,
                      contact=self.contact)
        kwargs.update(overrides)
        return Model(**kwargs)

    @classmethod
    def from_model(cls, model: Model, initial_params: PhysicalParams | None = None, info: dict | None = None):
        """The bundle of a Model (tensors detached)."""
        detach = lambda p: None if p is None else PhysicalParams(*(t.detach().clone() for t in p.tensors()))  # noqa: E731
        g = SphereGaussians(*(t.detach().clone() for t in model.gaussians.tensors()))
        return cls(g, detach(model.params), detach(initial_params), model.dt, tuple(model.gravity),
                   model.ground_height, model.ground_contacts, model.pusher_points.detach().clone(),
                   model.pusher_radii.detach().clone(), model.sdf, model.contact, dict(info or {}))

    def save(self, path) -> Path:
        """Write the bundle folder `path` (created if needed); returns it."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise ValueError(f"path: expected a folder for the world model, got the file {path}")
        path.mkdir(parents=True, exist_ok=True)
        self.gaussians.save_npz(path / GAUSSIANS_NAME)
        self.gaussians.save_ply(path / "gaussians.ply")
        if self.initial_gaussians is not None:
            self.initial_gaussians.save_npz(path / INITIAL_GAUSSIANS_NAME)
        doc = {
            "format": FORMAT, "version": VERSION, "gaussians": GAUSSIANS_NAME, "num_gaussians": len(self.gaussians),
            "params": _params_to_json(self.params),
            "initial_params": None if self.initial_params is None else _params_to_json(self.initial_params),
            "dt": self.dt, "gravity": list(self.gravity), "ground_height": self.ground_height,
            "ground_contacts": self.ground_contacts, "pusher_points": self.pusher_points.tolist(),
            "pusher_radii": self.pusher_radii.tolist(), "sdf": dataclasses.asdict(self.sdf),
            "contact": dataclasses.asdict(self.contact), "info": self.info,
            "initial_gaussians": None if self.initial_gaussians is None else INITIAL_GAUSSIANS_NAME,
        }
        (path / JSON_NAME).write_text(json.dumps(doc, indent=1))
        return path

    @classmethod
    def load(cls, path) -> "WorldModel":
        """Read and check a bundle folder written by save."""
        path = Path(path)
        file = path / JSON_NAME
        if not path.is_dir() or not file.is_file():
            raise ValueError(f"path: expected a world-model folder with {JSON_NAME}, got {path}")
        try:
            doc = json.loads(file.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{file}: not readable JSON ({err})") from err
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION:
            raise ValueError(f"{file}: format/version: expected {FORMAT!r} version {VERSION}")
        required = ("gaussians", "params", "dt", "gravity", "ground_height", "ground_contacts", "pusher_points",
                    "pusher_radii", "sdf", "contact")
        missing = [k for k in required if k not in doc]
        if missing:
            raise ValueError(f"{file}: missing field(s) {', '.join(missing)}")
        gaussians = _load_gaussians(path, doc, "gaussians", file)
        initial_g = None if doc.get("initial_gaussians") is None else _load_gaussians(path, doc, "initial_gaussians", file)
        params = _params_from_json(doc["params"], f"{file}: params")
        initial = doc.get("initial_params")
        initial = None if initial is None else _params_from_json(initial, f"{file}: initial_params")
        dt = doc["dt"]
        if not is_number(dt) or not (dt > 0 and math.isfinite(dt)):
            raise ValueError(f"{file}: dt: expected a positive time step in seconds, got {dt!r}")
        gravity = _tensor(doc["gravity"], (3,), f"{file}: gravity")
        ground = doc["ground_height"]
        if ground is not None and (not is_number(ground) or not math.isfinite(ground)):
            raise ValueError(f"{file}: ground_height: expected a number (m) or null, got {ground!r}")
        points = _tensor(doc["pusher_points"], None, f"{file}: pusher_points")
        points = points.reshape(0, 3) if points.numel() == 0 else points
        radii = _tensor(doc["pusher_radii"], (points.shape[0],), f"{file}: pusher_radii")
        if points.ndim != 2 or points.shape[1] != 3:
            raise ValueError(f"{file}: pusher_points: expected shape (P, 3), got {tuple(points.shape)}")
        settings = []
        for key, kind in (("sdf", SoftSDFSettings), ("contact", ContactSettings)):
            section = doc[key]
            names = {f.name for f in dataclasses.fields(kind)}
            if not isinstance(section, dict) or set(section) - names:
                raise ValueError(f"{file}: {key}: expected a mapping with keys among {sorted(names)}, got {section!r}")
            settings.append(kind(**section))
        info = doc.get("info", {})
        if not isinstance(info, dict):
            raise ValueError(f"{file}: info: expected a JSON object, got {type(info).__name__}")
        wm = cls(gaussians, params, initial, float(dt), tuple(float(g) for g in gravity), ground,
                 str(doc["ground_contacts"]), points, radii, settings[0], settings[1], info, initial_g)
        try:
            wm.model()  # the simulator's own checks (ground_contacts, mass, ...)
        except ValueError as err:
            raise ValueError(f"{file}: {err}") from err
        return wm


def _load_gaussians(folder: Path, doc: dict, key: str, file: Path) -> SphereGaussians:
    """The Gaussians in the .npz that doc[key] names inside `folder`."""
    name = doc[key]
    if not isinstance(name, str) or Path(name).name != name or not (folder / name).is_file():
        raise ValueError(f"{file}: {key}: expected the name of a .npz file inside {folder}, got {name!r}")
    try:
        return SphereGaussians.load_npz(folder / name)
    except ValueError as err:
        raise ValueError(f"{file}: {key}: {folder / name} is not a Gaussians .npz ({err})") from err


def params_values(params: PhysicalParams) -> dict:
    """Physical values of unbatched params as plain floats: mass kg, inertia 3x3 kg m^2, mu,
    stiffness and damping (kappa and delta in effective-mass gain mode)."""
    p = PhysicalParams(*(t.detach() for t in params.tensors()))
    return {"mass": float(p.mass), "inertia": p.inertia.double().tolist(), "mu": float(p.mu),
            "stiffness": float(p.stiffness), "damping": float(p.damping)}


def _params_to_json(params: PhysicalParams) -> dict:
    raw = {name: t.detach().double().tolist() for name, t in zip(_PARAM_FIELDS, params.tensors())}
    return {"raw": raw, "values": params_values(params)}


def _params_from_json(doc, where: str) -> PhysicalParams:
    if not isinstance(doc, dict) or not isinstance(doc.get("raw"), dict):
        raise ValueError(f"{where}: expected an object with 'raw' unconstrained parameters")
    raw = doc["raw"]
    missing = [k for k in _PARAM_FIELDS if k not in raw]
    if missing:
        raise ValueError(f"{where}.raw: missing field(s) {', '.join(missing)}")
    return PhysicalParams(*(_tensor(raw[k], _PARAM_SHAPES[k], f"{where}.raw.{k}") for k in _PARAM_FIELDS))


def _tensor(value, shape, where: str) -> torch.Tensor:
    try:
        t = torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{where}: expected numbers ({err})") from err
    if shape is not None and tuple(t.shape) != tuple(shape):
        raise ValueError(f"{where}: expected shape {tuple(shape)}, got {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{where}: expected finite values, got NaN or inf")
    return t.to(torch.get_default_dtype())


def _interval_steps(substeps, intervals: int) -> list[int]:
    """Physics steps in each of `intervals` frame intervals: `substeps`, one count >= 1 for all or
    a sequence of one per interval (Clip.step_counts: a clip's recorded times)."""
    counts = [substeps] * intervals if isinstance(substeps, numbers.Integral) else list(substeps)
    if len(counts) != intervals or not all(isinstance(n, numbers.Integral) and n >= 1 for n in counts):
        raise ValueError(f"substeps: expected a count >= 1 or {intervals} of them, got {substeps!r}")
    return [int(n) for n in counts]


def predict_states(model: Model, start: State, frames: int, substeps, pusher_velocity=None,
                   detach_every: int = 0) -> State:
    """Simulate `frames` - 1 frame intervals of `substeps` steps each (one count, or one per
    interval: _interval_steps) from `start` (B,) and return the states at the frames, fields (B, frames,
    ...), the start first. pusher_velocity: (B, frames - 1, 3) m/s held over each interval, or
    None for a still pusher. detach_every > 0 cuts the gradient's path through the state every
    that many frames (truncated BPTT)."""
    if frames < 1:
        raise ValueError(f"frames: expected a count >= 1, got {frames}")
    counts = _interval_steps(substeps, frames - 1)
    batch = start.position.shape[0]
    if pusher_velocity is None:
        pusher_velocity = start.position.new_zeros(batch, max(frames - 1, 0), 3)
    if pusher_velocity.shape != (batch, frames - 1, 3):
        raise ValueError(f"pusher_velocity: expected shape ({batch}, {frames - 1}, 3), "
                         f"got {tuple(pusher_velocity.shape)}")
    prepared = prepare(model, batch)
    state, out = start, [start]
    for t in range(frames - 1):
        if detach_every and t > 0 and t % detach_every == 0:
            state = type(state)(*(x.detach() for x in state))
        for _ in range(counts[t]):
            state = step_prepared(model, prepared, state, pusher_velocity[:, t])
        out.append(state)
    return type(start)(*(torch.stack(parts, dim=1) for parts in zip(*out)))


def predict_hand_states(model: Model, start: State, joint_targets: torch.Tensor, substeps,
                        detach_every: int = 0) -> State:
    """Simulate a scene with the hand (model.hand set) from `start` (B,) through the joint targets
    joint_targets (B, T, 16) rad, row t held from frame t to t + 1 (start.hand_target should be
    row 0), `substeps` physics steps per frame (simulator.control_step; one count, or one per
    interval: _interval_steps). Returns the states at the
    T frames, fields (B, T, ...), the start first; the last row of targets is not used.
    detach_every > 0 cuts the gradient's path through the state every that many frames. A state
    that turns non-finite (contact gains too stiff or damped for the step) is repeated to the last
    frame instead of being stepped on (the hand's kinematics refuse NaN joints)."""
    if model.hand is None:
        raise ValueError("model: expected a Model with a hand (hand=cgwm_env.physics.hand.HandModel())")
    batch = start.position.shape[0]
    if joint_targets.ndim != 3 or joint_targets.shape[0] != batch or joint_targets.shape[2] != start.hand.shape[1]:
        raise ValueError(f"joint_targets: expected shape ({batch}, T, {start.hand.shape[1]}) rad, "
                         f"got {tuple(joint_targets.shape)}")
    counts = _interval_steps(substeps, joint_targets.shape[1] - 1)
    prepared = prepare(model, batch)
    state, out = start, [start]
    for t in range(joint_targets.shape[1] - 1):
        if detach_every and t > 0 and t % detach_every == 0:
            state = type(state)(*(x.detach() for x in state))
        state = control_step(model, prepared, state, joint_targets[:, t] - state.hand_target, counts[t])
        out.append(state)
        if not is_finite(state):
            out += [state] * (joint_targets.shape[1] - len(out))
            break
    return type(start)(*(torch.stack(parts, dim=1) for parts in zip(*out)))


def pusher_gaussians(radius: float, color=(0.25, 0.25, 0.28), count: int = 96) -> SphereGaussians:
    """Gaussians that draw a sphere of `radius` m about the origin: `count` of scale radius / 4 on
    a Fibonacci shell of radius 0.75 radius (their 2-sigma discs cover the sphere's silhouette)."""
    points = fibonacci_sphere(count).to(torch.get_default_dtype()) * (0.75 * radius)
    colors = torch.as_tensor(color, dtype=points.dtype).expand(count, 3)
    return SphereGaussians.from_spheres(points, 0.5 * radius, colors)


def render_states(gaussians: SphereGaussians, position: torch.Tensor, quat: torch.Tensor, camera: Camera,
                  background, pusher: torch.Tensor | None = None, pusher_look: SphereGaussians | None = None,
                  geometry_gradient: bool = False) -> torch.Tensor:
    """Images (T, H, W, 3) of the object at poses position (T, 3), quat (T, 4), with the pusher
    (drawn by `pusher_look` at positions pusher (T, 3)) if given. The image's gradient reaches the
    poses (and the appearance); the Gaussians' geometry only with geometry_gradient (stage II
    moves geometry through the simulator alone, paper section III-D-4)."""
    g = gaussians
    if not geometry_gradient:
        g = SphereGaussians(g.centers.detach(), g.log_scales.detach(), g.opacity_logits, g.colors)
    images = []
    for t in range(position.shape[0]):
        scene = SphereGaussians(g.transformed_centers(position[t], quat[t]), g.log_scales, g.opacity_logits, g.colors)
        if pusher is not None and pusher_look is not None:
            scene = with_pusher(scene, pusher_look, pusher[t])
        images.append(render(scene, camera, background=background).rgb)
    return torch.stack(images)


def with_pusher(scene: SphereGaussians, pusher_look: SphereGaussians, position: torch.Tensor) -> SphereGaussians:
    """World-frame Gaussians `scene` joined by the pusher's look placed at `position` (3,), m."""
    look = pusher_look.to(scene.centers)
    return SphereGaussians(torch.cat((scene.centers, look.centers + position.detach())),
                           torch.cat((scene.log_scales, look.log_scales)),
                           torch.cat((scene.opacity_logits, look.opacity_logits)),
                           torch.cat((scene.colors, look.colors)))
