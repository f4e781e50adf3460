"""A clip's initial state from its own images, the model's parameters frozen (paper appendix E):
the pose by aligning renders with a frame, the velocity from the first three frames."""

from __future__ import annotations

import dataclasses
import math
import time

import torch

from cgwm_env.learn.clips import Clip, leap_state
from cgwm_env.learn.losses import ImageLoss
from cgwm_env.learn.settings import LearnSettings
from cgwm_env.learn.world_model import predict_states, render_states, with_pusher
from cgwm_env.physics import math3d
from cgwm_env.physics.gaussians import SphereGaussians
from cgwm_env.physics.hand_mjcf import PALM_Z
from cgwm_env.physics.model import Model, PhysicalParams, State
from cgwm_env.render import render
from cgwm_env.render.camera import Camera


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
        if {1, 2} & set(clip.off_clock):
            raise ValueError(f"clip: {clip.path}: frames 1 and 2 give the initial velocity, but "
                             f"{sorted({1, 2} & set(clip.off_clock))} are off the clip's clock; cut the clip after them")
        t1, t2 = (float(t) for t in clip.frame_times()[1:3])
        p1, q1, _ = estimate_pose(model.gaussians, clip, 1, settings, start=(position, quat))
        p2, q2, _ = estimate_pose(model.gaussians, clip, 2, settings, start=(p1, q1))
        g = torch.tensor(model.gravity, dtype=position.dtype)
        velocity = 0.5 * ((p1 - position) / t1 - 0.5 * g * t1 + (p2 - position) / t2 - 0.5 * g * t2)
        omega = 0.5 * (math3d.quat_log(math3d.quat_mul(q1, math3d.quat_conj(quat))) / t1
                       + math3d.quat_log(math3d.quat_mul(q2, math3d.quat_conj(quat))) / t2)
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
        states = predict_states(frozen, s0, 3, clip.step_counts(settings.substeps)[:2], actions)
        images = render_states(frozen.gaussians, states.position[0, 1:], states.quat[0, 1:], clip.camera,
                               clip.background, None if pushers is None else pushers[1:3], look)
        loss = loss_fn(images, clip.images[1:3]).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return v.detach(), w.detach()


def estimate_leap_state(model: Model, clip: Clip, settings: LearnSettings = LearnSettings()) -> tuple[State, dict]:
    """estimate_initial_state for a LEAP Hand clip: the object's pose from frame 0 with the hand's
    pixels replaced by the background (estimate_pose), at rest (the clips start before a finger
    touches it), the hand as recorded. Returns the state and a report dict."""
    start = time.perf_counter()
    hand = clip.hand_masks[..., None]
    clean = dataclasses.replace(clip, images=clip.images * (1.0 - hand) + clip.background * hand)
    position, quat, pose_loss = estimate_pose(model.gaussians, clean, 0, settings)
    position = rest_on_plane(model.gaussians, clip.camera, position, quat, PALM_Z)
    state = leap_state(clip, position[None], quat[None])
    report = {"position": position.tolist(), "quat": quat.tolist(), "velocity": [0.0] * 3, "omega": [0.0] * 3,
              "pose_loss": pose_loss, "velocity_mode": "rest", "seconds": time.perf_counter() - start}
    return state, report
