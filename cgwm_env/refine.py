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

`cgwm learn --data DIR --gaussians FILE --out MODEL` runs it on a folder of clips and saves a
WorldModel bundle (cgwm_env.world_model), a per-iteration log (loss, PSNR, parameters) and the
training PSNR curve.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from cgwm_env import math3d
from cgwm_env.camera import Camera
from cgwm_env.collision import SoftSDFSettings
from cgwm_env.data.dataset import load_dataset
from cgwm_env.gaussians import SphereGaussians
from cgwm_env.metrics import d_ssim, psnr
from cgwm_env.model import Model, PhysicalParams, State
from cgwm_env.render import render
from cgwm_env.world_model import (WorldModel, params_values, predict_hand_states, predict_states, pusher_gaussians,
                                  render_states, with_pusher)

STRUCTURES = ("dssim", "loftr")
PARAMETERS = {"mass": (0,), "inertia": (1, 2), "mu": (3,), "stiffness": (4,), "damping": (5,)}  # -> _to_leaves' indices
VELOCITY_MODES = ("auto", "estimate", "rest")


@dataclass(frozen=True)
class LearnSettings:
    """iterations: Adam steps; parameters: which of theta are learned (some of "mass",
    "inertia", "mu", "stiffness", "damping"; the others keep their initial values); lr: step
    on the unconstrained parameters (log mass, inertia factor, softplus^-1 mu, log stiffness,
    log damping); lr_geometry: step of the sphere
    centres, m (log-scales get lr_geometry / median scale; 0 freezes geometry); max_shift: how
    far a centre may move from stage I's, m; max_scale_change: how far a scale may move from
    stage I's, as a fraction of it; window: frames per truncated-BPTT window (0: the
    whole clip); lambda_structure: weight l of the structural term; structure: "dssim" or
    "loftr" (then loftr_weights, a local kornia LoFTR state dict, is required); substeps:
    physics steps per frame (dt = 1 / (fps substeps)); candidates: random orientations scored
    for the initial pose (estimate_pose; 128 left a resting duck and mug 1.7-2.3 rad off, in
    poses that fit the image worse than the true one); pose_iterations, velocity_iterations:
    refinement steps of the initial state; velocity: "estimate", "rest" or "auto" (estimate
    unless the clip has a pusher); max_stiffness_damping: bound on kappa + delta in
    effective-mass gain mode (stable below 2), and with plain gains and the hand on the summed
    damping of its contact rows (_project); sdf_beta: LogSumExp sharpness of the learned
    model's soft signed distance, 1/m (the model's SoftSDFSettings.beta; over stage I's dense
    Gaussians the default 2000 pads the collision surface by up to 1.5 mm: configs/learn_leap.yaml)."""

    iterations: int = 150
    parameters: tuple[str, ...] = ("mu", "stiffness", "damping")
    lr: float = 0.04
    lr_geometry: float = 0.0
    max_shift: float = 0.002
    max_scale_change: float = 0.1
    window: int = 5
    lambda_structure: float = 0.2
    structure: str = "dssim"
    loftr_weights: str | None = None
    substeps: int = 16
    candidates: int = 512
    pose_iterations: int = 60
    velocity_iterations: int = 40
    velocity: str = "auto"
    max_stiffness_damping: float = 1.9
    sdf_beta: float = SoftSDFSettings.beta
    seed: int = 0

    def __post_init__(self):
        for name, least in (("iterations", 0), ("window", 0), ("substeps", 1), ("candidates", 1),
                            ("pose_iterations", 0), ("velocity_iterations", 0), ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name}: expected an int >= {least}, got {value!r}")
        for name in ("lr", "max_shift", "max_stiffness_damping", "sdf_beta"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: expected a positive number, got {getattr(self, name)!r}")
        if not 0.0 < self.max_scale_change < 1.0:
            raise ValueError(f"max_scale_change: expected a fraction in (0, 1), got {self.max_scale_change!r}")
        if not self.lr_geometry >= 0:
            raise ValueError(f"lr_geometry: expected a number >= 0 (m), got {self.lr_geometry!r}")
        if not 0.0 <= self.lambda_structure <= 1.0:
            raise ValueError(f"lambda_structure: expected a weight in [0, 1], got {self.lambda_structure!r}")
        if self.structure not in STRUCTURES:
            raise ValueError(f"structure: expected one of {STRUCTURES}, got {self.structure!r}")
        if self.structure == "loftr" and not self.loftr_weights:
            raise ValueError("loftr_weights: structure 'loftr' needs a local LoFTR weights file (none can be downloaded)")
        if self.velocity not in VELOCITY_MODES:
            raise ValueError(f"velocity: expected one of {VELOCITY_MODES}, got {self.velocity!r}")
        names = tuple(self.parameters) if isinstance(self.parameters, (list, tuple)) else ()
        if not names or len(set(names)) != len(names) or not set(names) <= set(PARAMETERS):
            raise ValueError(f"parameters: expected distinct names among {tuple(PARAMETERS)}, got {self.parameters!r}")
        object.__setattr__(self, "parameters", names)


@dataclass(frozen=True)
class Clip:
    """One video clip from a fixed camera. images (T, H, W, 3) in [0, 1]; masks (T, H, W);
    background (H, W, 3): what the renders are drawn over (the clip's background image, or
    black with the images composited through their masks); fps: frames per second;
    pusher_start (3,) m, pusher_velocity (T - 1, 3) m/s, pusher_radius m: the kinematic pusher,
    or None; truth: the recorded states at the frames as a State with a batch of 1 and a time
    axis, (1, T, ...), or None; physics: meta.json's physics record (the data's simulator).
    LEAP Hand clips (scenario "leap") also have joint_pos (T, 16) and joint_target (T, 16) rad
    (row t held from frame t to t + 1) and hand_masks (T, H, W); other clips have None."""

    path: str
    images: torch.Tensor
    masks: torch.Tensor
    camera: Camera
    background: torch.Tensor
    fps: float
    scenario: str
    object: str
    pusher_start: torch.Tensor | None = None
    pusher_velocity: torch.Tensor | None = None
    pusher_radius: float | None = None
    pusher_color: tuple = (0.25, 0.25, 0.28)
    truth: State | None = None
    physics: dict = dataclasses.field(default_factory=dict)
    joint_pos: torch.Tensor | None = None
    joint_target: torch.Tensor | None = None
    hand_masks: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.images.shape[0]

    def pusher_look(self) -> SphereGaussians | None:
        return None if self.pusher_radius is None else pusher_gaussians(self.pusher_radius, self.pusher_color)

    def pusher_positions(self) -> torch.Tensor | None:
        """The pusher's positions at the frames (T, 3), m (velocities held over each interval)."""
        if self.pusher_start is None:
            return None
        steps = torch.cumsum(self.pusher_velocity / self.fps, dim=0)
        return torch.cat((self.pusher_start[None], self.pusher_start + steps))


def load_clip(path) -> Clip:
    """A Clip from a dataset folder (docs/datasets.md): one fixed camera, fps, and for a push the
    pusher's recorded start (states.npz pusher_pos) and velocities (pusher_vel)."""
    data = load_dataset(path)
    meta = data.meta
    if len(meta["cameras"]) != 1 or "fps" not in meta:
        raise ValueError(f"path: {path}: expected a clip (one fixed camera and an fps), got "
                         f"{len(meta['cameras'])} cameras")
    if len(data) < 2:
        raise ValueError(f"path: {path}: expected a clip of at least 2 frames, got {len(data)}")
    images, masks = data.images, data.masks
    if data.background is None:
        images, background = images * masks[..., None], torch.zeros(images.shape[1:])
    else:
        background = data.background
    states = data.states or {}
    pusher = {}
    if "pusher_vel" in states or meta.get("pusher") is not None:
        if "pusher_pos" not in states or "pusher_vel" not in states:
            raise ValueError(f"path: {path}: a push clip needs states.npz arrays pusher_pos and pusher_vel")
        radius = (meta.get("pusher") or {}).get("radius") or (meta.get("physics") or {}).get("pusher_radius")
        if not isinstance(radius, (int, float)) or not radius > 0:
            raise ValueError(f"path: {path}: meta.json pusher.radius: expected a positive radius (m), got {radius!r}")
        start = torch.as_tensor(states["pusher_pos"][0], dtype=torch.float32)
        pusher = dict(pusher_start=start, pusher_velocity=torch.as_tensor(states["pusher_vel"][:-1], dtype=torch.float32),
                      pusher_radius=float(radius), pusher_color=_pusher_color(data, start, float(radius)))
    truth = None
    if all(k in states for k in ("object_pos", "object_quat", "object_vel", "object_angvel")):
        as_t = lambda k: torch.as_tensor(states[k], dtype=torch.float32)[None]  # noqa: E731
        pusher_pos = as_t("pusher_pos") if "pusher_pos" in states else None
        truth = State.make(as_t("object_pos")[0], quat=as_t("object_quat")[0], velocity=as_t("object_vel")[0],
                           omega=as_t("object_angvel")[0], pusher=None if pusher_pos is None else pusher_pos[0])
        truth = type(truth)(*(x[None] for x in truth))
    hand = _leap_fields(data, path) if meta["scenario"] == "leap" else {}  # clips with the LEAP Hand
    return Clip(str(path), images, masks, data.cameras[0], background, float(meta["fps"]), str(meta["scenario"]),
                str(meta["object"]), truth=truth, physics=dict(meta.get("physics") or {}), **pusher, **hand)


def clip_paths(root, split: str) -> list[Path]:
    """The clips of `split` ("train" or "test") under `root`: its folders named split_*, or root
    itself when it is a single clip (a folder with meta.json)."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"data: expected a folder of clips, got {root}")
    if (root / "meta.json").is_file():
        return [root]
    paths = sorted(p for p in root.glob(f"{split}_*") if (p / "meta.json").is_file())
    if not paths:
        raise ValueError(f"data: no {split}_* clip folders (with meta.json) in {root}")
    return paths


def _pusher_color(data, start: torch.Tensor, radius: float) -> tuple:
    """The pusher's colour: the median of frame 0's pixels within half its projected radius,
    outside the object's mask; grey where it is not in view."""
    camera = data.cameras[0]
    uv, z = camera.project(start[None])
    if not z[0] > 0:
        return (0.25, 0.25, 0.28)
    rows, cols = torch.meshgrid(torch.arange(camera.height) + 0.5, torch.arange(camera.width) + 0.5, indexing="ij")
    r_px = 0.5 * float(camera.fx) * radius / float(z[0])
    near = ((cols - uv[0, 0]) ** 2 + (rows - uv[0, 1]) ** 2 <= max(r_px, 0.75) ** 2) & (data.masks[0] < 0.5)
    if not near.any():
        return (0.25, 0.25, 0.28)
    return tuple(float(c) for c in data.images[0][near].median(dim=0).values)


# ---------------------------------------------------------------------------- losses


class ImageLoss:
    """(1 - l) L1 + l S between predicted and true images (T, H, W, 3), S = D-SSIM or a LoFTR
    feature distance; returns per-frame losses (T,)."""

    def __init__(self, settings: LearnSettings):
        self.lam = settings.lambda_structure
        self.loftr = LoftrFeatureLoss(settings.loftr_weights) if settings.structure == "loftr" else None

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        l1 = (pred - target).abs().mean(dim=(-3, -2, -1))
        if self.lam == 0:
            return l1
        structure = self.loftr(pred, target) if self.loftr is not None else d_ssim(pred, target)
        return (1.0 - self.lam) * l1 + self.lam * structure


class LoftrFeatureLoss:
    """Distance of LoFTR's backbone features (coarse 1/8 and fine 1/2 resolution, unit length
    per location) of grayscale images (T, H, W, 3) -> (T,): mean of 1 - cosine similarity. The
    weights come from a local file (a kornia LoFTR state dict, or a checkpoint holding one under
    "state_dict"), read with torch.load(weights_only=True)."""

    def __init__(self, weights):
        from kornia.feature import LoFTR

        path = Path(weights)
        if not path.is_file():
            raise ValueError(f"loftr_weights: no file at {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises several types for unreadable or unsafe files
            raise ValueError(f"loftr_weights: cannot read {path} as a torch state dict ({err})") from err
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise ValueError(f"loftr_weights: expected a state dict in {path}, got {type(state).__name__}")
        state = {k.removeprefix("matcher."): v for k, v in state.items()}
        net = LoFTR(pretrained=None)
        try:
            net.load_state_dict(state)
        except RuntimeError as err:
            raise ValueError(f"loftr_weights: {path} does not fit kornia's LoFTR ({err})") from err
        self.backbone = net.backbone.eval().requires_grad_(False)

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weights = pred.new_tensor([0.299, 0.587, 0.114])
        gray = lambda x: (x @ weights)[:, None]  # noqa: E731
        total = 0.0
        for a, b in zip(self.backbone(gray(pred)), self.backbone(gray(target))):
            cos = torch.nn.functional.cosine_similarity(a, b, dim=1, eps=1e-6)
            total = total + (1.0 - cos).mean(dim=(-2, -1))
        return total / 2


# ---------------------------------------------------------------------------- initial state


def _mask_loss(rendered: tuple, clip: Clip, frames) -> torch.Tensor:
    """Per-frame image L1 plus the L1 of the object's alpha against the mask, (len(frames),)."""
    rgb, alpha = rendered
    return ((rgb - clip.images[frames]).abs().mean(dim=(-3, -2, -1))
            + (alpha - clip.masks[frames]).abs().mean(dim=(-2, -1)))


def _render_pose(gaussians: SphereGaussians, clip: Clip, position: torch.Tensor, quat: torch.Tensor, frame: int):
    """Images (N, H, W, 3) over the clip's background, with the pusher where it is in frame
    `frame`, and the object's alpha (N, H, W), for poses position (N, 3), quat (N, 4)."""
    g = SphereGaussians(*(t.detach() for t in gaussians.tensors()))
    look, pushers = clip.pusher_look(), clip.pusher_positions()
    rgbs, alphas = [], []
    for p, q in zip(position, quat):
        obj = SphereGaussians(g.transformed_centers(p, math3d.quat_normalize(q)), g.log_scales, g.opacity_logits,
                              g.colors)
        out = render(obj, clip.camera, background=clip.background)
        rgb = out.rgb if look is None else render(with_pusher(obj, look, pushers[frame]), clip.camera,
                                                  background=clip.background).rgb
        rgbs.append(rgb)
        alphas.append(out.alpha)
    return torch.stack(rgbs), torch.stack(alphas)


def _initial_guess(gaussians: SphereGaussians, clip: Clip, frame: int) -> torch.Tensor:
    """A position (3,) on the ray through the mask's centroid, at the distance where the
    Gaussians' rendered area matches the mask's."""
    mask = clip.masks[frame] > 0.5
    if not mask.any():
        raise ValueError(f"clip: {clip.path}: the mask of frame {frame} is empty (no object to align)")
    rows, cols = mask.nonzero().T.to(torch.float32) + 0.5
    camera = clip.camera
    ray = torch.linalg.solve(camera.K, torch.stack((cols.mean(), rows.mean(), torch.tensor(1.0))))
    ray = camera.T_cw[:3, :3].T @ (ray / ray.norm())
    reference = 0.3
    probe = camera.position + reference * ray
    area = render(SphereGaussians(*(t.detach() for t in gaussians.tensors())), camera,
                  pose=(probe, torch.tensor([1.0, 0, 0, 0]))).alpha.sum()
    distance = reference * math.sqrt(float(area) / float(mask.sum())) if area > 0 else reference
    return camera.position + distance * ray


def estimate_pose(gaussians: SphereGaussians, clip: Clip, frame: int = 0, settings: LearnSettings = LearnSettings(),
                  start: tuple | None = None) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The object's pose in frame `frame` by aligning renders with the image and mask:
    `settings.candidates` random orientations, each placed with the Gaussians' centroid at the
    mask's position (placing the body origin there instead put an L-block's true orientation a
    centimetre off the mask, and it was not among the best), or the given start pose (position
    (3,), quat (4,)) alone; the best eight refined by Adam. Returns position (3,) m, unit quat
    (4,) and the final loss."""
    if start is None:
        position = _initial_guess(gaussians, clip, frame)
        gen = torch.Generator().manual_seed(settings.seed)
        quats = math3d.quat_normalize(torch.randn(settings.candidates, 4, generator=gen))
        quats[0] = torch.tensor([1.0, 0.0, 0.0, 0.0])
        centroid = gaussians.centers.detach().mean(0)
        positions = position - math3d.rotate(quats, centroid.expand(len(quats), 3))
        with torch.no_grad():
            scores = _mask_loss(_render_pose(gaussians, clip, positions, quats, frame), clip, [frame] * len(quats))
        starts = [(positions[i], quats[i]) for i in scores.argsort()[:8].tolist()]
    else:
        starts = [start]
    best = None
    for position, quat in starts:
        shift = torch.zeros(3, requires_grad=True)
        turn = torch.zeros(3, requires_grad=True)
        opt = torch.optim.Adam([{"params": [shift], "lr": 1e-3}, {"params": [turn], "lr": 0.03}])
        for it in range(settings.pose_iterations + 1):
            p, q = position + shift, math3d.quat_mul(math3d.quat_exp(turn), quat)
            loss = _mask_loss(_render_pose(gaussians, clip, p[None], q[None], frame), clip, [frame]).sum()
            if it == settings.pose_iterations:
                break
            opt.zero_grad()
            loss.backward()
            opt.step()
        if best is None or float(loss.detach()) < best[2]:
            best = (p.detach(), math3d.quat_normalize(q.detach()), float(loss.detach()))
    return best


def _quat_log(q: torch.Tensor) -> torch.Tensor:
    """Rotation vector (3,) of a unit quaternion (4,), rad (the shorter way round)."""
    q = q if q[0] >= 0 else -q
    norm = q[1:].norm()
    if norm < 1e-12:
        return torch.zeros(3, dtype=q.dtype)
    return 2.0 * torch.atan2(norm, q[0]) * q[1:] / norm


def estimate_initial_state(model: Model, clip: Clip, settings: LearnSettings = LearnSettings()) -> tuple[State, dict]:
    """The clip's initial state (a batch of 1) with the model's parameters frozen (appendix E):
    the pose from frame 0, then (settings.velocity) the linear and angular velocity from frames
    0-2: a ballistic fit of the poses aligned in frames 1 and 2, refined by Adam through the
    simulator on the image loss of frames 1 and 2; an object at rest is moved along the camera
    ray until it stands on the ground (rest_on_plane). Returns the state and a report dict."""
    start = time.perf_counter()
    position, quat, pose_loss = estimate_pose(model.gaussians, clip, 0, settings)
    pusher = None if clip.pusher_start is None else clip.pusher_start[None]
    velocity_mode = settings.velocity
    if velocity_mode == "auto":
        velocity_mode = "rest" if clip.pusher_start is not None else "estimate"
    velocity, omega = torch.zeros(3), torch.zeros(3)
    if velocity_mode == "rest" and model.ground_height is not None:
        position = rest_on_plane(model.gaussians, clip.camera, position, quat, model.ground_height)
    if velocity_mode == "estimate" and len(clip) >= 3:
        dt = 1.0 / clip.fps
        p1, q1, _ = estimate_pose(model.gaussians, clip, 1, settings, start=(position, quat))
        p2, q2, _ = estimate_pose(model.gaussians, clip, 2, settings, start=(p1, q1))
        g = torch.tensor(model.gravity, dtype=position.dtype)
        velocity = 0.5 * ((p1 - position) / dt - 0.5 * g * dt + (p2 - position) / (2 * dt) - g * dt)
        omega = 0.5 * (_quat_log(math3d.quat_mul(q1, _conj(quat))) / dt
                       + _quat_log(math3d.quat_mul(q2, _conj(quat))) / (2 * dt))
        velocity, omega = _refine_velocity(model, clip, position, quat, velocity, omega, pusher, settings)
    state = State.make(position[None], quat=quat[None], velocity=velocity[None], omega=omega[None], pusher=pusher)
    report = {"position": position.tolist(), "quat": quat.tolist(), "velocity": velocity.tolist(),
              "omega": omega.tolist(), "pose_loss": pose_loss,
              "velocity_mode": velocity_mode, "seconds": time.perf_counter() - start}
    return state, report


def rest_on_plane(gaussians: SphereGaussians, camera: Camera, position: torch.Tensor, quat: torch.Tensor,
                  height: float) -> torch.Tensor:
    """The position (3,) m on the camera's ray through `position` where the object, turned by
    `quat` (4,), touches the horizontal plane z = `height` (the ground, the palm) with its lowest
    sphere. An image pins a pose down least along the viewing ray: a resting object estimated
    2-7 mm deep started by jumping out of its support. A level view moves it straight up or down."""
    g = SphereGaussians(*(t.detach() for t in gaussians.tensors()))
    lowest = (math3d.rotate(quat.expand(len(g), 4), g.centers)[:, 2] - g.radii).min()
    ray = position - camera.position.to(position)
    if abs(float(ray[2])) < 0.1 * float(ray.norm()):
        ray = position.new_tensor([0.0, 0.0, 1.0])
    return position + ray * (height - position[2] - lowest) / ray[2]


def _conj(q: torch.Tensor) -> torch.Tensor:
    return q * q.new_tensor([1.0, -1.0, -1.0, -1.0])


def _refine_velocity(model, clip, position, quat, velocity, omega, pusher, settings):
    """(velocity, omega) refined on frames 1 and 2 through the simulator, parameters frozen."""
    frozen = dataclasses.replace(model, params=PhysicalParams(*(t.detach() for t in model.params.tensors())),
                                 gaussians=SphereGaussians(*(t.detach() for t in model.gaussians.tensors())))
    v = velocity.clone().requires_grad_()
    w = omega.clone().requires_grad_()
    opt = torch.optim.Adam([{"params": [v], "lr": 0.01}, {"params": [w], "lr": 0.1}])
    loss_fn = ImageLoss(dataclasses.replace(settings, lambda_structure=0.0, structure="dssim"))
    look, pushers = clip.pusher_look(), clip.pusher_positions()
    actions = None if clip.pusher_velocity is None else clip.pusher_velocity[None, :2]
    for _ in range(settings.velocity_iterations):
        s0 = State.make(position[None], quat=quat[None], velocity=v[None], omega=w[None], pusher=pusher)
        states = predict_states(frozen, s0, 3, settings.substeps, actions)
        images = render_states(frozen.gaussians, states.position[0, 1:], states.quat[0, 1:], clip.camera,
                               clip.background, None if pushers is None else pushers[1:3], look)
        loss = loss_fn(images, clip.images[1:3]).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return v.detach(), w.detach()


# ---------------------------------------------------------------------------- learning


def volume_inertia(gaussians: SphereGaussians, mass: float, resolution: int = 40) -> torch.Tensor:
    """Inertia (3, 3) kg m^2 about the body origin of `mass` kg spread uniformly over the solid
    the sphere union bounds, on a grid of `resolution` cells along the longest side: the union
    closed by the median radius (so gaps between touching spheres of a shell seal) with its
    enclosed cavities filled."""
    from scipy import ndimage

    from cgwm_env.sggs import sphere_distance

    if not mass > 0:
        raise ValueError(f"mass: expected a positive mass (kg), got {mass!r}")
    g64 = SphereGaussians(*(t.detach().double() for t in gaussians.tensors()))
    c, r = g64.centers, g64.radii
    reach = float(r.median())
    lo, hi = (c - r[:, None]).min(0).values - 2 * reach, (c + r[:, None]).max(0).values + 2 * reach
    spacing = float((hi - lo).max()) / resolution
    shape = tuple(int(n) for n in torch.ceil((hi - lo) / spacing))
    axes = [lo[i] + (torch.arange(n, dtype=torch.float64) + 0.5) * spacing for i, n in enumerate(shape)]
    points = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    dist = sphere_distance(g64, points, settings=None).view(shape).numpy()
    cells = max(1, round(reach / spacing))
    ball = np.linalg.norm(np.indices((2 * cells + 1,) * 3) - cells, axis=0) <= cells
    filled = ndimage.binary_fill_holes(dist <= reach)
    solid = torch.as_tensor(ndimage.binary_erosion(filled, ball) | (dist <= 0)).reshape(-1)
    inside = points[solid]
    second = inside.T @ inside / len(inside)  # E[p p^T]
    inertia = mass * (torch.trace(second) * torch.eye(3, dtype=torch.float64) - second)
    return inertia.to(torch.get_default_dtype())


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
        starts, reports = [], []
        for clip in clips:
            estimate = estimate_leap_state if clip.joint_target is not None else estimate_initial_state
            state, report = estimate(base, clip, settings)
            starts.append(state)
            reports.append({"clip": clip.path, **report})
    else:
        if len(starts) != len(clips) or not all(isinstance(s, State) and s.position.shape == (1, 3) for s in starts):
            raise ValueError(f"starts: expected one State of batch 1 per clip ({len(clips)}), got {starts!r}")
        reports = [{"clip": c.path, "position": s.position[0].tolist(), "quat": s.quat[0].tolist(),
                    "velocity": s.velocity[0].tolist(), "omega": s.omega[0].tolist(), "given": True}
                   for c, s in zip(clips, starts)]
    init_seconds = time.perf_counter() - start_time

    learned = {i for name in settings.parameters for i in PARAMETERS[name]}
    leaves = [t.detach().clone().requires_grad_(i in learned) for i, t in enumerate(_to_leaves(params))]
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
    with tqdm(total=settings.iterations, desc="stage II", disable=not progress, mininterval=1.0) as bar:
        for it in range(settings.iterations + 1):
            g = SphereGaussians(centers, log_scales, gaussians.opacity_logits.detach(), gaussians.colors.detach())
            model = clip_model(g, _from_leaves(leaves), clips[0], settings.substeps, **model_kwargs)
            try:  # the inputs were checked by iteration 0; later, only a step of theta can make a state NaN
                total, psnrs = _clips_loss(model, clips, starts, settings, loss_fn)
            except ValueError as err:
                if it == 0:
                    raise
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
            _project(leaves, centers, log_scales, centers0, log_scales0, settings, model)
            bar.update()
            bar.set_postfix(loss=f"{record['loss']:.4f}", psnr=f"{record['psnr']:.2f}", mu=f"{record['mu']:.3f}")
    _, best_leaves, best_centers, best_scales, best_it = best
    learned = SphereGaussians(best_centers, best_scales, gaussians.opacity_logits.detach(), gaussians.colors.detach())
    model = clip_model(learned, _from_leaves(best_leaves), clips[0], settings.substeps, **model_kwargs)
    info = {"object": clips[0].object, "scenario": clips[0].scenario, "clips": [c.path for c in clips],
            "fps": clips[0].fps, "substeps": settings.substeps, "initial_states": reports,
            "settings": dataclasses.asdict(settings), "best_iteration": best_it, "stopped": stopped,
            "initial_state_seconds": init_seconds, "seconds": time.perf_counter() - start_time,
            "geometry_shift_max_m": float((best_centers - centers0).norm(dim=1).max())}
    wm = WorldModel.from_model(model, initial_params=params, info=info)
    return dataclasses.replace(wm, initial_gaussians=SphereGaussians(*(t.detach() for t in gaussians.tensors()))), history


def _clips_loss(model: Model, clips: list[Clip], starts: list[State], settings: LearnSettings, loss_fn):
    """The image loss (a scalar tensor) averaged over the clips, and each clip's PSNR (dB)."""
    total, psnrs = 0.0, []
    for clip, s0 in zip(clips, starts):
        pred = _predict_images(model, clip, s0, settings.substeps, settings.window)
        total = total + loss_fn(pred, clip.images[1:]).mean() / len(clips)
        psnrs.append(float(psnr(pred.detach(), clip.images[1:]).mean()))
    return total, psnrs


def _to_leaves(params: PhysicalParams) -> list[torch.Tensor]:
    """The learned variables: log mass, the inertia factor's log diagonal (3,) and its strict
    lower triangle (3,) relative to the diagonal's geometric mean (PhysicalParams keeps those in
    absolute units, where one Adam step would swamp a small diagonal), softplus^-1 mu, log
    stiffness, log damping."""
    raw = params.inertia_factor.detach()
    log_diag = raw.diagonal()
    rows, cols = torch.tril_indices(3, 3, -1)
    relative = raw[rows, cols] / log_diag.mean().exp()
    return [params.log_mass, log_diag, relative, params.mu_raw, params.log_stiffness, params.log_damping]


def _from_leaves(leaves: list[torch.Tensor]) -> PhysicalParams:
    """PhysicalParams of the variables of _to_leaves (differentiable)."""
    log_mass, log_diag, relative, mu_raw, log_k, log_d = leaves
    rows, cols = torch.tril_indices(3, 3, -1)
    lower = torch.zeros(3, 3, dtype=log_diag.dtype).index_put((rows, cols), relative * log_diag.mean().exp())
    return PhysicalParams(log_mass, lower + torch.diag(log_diag), mu_raw, log_k, log_d)


def _predict_images(model: Model, clip: Clip, start: State, substeps: int, window: int) -> torch.Tensor:
    """Rendered prediction of frames 1..T-1 (T - 1, H, W, 3) from `start`."""
    if clip.joint_target is not None:
        return predict_leap_images(model, clip, start, substeps, window)
    actions = None if clip.pusher_velocity is None else clip.pusher_velocity[None]
    states = predict_states(model, start, len(clip), substeps, actions, detach_every=window)
    pushers = clip.pusher_positions()
    return render_states(model.gaussians, states.position[0, 1:], states.quat[0, 1:], clip.camera, clip.background,
                         None if pushers is None else pushers[1:], clip.pusher_look())


@torch.no_grad()
def _project(leaves, centers, log_scales, centers0, log_scales0, settings: LearnSettings, model: Model) -> None:
    """Keep the iterate valid: kappa + delta <= max_stiffness_damping (effective-mass gains,
    stable below 2); with plain gains and the hand, n (1 + mu^2) D dt / m <= max_stiffness_damping
    for the n = max_contacts n_dirs rows of the hand's contacts, each along n - mu d (their damping,
    summed, overshoots above it: a learned cube resting on the palm crept 1.6-4 mm in 2 s at mu 0.53,
    D 0.72 N s/m and at mu 1.16, D 0.475, not at all at D 0.2); centres within max_shift of stage
    I's, scales within a fraction max_scale_change of stage I's."""
    log_k, log_d = leaves[4], leaves[5]
    if model.contact.gain_mode == "effective_mass":
        excess = math.log(settings.max_stiffness_damping) - torch.logaddexp(log_k, log_d)
        if excess < 0:
            log_k += excess
            log_d += excess
    elif model.hand is not None:
        p = _from_leaves(leaves)
        rows = model.hand.max_contacts * model.contact.n_dirs * (1.0 + float(p.mu) ** 2)
        log_d.clamp_(max=math.log(settings.max_stiffness_damping * float(p.mass) / (rows * model.dt)))
    shift = centers - centers0
    norm = shift.norm(dim=1, keepdim=True).clamp(min=1e-12)
    centers.copy_(centers0 + shift * (settings.max_shift / norm).clamp(max=1.0))
    change = settings.max_scale_change
    log_scales.copy_(log_scales0 + (log_scales - log_scales0).clamp(math.log1p(-change), math.log1p(change)))


# ---------------------------------------------------------------------------- clips with the LEAP Hand
#
# A LEAP Hand clip (`cgwm synth --scenario leap`) is learned from with the hand in the model (the
# hand's Model fields of cgwm_env.envs.leap.default_model: HandModel, no ground, plain gains), the
# hand driven by the recorded joint targets. The hand is masked out of the image loss rather than
# drawn: its pixels in the prediction are the recording's (hand_masks), so the loss sees only the
# object and the background. Drawing it would put the hand Gaussians' untrained colours and the
# small gap between our hand's and the recorded hand's motion into every frame's error.


def _leap_fields(data, path) -> dict:
    """joint_pos, joint_target (T, 16) rad and hand_masks (T, H, W) of a LEAP Hand dataset, checked."""
    from cgwm_env.hand import N_JOINTS

    states, T = data.states or {}, len(data)
    fields = {}
    for name in ("joint_pos", "joint_target"):
        if name not in states:
            raise ValueError(f"path: {path}: a leap clip needs states.npz array {name} (T, {N_JOINTS}) rad")
        value = torch.as_tensor(np.asarray(states[name]), dtype=torch.float32)
        if value.shape != (T, N_JOINTS):
            raise ValueError(f"path: {path}: states.npz {name}: expected shape ({T}, {N_JOINTS}) rad, "
                             f"got {tuple(value.shape)}")
        if not torch.isfinite(value).all():
            raise ValueError(f"path: {path}: states.npz {name}: expected finite joint angles (rad)")
        fields[name] = value
    if data.hand_masks is None:
        raise ValueError(f"path: {path}: a leap clip needs hand_masks/ (the hand's mask in every frame)")
    return {**fields, "hand_masks": data.hand_masks}


def hand_fields(clips: list[Clip]) -> dict:
    """The Model fields the scene of `clips` adds: for LEAP Hand clips envs.leap.hand_scene (the
    hand, no ground), else none; a mix raises a ValueError."""
    hands = {c.joint_target is not None for c in clips}
    if len(hands) > 1:
        raise ValueError("clips: expected all LEAP Hand clips or none, got a mix")
    if hands != {True}:
        return {}
    from cgwm_env.envs.leap import hand_scene

    return hand_scene()


def leap_model_kwargs(clips: list[Clip], model_kwargs: dict) -> dict:
    """Model fields for learning from `clips`: with LEAP Hand clips, hand_fields and plain contact
    gains (default_model's) under the caller's `model_kwargs`; else model_kwargs alone."""
    fields = hand_fields(clips)
    if not fields:
        return model_kwargs
    from cgwm_env.contact import ContactSettings

    return {**fields, "contact": ContactSettings(gain_mode="plain"), **model_kwargs}


def leap_state(clip: Clip, position: torch.Tensor, quat: torch.Tensor) -> State:
    """The state (batch 1) at frame 0 of a LEAP Hand clip: the object at rest at position (1, 3) m,
    quat (1, 4), the hand at the recorded joint_pos[0] with targets joint_target[0]."""
    return State.make(position, quat=quat, hand=clip.joint_pos[:1], hand_target=clip.joint_target[:1])


def estimate_leap_state(model: Model, clip: Clip, settings: LearnSettings = LearnSettings()) -> tuple[State, dict]:
    """estimate_initial_state for a LEAP Hand clip: the object's pose from frame 0 with the hand's
    pixels replaced by the background (estimate_pose), at rest (the clips start before a finger
    touches it), the hand as recorded. Returns the state and a report dict."""
    from cgwm_env.envs.leap_task import PALM_Z

    start = time.perf_counter()
    hand = clip.hand_masks[..., None]
    clean = dataclasses.replace(clip, images=clip.images * (1.0 - hand) + clip.background * hand)
    position, quat, pose_loss = estimate_pose(model.gaussians, clean, 0, settings)
    position = rest_on_plane(model.gaussians, clip.camera, position, quat, PALM_Z)
    state = leap_state(clip, position[None], quat[None])
    report = {"position": position.tolist(), "quat": quat.tolist(), "velocity": [0.0] * 3, "omega": [0.0] * 3,
              "pose_loss": pose_loss, "velocity_mode": "rest", "seconds": time.perf_counter() - start}
    return state, report


def paste_recorded_hand(images: torch.Tensor, clip: Clip, first: int = 1) -> torch.Tensor:
    """Predicted images (N, H, W, 3) of frames first..first + N - 1 with the hand's pixels
    (clip.hand_masks) taken from the recording."""
    frames = slice(first, first + images.shape[0])
    hand = clip.hand_masks[frames, ..., None]
    return images * (1.0 - hand) + clip.images[frames] * hand


def predict_leap_images(model: Model, clip: Clip, start: State, substeps: int, window: int) -> torch.Tensor:
    """Frames 1..T-1 (T - 1, H, W, 3) predicted from `start` with the hand following the recorded
    joint targets: the object drawn over the background, the hand's pixels from the recording."""
    states = predict_hand_states(model, start, clip.joint_target[None], substeps, detach_every=window)
    images = render_states(model.gaussians, states.position[0, 1:], states.quat[0, 1:], clip.camera, clip.background)
    return paste_recorded_hand(images, clip)


# ---------------------------------------------------------------------------- command line


def run_learn(data, gaussians_file, out, settings: LearnSettings = LearnSettings(), mass: float = 0.1,
              mu: float = 0.5, stiffness: float = 0.5, damping: float = 0.5, progress: bool = True,
              clips: list[int] | None = None) -> tuple[WorldModel, list[dict]]:
    """`cgwm learn`: stage II on the train clips under `data` (all, or the indices `clips`)
    from the Gaussians in `gaussians_file` (.npz or .ply) and the initial parameter values;
    writes the bundle `out`, out/learn_log.jsonl and out/psnr.png; returns (bundle, history)."""
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
    params = initial_params(gaussians, mass, mu, stiffness, damping)
    with open(out / "learn_log.jsonl", "w") as log:
        wm, history = learn(gaussians, loaded, params, settings, progress, log)
    wm.save(out)
    plot_curves({"ours": [h["psnr"] for h in history]}, out / "psnr.png", f"stage II: {loaded[0].object}")
    v = params_values(wm.params)
    if wm.info["stopped"]:
        print(f"stage II stopped early at {wm.info['stopped']}; kept the best iteration, "
              f"{wm.info['best_iteration']}", file=sys.stderr)
    print(f"stage II: {len(loaded)} clip(s), {len(history) - 1} iterations, PSNR {history[0]['psnr']:.2f} -> "
          f"{history[wm.info['best_iteration']]['psnr']:.2f} dB, mass {v['mass']:.4g} kg, mu {v['mu']:.3f}, "
          f"stiffness {v['stiffness']:.3g}, damping {v['damping']:.3g}, {wm.info['seconds']:.0f} s -> {out}")
    return wm, history


def plot_curves(curves: dict, path, title: str) -> None:
    """Write a PNG of PSNR (dB) against iteration, one line per entry of `curves` {name: [dB]}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    for name, values in curves.items():
        ax.plot(np.arange(len(values)), values, label=name)
    ax.set_xlabel("iteration")
    ax.set_ylabel("training PSNR, dB")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def load_learn_settings(path) -> dict:
    """LearnSettings fields and initial values (mass, mu, stiffness, damping) from a YAML file;
    a ValueError names an unknown key."""
    from cgwm_env.config import read_yaml_mapping

    data = read_yaml_mapping(path, "config")
    known = {f.name for f in dataclasses.fields(LearnSettings)} | {"initial"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown setting in {path}; expected some of {sorted(known)}")
    initial = data.pop("initial", None) or {}
    bad = sorted(set(initial) - {"mass", "mu", "stiffness", "damping"})
    if bad:
        raise ValueError(f"initial.{bad[0]}: unknown setting in {path}; expected mass, mu, stiffness, damping")
    return {"settings": data, "initial": initial}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `cgwm learn`; the command line overrides --config."""
    parser.add_argument("--data", required=True, metavar="DIR", help="folder of train_* clips (or one clip)")
    parser.add_argument("--gaussians", required=True, metavar="FILE", help="stage I Gaussians (.npz or .ply)")
    parser.add_argument("--out", required=True, metavar="MODEL", help="world-model folder to write")
    parser.add_argument("--config", default=None, help="learning settings YAML (see configs/learn.yaml)")
    parser.add_argument("--clips", type=int, nargs="+", default=None, help="train clips to use (indices; default all)")
    parser.add_argument("--iterations", type=int, default=None, help="Adam steps")
    parser.add_argument("--lr", type=float, default=None, help="Adam's step on the unconstrained theta (default 0.04)")
    parser.add_argument("--parameters", nargs="+", default=None, choices=list(PARAMETERS), metavar="NAME",
                        help=f"which of theta to learn, some of {' '.join(PARAMETERS)} (default mu stiffness damping)")
    parser.add_argument("--mass", type=float, default=None, help="initial mass, kg (default 0.1)")
    parser.add_argument("--mu", type=float, default=None, help="initial friction coefficient (default 0.5)")
    parser.add_argument("--stiffness", type=float, default=None, help="initial stiffness (kappa; default 0.5)")
    parser.add_argument("--damping", type=float, default=None, help="initial damping (delta; default 0.5)")
    parser.add_argument("--lr-geometry", type=float, default=None, metavar="M",
                        help="step of the sphere centres, m: 0 (default) freezes the geometry, 2e-5 fine-tunes it")
    parser.add_argument("--loftr-weights", default=None, metavar="FILE",
                        help="local kornia LoFTR weights: use the LoFTR feature loss instead of D-SSIM")
    parser.add_argument("--seed", type=int, default=None, help="seed of the initial-pose candidates")


def main(args: argparse.Namespace) -> int:
    """`cgwm learn` from parsed arguments."""
    config = load_learn_settings(args.config) if args.config else {"settings": {}, "initial": {}}
    fields = dict(config["settings"])
    for name in ("iterations", "lr", "parameters", "seed"):
        if getattr(args, name) is not None:
            fields[name] = getattr(args, name)
    if args.lr_geometry is not None:
        fields["lr_geometry"] = args.lr_geometry
    if args.loftr_weights:
        fields.update(structure="loftr", loftr_weights=args.loftr_weights)
    try:
        settings = LearnSettings(**fields)
    except TypeError as err:
        raise ValueError(f"config: {err}") from err
    initial = {"mass": 0.1, "mu": 0.5, "stiffness": 0.5, "damping": 0.5, **config["initial"]}
    for name in initial:
        if getattr(args, name) is not None:
            initial[name] = getattr(args, name)
    run_learn(args.data, args.gaussians, args.out, settings, clips=args.clips, **initial)
    return 0
