"""Per-frame 6-DoF pose tracking by render-and-compare: the object's Gaussians are posed so that their
render matches each frame's mask and colours, warm-started from the frames before.

Frame 0 is searched: orientations sampled uniformly, each placed with the Gaussians' centroid on the
mask's ray at the distance where the rendered area matches the mask's; the best few distinct starts
are refined, with the best one's twins (it turned by pi about each principal axis of the centres,
and the best of it turned by each of the shape's symmetries: shape_symmetries),
the best of those are tracked through the whole clip, and the clip's total loss picks one (a
symmetric-looking object can fit its first frame equally well in several poses; the later frames tell
them apart). Each later frame starts from the better of a constant-velocity prediction, the same
prediction with its vertical velocity reversed (a bounce) and the previous pose, recentred on the
mask, then Adam refines the pose. A pose with a Gaussian's centre below the support plane is slid
along the viewing ray until none is (a single view pins depth least); the centres, not the spheres
(2 sigma), since those reach past stage I's true surface and would lift a resting pose up the ray.

The loss per frame: the L1 of the rendered alpha against the mask, plus the colour L1 after a
per-frame, per-channel gain on the object's pixels (exposure and light changes between stage I's
views and the clip do not pull the pose); the hand's pixels (hand_masks) and the pusher's disc, where
they are not the object's, are not scored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from cgwm_env.checks import check_count
from cgwm_env.learn.clips import Clip
from cgwm_env.physics import math3d
from cgwm_env.physics.gaussians import SphereGaussians
from cgwm_env.render import render
from cgwm_env.render.camera import Camera


@dataclass(frozen=True)
class TrackSettings:
    """candidates: orientations scored at frame 0; starts: the best distinct ones refined there;
    hypotheses: refined starts tracked through the clip; iterations / start_iterations: Adam steps per
    frame / per start; lr_position (m) and lr_rotation (rad): Adam steps; color_weight: weight of the
    colour L1 beside the mask L1; seed: of the samples."""

    candidates: int = 512
    starts: int = 12
    hypotheses: int = 3
    iterations: int = 20
    start_iterations: int = 40
    lr_position: float = 1e-3
    lr_rotation: float = 0.02
    color_weight: float = 0.5
    seed: int = 0

    def __post_init__(self):
        for name in ("candidates", "starts", "hypotheses", "iterations", "start_iterations"):
            check_count(getattr(self, name), name, 1)
        for name in ("lr_position", "lr_rotation"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: expected a positive step, got {getattr(self, name)!r}")
        if not self.color_weight >= 0:
            raise ValueError(f"color_weight: expected a weight >= 0, got {self.color_weight!r}")


class Track(NamedTuple):
    """Tracked poses: position (T, 3) m and unit quaternion (T, 4) of the object's body frame per frame,
    the per-frame loss (T,) and mask IoU (T,) of the render at that pose."""

    position: torch.Tensor
    quat: torch.Tensor
    loss: torch.Tensor
    iou: torch.Tensor


def track_clip(gaussians: SphereGaussians, clip: Clip, settings: TrackSettings = TrackSettings(),
               ground: float | None = 0.0, start: tuple | None = None, progress=None) -> Track:
    """The object's pose in every frame of `clip` (masks and colours; a LEAP Hand's pixels are left
    out). ground: z of the support plane the object cannot sink into (None: none); start: (position
    (3,), quat (4,)) to fix frame 0's pose instead of searching it; progress: a callable taking a
    message, or None."""
    scorer = _Scorer(gaussians, clip, settings, ground)
    starts = [start] if start is not None else scorer.start_hypotheses(0)
    best = None
    for k, (p0, q0) in enumerate(starts):
        run = scorer.track_from(p0, q0, bound=None if best is None else float(best.loss.sum()))
        if run is not None and (best is None or float(run.loss.sum()) < float(best.loss.sum())):
            best = run
        if progress is not None:
            progress(f"tracked start {k + 1} of {len(starts)}: loss {float(best.loss.sum()):.4f}")
    return best


def pose_errors(track: Track, position: torch.Tensor, quat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-frame translation (m) and rotation (rad) errors (T,) of a track against poses (T, 3), (T, 4)."""
    return (track.position - position).norm(dim=-1), math3d.quat_angle(track.quat, math3d.quat_normalize(quat))


class _Scorer:
    """The per-frame loss of poses against one clip, and the searches that use it."""

    def __init__(self, gaussians: SphereGaussians, clip: Clip, settings: TrackSettings, ground: float | None):
        self.g = SphereGaussians(*(t.detach() for t in gaussians.tensors()))
        self.clip, self.settings, self.ground = clip, settings, ground
        self.camera: Camera = clip.camera
        self.background = clip.background
        keep = torch.ones_like(clip.masks) if clip.hand_masks is None else 1.0 - clip.hand_masks
        pushers = clip.pusher_positions()
        if pushers is not None:  # nor the pusher's (its disc, one pixel wider)
            uv, depth = self.camera.project(pushers)
            rows, cols = torch.meshgrid(torch.arange(self.camera.height) + 0.5, torch.arange(self.camera.width) + 0.5,
                                        indexing="ij")
            radius = float(self.camera.fx) * clip.pusher_radius / depth.clamp(min=1e-6) + 1.0
            inside = ((cols - uv[:, 0, None, None]) ** 2 + (rows - uv[:, 1, None, None]) ** 2) <= radius[:, None, None] ** 2
            keep = keep * (1.0 - (inside & (depth > 0)[:, None, None]).to(keep.dtype) * (1.0 - clip.masks))
        self.keep = keep  # the pixels scored

    def loss(self, position: torch.Tensor, quat: torch.Tensor, frame: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Losses (N,) and alphas (N, H, W) of poses position (N, 3), quat (N, 4) at `frame`."""
        out = render(self.g, self.camera, background=self.background, pose=(position, quat))
        image, mask, keep = self.clip.images[frame], self.clip.masks[frame], self.keep[frame]
        rgb, alpha = out.rgb, out.alpha
        color = rgb - (1.0 - alpha)[..., None] * self.background  # the object's premultiplied colour
        target = image - (1.0 - mask)[..., None] * self.background
        both = (alpha.detach() * mask * keep)[..., None]
        gain = ((target * both).sum((-3, -2)) / (color.detach() * both).sum((-3, -2)).clamp(min=1e-6)).clamp(0.5, 2.0)
        pred = color * gain[..., None, None, :] + (1.0 - alpha)[..., None] * self.background
        mask_term = ((alpha - mask).abs() * keep).mean((-2, -1))
        color_term = ((pred - image).abs() * keep[..., None]).mean((-3, -2, -1))
        return mask_term + self.settings.color_weight * color_term, alpha

    def refine(self, position: torch.Tensor, quat: torch.Tensor, frame: int, iterations: int):
        """Adam on poses (N, 3), (N, 4) at `frame`; returns the refined poses, losses (N,) and alphas."""
        shift = torch.zeros_like(position, requires_grad=True)
        turn = torch.zeros_like(position, requires_grad=True)
        opt = torch.optim.Adam([{"params": [shift], "lr": self.settings.lr_position},
                                {"params": [turn], "lr": self.settings.lr_rotation}])
        for it in range(iterations):
            value, _ = self.loss(position + shift, math3d.quat_mul(math3d.quat_exp(turn), quat), frame)
            opt.zero_grad()
            value.sum().backward()
            opt.step()
        with torch.no_grad():
            q = math3d.quat_normalize(math3d.quat_mul(math3d.quat_exp(turn), quat))
            p = self.onto_support(position + shift, q)
            value, alpha = self.loss(p, q, frame)
        return p, q, value, alpha

    def onto_support(self, position: torch.Tensor, quat: torch.Tensor) -> torch.Tensor:
        """Positions (N, 3) slid along the viewing ray so that no pose has a Gaussian's centre below the plane."""
        if self.ground is None:
            return position
        lowest = math3d.rotate(quat[:, None, :], self.g.centers[None])[..., 2].min(-1).values
        sink = (self.ground - position[:, 2] - lowest).clamp(min=0.0)
        ray = position - self.camera.position.to(position)
        steep = ray[:, 2].abs() >= 0.1 * ray.norm(dim=-1)  # else (a level view) straight up
        up = torch.where(steep[:, None], ray / torch.where(steep, ray[:, 2], 1.0)[:, None], ray.new_tensor([0.0, 0.0, 1.0]))
        return position + up * sink[:, None]

    def start_hypotheses(self, frame: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Distinct refined start poses at `frame`, best first."""
        mask = self.clip.masks[frame] > 0.5
        if not mask.any():
            raise ValueError(f"clip: {self.clip.path}: the mask of frame {frame} is empty (no object to track)")
        camera, s = self.camera, self.settings
        rows, cols = mask.nonzero().T.to(torch.float32) + 0.5
        ray = torch.linalg.solve(camera.K, torch.stack((cols.mean(), rows.mean(), torch.tensor(1.0))))
        ray = camera.T_cw[:3, :3].T @ (ray / ray.norm())
        probe = camera.position + 0.3 * ray
        area = render(self.g, camera, pose=(probe, torch.tensor([1.0, 0.0, 0.0, 0.0]))).alpha.sum()
        centre = camera.position + 0.3 * math.sqrt(float(area) / float(mask.sum())) * ray
        gen = torch.Generator().manual_seed(s.seed)
        quats = math3d.quat_normalize(torch.randn(s.candidates, 4, generator=gen))
        quats[0] = torch.tensor([1.0, 0.0, 0.0, 0.0])
        positions = centre - math3d.rotate(quats, self.g.centers.mean(0).expand(len(quats), 3))
        with torch.no_grad():
            scores = torch.cat([self.loss(p, q, frame)[0] for p, q in zip(positions.split(32), quats.split(32))])
        picked = []
        for i in scores.argsort().tolist():  # distinct orientations, at least 30 degrees apart
            if all(float(math3d.quat_angle(quats[i], quats[j])) > math.radians(30) for j in picked):
                picked.append(i)
            if len(picked) == s.starts:
                break
        refined = [self.refine(positions[i:i + 1], quats[i:i + 1], frame, s.start_iterations) for i in picked]
        refined.sort(key=lambda r: float(r[2][0]))
        # The best start's twins: it turned by pi about each principal axis of the Gaussians' centres, the
        # centroid kept (a mug upside down, a bottle end for end: alike in a silhouette, unlike in colour).
        p, q = refined[0][0], refined[0][1]
        centroid = self.g.centers.mean(0, keepdim=True)  # (1, 3)
        centred = self.g.centers - centroid
        axes = torch.linalg.eigh(centred.T @ centred).eigenvectors.T.to(q)  # (3, 3), rows
        for axis in axes:
            twin = math3d.quat_normalize(math3d.quat_mul(q, math3d.quat_from_axis_angle(axis, torch.tensor(math.pi))))
            at = p + math3d.rotate(q, centroid) - math3d.rotate(twin, centroid)
            refined.append(self.refine(at, twin, frame, s.start_iterations))
        # The best start turned by each of the shape's symmetries (a cube's 23 turns onto itself, whose
        # silhouettes are alike and whose colours are not): scored as they are, the best few refined.
        symmetries = shape_symmetries(self.g.centers, seed=s.seed).to(q)
        if len(symmetries):
            twins = math3d.quat_normalize(math3d.quat_mul(q.expand(len(symmetries), 4), symmetries))
            at = p + math3d.rotate(q, centroid) - math3d.rotate(twins, centroid.expand(len(twins), 3))
            with torch.no_grad():
                scores = torch.cat([self.loss(a, t, frame)[0] for a, t in zip(at.split(32), twins.split(32))])
            for i in scores.argsort()[:s.hypotheses].tolist():
                refined.append(self.refine(at[i:i + 1], twins[i:i + 1], frame, s.start_iterations))
        refined.sort(key=lambda r: float(r[2][0]))
        return [(r[0][0], r[1][0]) for r in refined[:s.hypotheses]]

    def track_from(self, position: torch.Tensor, quat: torch.Tensor, bound: float | None) -> Track | None:
        """Track the clip from frame 0's pose; None as soon as the running loss exceeds `bound`."""
        clip, s = self.clip, self.settings
        p, q, value, alpha = self.refine(position[None], quat[None], 0, s.iterations)
        ps, qs, losses, ious = [p[0]], [q[0]], [float(value[0])], [float(_iou(alpha[0], clip.masks[0]))]
        for t in range(1, len(clip)):
            candidates = _predictions(ps, qs, 1.0 / clip.fps)
            with torch.no_grad():
                cp, cq = torch.stack([c[0] for c in candidates]), torch.stack([c[1] for c in candidates])
                values, alphas = self.loss(cp, cq, t)
            i = int(values.argmin())
            start = _recentred(cp[i], alphas[i], clip.masks[t] * self.keep[t], self.camera)
            p, q, value, alpha = self.refine(start[None], cq[i:i + 1], t, s.iterations)
            ps.append(p[0])
            qs.append(q[0])
            losses.append(float(value[0]))
            ious.append(float(_iou(alpha[0], clip.masks[t])))
            if bound is not None and sum(losses) > bound:
                return None
        return Track(torch.stack(ps), torch.stack(qs), torch.tensor(losses), torch.tensor(ious))


def shape_symmetries(centers: torch.Tensor, samples: int = 128, points: int = 800, seed: int = 0) -> torch.Tensor:
    """Unit quaternions (K, 4) of the turns about the centres' centroid that map the centres (N, 3) onto
    themselves, other than none, at least 30 degrees apart: ICP (the nearest centres, then the best
    rotation onto them) from `samples` random turns of `points` of the centres, kept where the turned
    centres' median distance to the nearest of them is within 1.5 times their own median spacing. A
    stage I cube has 23, a body of revolution one every 30-40 degrees about its axis, most objects
    none; on a sparse regular lattice it also keeps near-turns (candidates the image loss then ranks)."""
    from scipy.spatial import cKDTree
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(seed)
    c = centers.detach().double().cpu().numpy()
    if len(c) > points:
        c = c[rng.choice(len(c), points, replace=False)]
    c = c - c.mean(0)
    tree = cKDTree(c)
    spacing = float(np.median(tree.query(c, k=2)[0][:, 1]))
    found: list = []
    for turn in Rotation.random(samples, random_state=seed).as_matrix():
        for _ in range(15):
            u, _, vt = np.linalg.svd(c.T @ c[tree.query(c @ turn.T)[1]])  # Kabsch onto the nearest centres
            turn = vt.T @ np.diag([1.0, 1.0, np.sign(np.linalg.det(vt.T @ u.T))]) @ u.T
        rotation = Rotation.from_matrix(turn)
        if (np.median(tree.query(c @ turn.T)[0]) <= 1.5 * spacing and rotation.magnitude() > math.radians(30)
                and all((rotation * other.inv()).magnitude() > math.radians(30) for other in found)):
            found.append(rotation)
    if not found:
        return torch.zeros(0, 4, dtype=centers.dtype)
    xyzw = np.stack([r.as_quat() for r in found])
    return torch.as_tensor(xyzw[:, [3, 0, 1, 2]], dtype=centers.dtype)


def _iou(alpha: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    a, b = alpha > 0.5, mask > 0.5
    return (a & b).sum() / (a | b).sum().clamp(min=1)


def _centroid(weights: torch.Tensor) -> torch.Tensor:
    """Image-plane centroid (u, v) px of non-negative pixel weights (H, W)."""
    rows, cols = torch.meshgrid(torch.arange(weights.shape[0]) + 0.5, torch.arange(weights.shape[1]) + 0.5,
                                indexing="ij")
    total = weights.sum().clamp(min=1e-9)
    return torch.stack(((weights * cols).sum() / total, (weights * rows).sum() / total))


def _recentred(position: torch.Tensor, alpha: torch.Tensor, mask: torch.Tensor, camera: Camera) -> torch.Tensor:
    """position (3,) moved parallel to the image plane so that the render's centroid meets the mask's."""
    if mask.sum() < 1 or alpha.sum() < 1e-3:
        return position
    du = _centroid(mask) - _centroid(alpha)
    R, t = camera.T_cw[:3, :3].to(position), camera.T_cw[:3, 3].to(position)
    depth = (R @ position + t)[2]
    shift = torch.stack((du[0] / camera.fx * depth, du[1] / camera.fy * depth, torch.zeros((), dtype=position.dtype)))
    return position + R.T @ shift


def _predictions(ps: list, qs: list, dt: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Candidate poses for the next frame from the tracked ones: constant velocity under gravity, the
    same with the vertical velocity reversed, the last pose, and half the last step."""
    p1, q1 = ps[-1], qs[-1]
    if len(ps) < 2:
        return [(p1, q1)]
    step = p1 - ps[-2]
    turn = math3d.quat_mul(q1, math3d.quat_conj(qs[-2]))
    q_next = math3d.quat_normalize(math3d.quat_mul(turn, q1))
    fall = step.new_tensor([0.0, 0.0, -9.81 * dt * dt])
    bounce = step * step.new_tensor([1.0, 1.0, -1.0])
    return [(p1 + step + fall, q_next), (p1 + bounce, q_next), (p1, q1), (p1 + 0.5 * step, q_next)]
