"""Video clips for stage II: a dataset folder (docs/datasets.md) as a Clip, and the LEAP Hand's
fields of a clip (recorded joints, hand masks, the Model fields of its scene)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cgwm_env.data.dataset import load_dataset, off_clock_frames
from cgwm_env.learn.world_model import pusher_gaussians
from cgwm_env.physics.contact import ContactSettings
from cgwm_env.physics.gaussians import SphereGaussians
from cgwm_env.physics.hand import hand_scene
from cgwm_env.physics.hand_mjcf import N_JOINTS
from cgwm_env.physics.model import DAMPING, STIFFNESS, State
from cgwm_env.render.camera import Camera


# Stage II's initial values where none are given: mass kg, mu, and the contact gains in the units of
# the clips' model: plain gains (K N/m, D N s/m) with the LEAP Hand (leap_model_kwargs), else
# effective-mass gains (1/s^2, 1/s; MuJoCo's default solref). The one set in the other's units
# diverges: a plain D of 100 N s/m gives D dt / m = 2.1 for 0.1 kg at 480 Hz, past an explicit
# step's limit of 2 for even one contact row, and a LEAP clip's first frame goes non-finite. The LEAP
# damping is under the bound on the hand's summed contact rows (stage2.plain_damping_limit: 0.46 N s/m
# for 0.1 kg at mu 0.2 and 480 Hz), which learning keeps every iterate under, its start included.
LEAP_INITIAL = {"mass": 0.1, "mu": 0.2, "stiffness": 40.0, "damping": 0.3}
FREE_INITIAL = {"mass": 0.1, "mu": 0.5, "stiffness": STIFFNESS, "damping": DAMPING}


@dataclass(frozen=True)
class Clip:
    """One video clip from a fixed camera. images (T, H, W, 3) in [0, 1]; masks (T, H, W);
    background (H, W, 3): what the renders are drawn over (the clip's background image, or
    black with the images composited through their masks); fps: frames per second;
    pusher_start (3,) m, pusher_velocity (T - 1, 3) m/s, pusher_radius m: the kinematic pusher,
    or None; truth: the recorded states at the frames as a State with a batch of 1 and a time
    axis, (1, T, ...), or None; physics: meta.json's physics record (the data's simulator).
    LEAP Hand clips (scenario "leap") also have joint_pos (T, 16) and joint_target (T, 16) rad
    (row t held from frame t to t + 1) and hand_masks (T, H, W); other clips have None.
    times: (T,) s, each frame's time (states.npz times), or None for frame k at k / fps;
    off_clock: the frames whose image is not of their time (dropped by the camera and shown
    again, or taken off the clip's clock): they are simulated through but not compared."""

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
    times: torch.Tensor | None = None
    off_clock: tuple = ()

    def __len__(self) -> int:
        return self.images.shape[0]

    def frame_times(self) -> torch.Tensor:
        """Each frame's time from the first (T,) s, float64."""
        if self.times is None:
            return torch.arange(len(self), dtype=torch.float64) / self.fps
        return self.times.to(torch.float64) - float(self.times[0])

    def step_counts(self, substeps: int) -> list[int]:
        """Physics steps of dt = 1 / (fps substeps) in each frame interval (T - 1): frame k is
        simulated to the step nearest its time, within dt / 2, so a clock that leaves 1/fps is
        followed; `substeps` each where the times are on the 1/fps grid."""
        ticks = torch.round(self.frame_times() * (self.fps * substeps)).long()
        counts = torch.diff(ticks)
        if not (counts >= 1).all():
            k = int((counts < 1).nonzero()[0, 0])
            raise ValueError(f"path: {self.path}: states.npz times: frames {k} and {k + 1} are less than one "
                             f"physics step (1 / {self.fps * substeps:g} s) apart; learn with more substeps")
        return counts.tolist()

    def require_on_clock(self, substeps: int, what: str) -> None:
        """A ValueError naming `what` if the clip has off-clock frames or times off the 1/fps grid
        by more than half a physics step (`what` simulates every frame interval as 1/fps)."""
        if self.off_clock:
            raise ValueError(f"path: {self.path}: {what} takes frames on the clip's 1/fps clock; frames "
                             f"{list(self.off_clock)} are off it: cut the clip there")
        if any(n != substeps for n in self.step_counts(substeps)):
            worst = float((self.frame_times() - torch.arange(len(self)) / self.fps).abs().max())
            raise ValueError(f"path: {self.path}: {what} takes frames on the clip's 1/fps clock; states.npz "
                             f"times leave k / fps by up to {worst * 1e3:.2f} ms, more than half a physics step: "
                             f"resample the clip or set meta.json fps to its rate")

    def scored(self) -> torch.Tensor:
        """Which frames (T,) bool an image loss compares: all but the off-clock ones."""
        keep = torch.ones(len(self), dtype=torch.bool)
        keep[list(self.off_clock)] = False
        return keep

    def pusher_look(self) -> SphereGaussians | None:
        return None if self.pusher_radius is None else pusher_gaussians(self.pusher_radius, self.pusher_color)

    def pusher_positions(self) -> torch.Tensor | None:
        """The pusher's positions at the frames (T, 3), m (velocities held over each interval)."""
        if self.pusher_start is None:
            return None
        dt = torch.diff(self.frame_times()).to(self.pusher_velocity.dtype)
        steps = torch.cumsum(self.pusher_velocity * dt[:, None], dim=0)
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
    if meta.get("masks_empty"):
        raise ValueError(f"path: {path}: its masks are empty (a recording, not segmented); run `cgwm segment --data {path}`")
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
    times = torch.as_tensor(np.asarray(states["times"], np.float64)) if "times" in states else None
    return Clip(str(path), images, masks, data.cameras[0], background, float(meta["fps"]), str(meta["scenario"]),
                str(meta["object"]), truth=truth, physics=dict(meta.get("physics") or {}), times=times,
                off_clock=_off_clock(data, path), **pusher, **hand)


def _off_clock(data, path) -> tuple:
    """The frames of a dataset whose image is not of their time: meta.json's
    segmentation.off_clock_frames (`cgwm segment`) and those the recording's states.npz
    frame_number and frame_time show (data.dataset.off_clock_frames), checked."""
    T = len(data)
    listed = (data.meta.get("segmentation") or {}).get("off_clock_frames", [])
    if not isinstance(listed, list) or not all(isinstance(k, int) and not isinstance(k, bool) and 0 <= k < T
                                               for k in listed):
        raise ValueError(f"path: {path}: meta.json segmentation.off_clock_frames: expected a list of frame indices "
                         f"in [0, {T}), got {listed!r}")
    frames = sorted(set(listed) | set(off_clock_frames(data.states, float(data.meta["fps"]))))
    if set(range(1, T)) <= set(frames):
        raise ValueError(f"path: {path}: every frame after the first is off the clip's clock {frames} "
                         f"(meta.json segmentation.off_clock_frames, states.npz frame_number/frame_time): "
                         f"nothing to compare a prediction with")
    return tuple(frames)


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


def _leap_fields(data, path) -> dict:
    """joint_pos, joint_target (T, 16) rad and hand_masks (T, H, W) of a LEAP Hand dataset, checked."""
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

    return hand_scene()


def initial_values(clips: list[Clip], given: dict) -> dict:
    """mass, mu, stiffness, damping for stage II on `clips`: `given`'s (some of them) over
    LEAP_INITIAL for LEAP Hand clips, else over FREE_INITIAL. A ValueError names an unknown key."""
    unknown = sorted(set(given) - set(FREE_INITIAL))
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown initial value; expected some of {sorted(FREE_INITIAL)}")
    leap = bool(clips) and clips[0].joint_target is not None
    return {**(LEAP_INITIAL if leap else FREE_INITIAL), **given}


def leap_model_kwargs(clips: list[Clip], model_kwargs: dict) -> dict:
    """Model fields for learning from `clips`: with LEAP Hand clips, hand_fields and plain contact
    gains (default_model's) under the caller's `model_kwargs`; else model_kwargs alone."""
    fields = hand_fields(clips)
    if not fields:
        return model_kwargs

    return {**fields, "contact": ContactSettings(gain_mode="plain"), **model_kwargs}


def leap_state(clip: Clip, position: torch.Tensor, quat: torch.Tensor) -> State:
    """The state (batch 1) at frame 0 of a LEAP Hand clip: the object at rest at position (1, 3) m,
    quat (1, 4), the hand at the recorded joint_pos[0] with targets joint_target[0]."""
    return State.make(position, quat=quat, hand=clip.joint_pos[:1], hand_target=clip.joint_target[:1])


def paste_recorded_hand(images: torch.Tensor, clip: Clip, first: int = 1) -> torch.Tensor:
    """Predicted images (N, H, W, 3) of frames first..first + N - 1 with the hand's pixels
    (clip.hand_masks) taken from the recording."""
    frames = slice(first, first + images.shape[0])
    hand = clip.hand_masks[frames, ..., None]
    return images * (1.0 - hand) + clip.images[frames] * hand
