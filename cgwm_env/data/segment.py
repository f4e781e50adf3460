"""Object and hand masks from what a robot setup has: an image of the empty scene, depth where a
depth camera gives it, and the hand's recorded joint angles (`cgwm segment`).

Per frame:
1. The hand's silhouette and depth are drawn from its joint angles with its known kinematics
   (cgwm_env.physics.hand): each pixel's ray is cast at the collision geoms (boxes and capsules)
   placed by forward kinematics (HandView), moved by a sub-pixel image shift that mends a small
   calibration error (hand_shift).
2. Colour: the frame's exposure and white balance are matched to background.png (per-channel
   gains, the median ratio over the pixels the background still shows), then a pixel differs
   when it is not the background scaled by a shadow's factor. Depth, where there is depth: a
   pixel nearer than the empty scene's depth (or than the hand's surface, where the hand is) by
   more than a tolerance is in front of what the background shows.
   Pixels where a moving link of the hand is now, or was in background.png, show nothing known
   to the background: there, only depth speaks.
3. The estimate is cleaned with OpenCV: a morphological opening, GrabCut seeded from it (sure
   object inside, sure background far from it and on the fingers, probable elsewhere), and its
   connected components (the largest and the large ones near it: a finger across the object
   splits its visible part).
The object's mask is its visible pixels; the hand's mask is the hand's silhouette less the
object's pixels in front of it. Each frame's confidence is the IoU of GrabCut's result with the
cues' estimate; frames under SegmentSettings.min_confidence, or whose mask came out empty where
the hand does not cover the object's last place, are named as unsure, never kept silently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import imageio.v3 as iio
import mujoco
import numpy as np
import torch

from cgwm_env.data.dataset import Dataset, frame_name, load_dataset, off_clock_frames
from cgwm_env.data.depth import dataset_depth
from cgwm_env.physics.hand import forward_kinematics
from cgwm_env.physics.hand_mjcf import N_JOINTS, mjcf
from cgwm_env.render.camera import Camera


@dataclass(frozen=True)
class SegmentSettings:
    """color_threshold: DN (0-255) by which a pixel must differ from the background scaled by a
    shadow's factor; shadow: (darkest, brightest) factor of a shadow on the background;
    depth_tolerance: m nearer than the background (or the hand) that counts as in front;
    grabcut_iterations; band: px around the estimate left to GrabCut; min_component: a kept
    component's area as a share of the largest; near: how far (in the largest component's
    diameters) a kept component may lie from it; moved_px: a link that moved less than this many
    px between background.png's pose and the frame's counts as still; min_confidence: frames
    below it are named unsure; refine_camera: turn the camera so that the hand's drawn
    silhouettes meet the images (hand_shift), mending a small calibration error."""

    color_threshold: float = 24.0
    shadow: tuple = (0.25, 1.0)
    depth_tolerance: float = 0.006
    grabcut_iterations: int = 4
    band: int = 6
    min_component: float = 0.1
    near: float = 0.5
    moved_px: float = 0.5
    min_confidence: float = 0.8
    refine_camera: bool = True

    def __post_init__(self):
        if not self.color_threshold > 0 or not self.depth_tolerance > 0:
            raise ValueError("color_threshold, depth_tolerance: expected positive numbers")
        if not 0 <= self.shadow[0] < self.shadow[1]:
            raise ValueError(f"shadow: expected (darkest, brightest) factors, 0 <= darkest < brightest, got {self.shadow}")
        for name in ("grabcut_iterations", "band"):
            if isinstance(getattr(self, name), bool) or not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {getattr(self, name)!r}")
        if not 0 <= self.min_confidence <= 1:
            raise ValueError(f"min_confidence: expected a number in [0, 1], got {self.min_confidence}")


@dataclass(frozen=True)
class Segmentation:
    """masks, hand_masks: (T, H, W) bool; confidence: (T,) in [0, 1]; unsure: frames named as not
    segmented reliably, with the reason {frame: why}; off_clock: frames the camera did not take
    on time (a dropped frame shown again, or one taken more than half a frame period off the
    clip's clock), which no mask can mend for learning; camera_shift: (du, dv) px by which the
    hand's drawn silhouette was moved to meet the image (the calibration's error, seen);
    camera: the clip's camera turned by that shift (shifted_camera)."""

    masks: np.ndarray
    hand_masks: np.ndarray
    confidence: np.ndarray
    unsure: dict
    off_clock: list = field(default_factory=list)
    camera_shift: tuple = (0.0, 0.0)
    camera: Camera | None = None


BOX = int(mujoco.mjtGeom.mjGEOM_BOX)


class HandView:
    """The LEAP Hand seen by `camera` (world frame = the hand's frame), drawn by casting each
    pixel centre's ray at its collision geoms (boxes and capsules, cgwm_env.physics.hand_mjcf)
    placed by forward kinematics: per-link silhouettes and the hand's depth, exact for the
    geoms, from joint angles (16,) rad."""

    def __init__(self, camera: Camera):
        model = mjcf()
        self.camera = camera
        kinds = (int(mujoco.mjtGeom.mjGEOM_BOX), int(mujoco.mjtGeom.mjGEOM_CAPSULE))
        self.geoms = [g for g in range(model.ngeom) if int(model.geom_type[g]) in kinds]
        self.n_links = model.nbody - 1
        self.local = []  # geom-to-link transforms (4, 4)
        for g in self.geoms:
            R = np.zeros(9)
            mujoco.mju_quat2Mat(R, model.geom_quat[g])
            T = np.eye(4)
            T[:3, :3], T[:3, 3] = R.reshape(3, 3), model.geom_pos[g]
            self.local.append(T)
        self.kind = [int(model.geom_type[g]) for g in self.geoms]
        self.size = [model.geom_size[g].copy() for g in self.geoms]
        self.link = [int(model.geom_bodyid[g]) - 1 for g in self.geoms]
        self.corners = []  # (8, 4) homogeneous corners of each geom's bounding box, geom frame
        for kind, size in zip(self.kind, self.size):
            half = size if kind == BOX else np.array([size[0], size[0], size[1] + size[0]])
            box = np.array(np.meshgrid(*[[-h, h] for h in half], indexing="ij")).reshape(3, -1).T
            self.corners.append(np.c_[box, np.ones(8)])
        H, W = camera.height, camera.width
        rows, cols = np.mgrid[0:H, 0:W] + 0.5
        self.rays = np.stack(((cols - float(camera.cx)) / float(camera.fx), (rows - float(camera.cy)) / float(camera.fy),
                              np.ones((H, W))), -1)  # camera-frame directions with z = 1: the hit's t is its depth
        self.T_wc = np.linalg.inv(camera.T_cw.double().numpy())

    def draw(self, q, shift=(0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
        """Per-link silhouettes (L, H, W) bool (each link as if nothing were in front of it) and
        the hand's depth (H, W) m (camera z of the nearest geom, inf where there is none), the
        image moved by `shift` (du, dv) px."""
        with torch.no_grad():
            links = forward_kinematics(torch.as_tensor(np.asarray(q), dtype=torch.float64)).numpy()
        H, W = self.camera.height, self.camera.width
        rays = self.rays if shift == (0.0, 0.0) else self.rays - np.array(
            [shift[0] / float(self.camera.fx), shift[1] / float(self.camera.fy), 0.0])
        silhouettes = np.zeros((self.n_links, H, W), bool)
        depth = np.full((H, W), np.inf)
        for kind, size, local, link, corners in zip(self.kind, self.size, self.local, self.link, self.corners):
            T_cg = self.camera.T_cw.double().numpy() @ links[link] @ local  # geom to camera
            T_gc = np.linalg.inv(T_cg)
            window = self._window(corners @ T_cg[:3].T, shift)
            if window is None:
                continue
            (r0, r1), (c0, c1) = window
            d = rays[r0:r1, c0:c1] @ T_gc[:3, :3].T
            t = _hit_box(T_gc[:3, 3], d, size) if kind == BOX else _hit_capsule(T_gc[:3, 3], d, size)
            hit = np.isfinite(t)
            silhouettes[link, r0:r1, c0:c1] |= hit
            depth[r0:r1, c0:c1] = np.minimum(depth[r0:r1, c0:c1], t)
        return silhouettes, depth

    def _window(self, p: np.ndarray, shift) -> tuple | None:
        """Rows and columns (as [start, stop) pairs) that a geom's bounding box, corners p (8, 3) in
        the camera frame, can cover; None when it is out of view; the whole image when it
        reaches behind the camera."""
        H, W = self.camera.height, self.camera.width
        if (p[:, 2] <= 1e-6).any():
            return (0, H), (0, W)
        u = p[:, 0] / p[:, 2] * float(self.camera.fx) + float(self.camera.cx) + shift[0]
        v = p[:, 1] / p[:, 2] * float(self.camera.fy) + float(self.camera.cy) + shift[1]
        c0, c1 = max(int(np.floor(u.min())) - 1, 0), min(int(np.ceil(u.max())) + 1, W)
        r0, r1 = max(int(np.floor(v.min())) - 1, 0), min(int(np.ceil(v.max())) + 1, H)
        return None if c0 >= c1 or r0 >= r1 else ((r0, r1), (c0, c1))


def _hit_box(origin: np.ndarray, d: np.ndarray, half: np.ndarray) -> np.ndarray:
    """Ray parameter t (...,) of the first hit of rays origin + t d (d (..., 3), geom frame) on a
    box of half sizes `half` (slabs), inf where they miss or it is behind."""
    with np.errstate(divide="ignore", invalid="ignore"):
        a, b = (-half - origin) / d, (half - origin) / d
    near = np.nanmax(np.minimum(a, b), axis=-1)
    far = np.nanmin(np.maximum(a, b), axis=-1)
    return np.where((near <= far) & (near > 0), near, np.inf)


def _hit_capsule(origin: np.ndarray, d: np.ndarray, size: np.ndarray) -> np.ndarray:
    """As _hit_box for a capsule of radius size[0] and half length size[1] along z."""
    r, half = size[0], size[1]
    best = np.full(d.shape[:-1], np.inf)
    # the cylinder's side: |(o + t d)_xy| = r with |z| <= half
    a = d[..., 0] ** 2 + d[..., 1] ** 2
    b = 2 * (origin[0] * d[..., 0] + origin[1] * d[..., 1])
    c = origin[0] ** 2 + origin[1] ** 2 - r * r
    best = np.minimum(best, _first_root(a, b, c, lambda t: np.abs(origin[2] + t * d[..., 2]) <= half))
    for end in (-half, half):  # the two caps' spheres
        o = origin - np.array([0.0, 0.0, end])
        a = (d * d).sum(-1)
        best = np.minimum(best, _first_root(a, 2 * (d @ o), o @ o - r * r, lambda t: np.ones_like(t, bool)))
    return best


def _first_root(a, b, c, ok) -> np.ndarray:
    """The smaller positive root t of a t^2 + b t + c = 0 where ok(t), else inf."""
    disc = b * b - 4 * a * c
    with np.errstate(invalid="ignore", divide="ignore"):
        t = (-b - np.sqrt(disc)) / (2 * a)
    good = (disc >= 0) & (a > 0) & (t > 0)
    good &= ok(np.where(good, t, 0.0))
    return np.where(good, t, np.inf)


def exposure_gains(image: np.ndarray, background: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Per-channel gains (3,) that take background.png's exposure and white balance to the
    frame's: the median of frame / background over `known` (H, W) pixels not too dark or bright."""
    img, bg = image.astype(np.float64), background.astype(np.float64)
    use = known & (bg.min(-1) > 20) & (bg.max(-1) < 235) & (img.max(-1) < 250)
    if use.sum() < 50:
        return np.ones(3)
    return np.median(img[use] / bg[use], axis=0)


def color_difference(image: np.ndarray, background: np.ndarray, settings: SegmentSettings) -> np.ndarray:
    """(H, W) bool: pixels of `image` that are not `background` (both (H, W, 3), already matched
    in exposure) darkened or lit by a factor within settings.shadow, after a 3x3 blur against
    sensor noise."""
    img = cv2.GaussianBlur(image.astype(np.float32), (3, 3), 0)
    bg = cv2.GaussianBlur(background.astype(np.float32), (3, 3), 0)
    factor = (img * bg).sum(-1) / np.maximum((bg * bg).sum(-1), 1.0)  # the best scale of bg onto img
    lo, hi = settings.shadow
    factor_in = np.clip(factor, lo, hi)
    residual = np.abs(img - factor_in[..., None] * bg).max(-1)
    return residual > settings.color_threshold


def refine_mask(image: np.ndarray, estimate: np.ndarray, sure_bg: np.ndarray, settings: SegmentSettings,
                sure_fg: np.ndarray | None = None) -> np.ndarray:
    """The object's mask (H, W) bool from a cue estimate (H, W) bool: opened, then GrabCut on the
    image (H, W, 3) uint8 seeded with the estimate's inside (or `sure_fg`) as sure object, `sure_bg`
    and everything farther than settings.band px from it as sure background, the rest probable;
    then its connected components (component_filter). Empty when the estimate is."""
    kernel = np.ones((3, 3), np.uint8)
    opened = cv2.morphologyEx(estimate.astype(np.uint8), cv2.MORPH_OPEN, kernel).astype(bool)
    opened = component_filter(opened, settings)
    if opened.sum() < 4:
        return np.zeros_like(estimate)
    near = cv2.dilate(opened.astype(np.uint8), np.ones((2 * settings.band + 1,) * 2, np.uint8)).astype(bool)
    inside = cv2.erode(opened.astype(np.uint8), kernel).astype(bool) if sure_fg is None else sure_fg & opened
    labels = np.full(estimate.shape, cv2.GC_BGD, np.uint8)
    labels[near] = cv2.GC_PR_BGD
    labels[opened] = cv2.GC_PR_FGD
    labels[inside] = cv2.GC_FGD
    labels[sure_bg & ~opened] = cv2.GC_BGD
    rows, cols = np.nonzero(near)
    r0, r1 = max(rows.min() - settings.band, 0), min(rows.max() + settings.band + 1, estimate.shape[0])
    c0, c1 = max(cols.min() - settings.band, 0), min(cols.max() + settings.band + 1, estimate.shape[1])
    crop = labels[r0:r1, c0:c1].copy()
    if not ((crop == cv2.GC_BGD) | (crop == cv2.GC_PR_BGD)).any() or not (crop == cv2.GC_FGD).any():
        return opened
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    bgr = np.ascontiguousarray(image[r0:r1, c0:c1, ::-1])
    cv2.grabCut(bgr, crop, None, bgd, fgd, settings.grabcut_iterations, cv2.GC_INIT_WITH_MASK)
    out = np.zeros_like(estimate)
    out[r0:r1, c0:c1] = (crop == cv2.GC_FGD) | (crop == cv2.GC_PR_FGD)
    return component_filter(out, settings)


def component_filter(mask: np.ndarray, settings: SegmentSettings) -> np.ndarray:
    """The largest 8-connected component of `mask` (H, W) bool and those of at least
    settings.min_component of its area within settings.near of its diameters from it, with
    their holes smaller than settings.min_component of that area filled."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 2:
        return _fill_holes(mask.astype(bool), settings.min_component)
    areas = stats[1:, cv2.CC_STAT_AREA]
    largest = 1 + int(np.argmax(areas))
    reach = max(1, int(settings.near * 2.0 * np.sqrt(areas.max() / np.pi)))
    around = cv2.dilate((labels == largest).astype(np.uint8), np.ones((2 * reach + 1,) * 2, np.uint8)).astype(bool)
    keep = [largest] + [k for k in range(1, n) if k != largest and areas[k - 1] >= settings.min_component * areas.max()
                        and around[labels == k].any()]
    return _fill_holes(np.isin(labels, keep), settings.min_component)


def _fill_holes(mask: np.ndarray, share: float) -> np.ndarray:
    """`mask` with its holes (4-connected background not reaching the border) smaller than
    `share` of its area filled."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats((~mask).astype(np.uint8), connectivity=4)
    if n <= 2:
        return mask
    border = np.unique(np.concatenate((labels[0], labels[-1], labels[:, 0], labels[:, -1])))
    small = [k for k in range(1, n) if k not in border and stats[k, cv2.CC_STAT_AREA] < share * mask.sum()]
    return mask | np.isin(labels, small)


def segment_dataset(data: Dataset, folder, settings: SegmentSettings = SegmentSettings()) -> Segmentation:
    """Segment every frame of a loaded dataset (a clip, or a multi-view set from one fixed camera)
    whose folder `folder` holds background.png and, optionally, depth (meta "depth") and
    background_depth.npz. A clip with states.npz joint_pos (T, 16) is seen with the LEAP Hand:
    its silhouettes are taken out, and meta.json's background_joint_pos (16,) says where the hand
    was in background.png (absent: the background shows no hand)."""
    if data.background is None:
        raise ValueError(f"{folder}: background.png: segmenting needs the view of the scene without the object")
    if len(data.meta["cameras"]) != 1:
        raise ValueError(f"{folder}: cameras: segmenting needs one fixed camera (a multi-view set from a moving "
                         "camera is segmented by `cgwm capture views`)")
    images = np.rint(data.images.numpy() * 255).astype(np.uint8)
    background = np.rint(data.background.numpy() * 255).astype(np.uint8)
    camera = data.cameras[0]
    T, H, W = images.shape[:3]
    depth, background_depth = _aligned(folder, camera)
    joints = (data.states or {}).get("joint_pos")
    hand = None
    if joints is not None:
        hand = HandView(camera)
        background_q = data.meta.get("background_joint_pos")
        if background_q is not None and np.asarray(background_q, float).shape != (N_JOINTS,):
            raise ValueError(f"{folder}: meta.json background_joint_pos: expected {N_JOINTS} joint angles (rad)")
    shift = (0.0, 0.0)
    background_q = data.meta.get("background_joint_pos")
    if hand is not None and settings.refine_camera:
        shift = hand_shift(hand, images, background, joints, background_q)
        camera = shifted_camera(camera, shift)
        hand = HandView(camera)
        depth, background_depth = _aligned(folder, camera)
    palette = None if hand is None else hand_palette(hand, images, background, joints, background_q, settings)
    masks, hand_masks = np.zeros((T, H, W), bool), np.zeros((T, H, W), bool)
    confidence, unsure = np.zeros(T), {}
    previous = None
    for t in range(T):
        known = np.ones((H, W), bool)  # pixels where background.png shows what the frame shows without the object
        moving = np.zeros((H, W), bool)  # pixels of links that moved since background.png
        whole = np.zeros((H, W), bool)
        front = np.zeros((H, W), bool)  # depth: something nearer than the hand
        if hand is not None:
            moving, known, whole, hand_depth = _hand_regions(hand, joints[t], background_q, settings)
            if depth is not None:
                front = (depth[t] > 0) & (depth[t] < hand_depth - settings.depth_tolerance) & moving
        gains = exposure_gains(images[t], background, known)
        matched = np.clip(background * gains, 0, 255)
        estimate = color_difference(images[t], matched, settings) & known
        if depth is not None and background_depth is not None:
            nearer = (depth[t] > 0) & (background_depth > 0) & (depth[t] < background_depth - settings.depth_tolerance)
            estimate |= nearer & known
        hand_like = moving & ~front
        if palette is not None:  # where the hand is drawn, colours the hand does not have
            hand_like &= palette_distance(images[t] / gains, palette) <= settings.color_threshold
        estimate |= front | (moving & ~hand_like)
        sure_bg = hand_like | (known & ~estimate & ~_dilate(estimate, 2))
        mask = refine_mask(images[t], estimate, sure_bg, settings) & ~hand_like
        opened = component_filter(cv2.morphologyEx(estimate.astype(np.uint8), cv2.MORPH_OPEN,
                                                   np.ones((3, 3), np.uint8)).astype(bool), settings)
        union = (mask | opened).sum()
        confidence[t] = (mask & opened).sum() / union if union else 1.0
        if not mask.any():
            hidden = previous is not None and previous.any() and moving[previous].mean() > 0.8
            confidence[t] = 1.0 if hidden else 0.0
            if not hidden:
                unsure[t] = "empty mask where the hand does not hide the object"
        elif confidence[t] < settings.min_confidence:
            unsure[t] = f"confidence {confidence[t]:.2f}: GrabCut and the colour/depth cues disagree"
        masks[t] = mask
        hand_masks[t] = whole & ~mask
        previous = mask if mask.any() else previous
    off = off_clock_frames(data.states, float(data.meta.get("fps") or 0) or 1.0) if joints is not None else []
    return Segmentation(masks, hand_masks, confidence, unsure, off, shift, camera)


def _aligned(folder, camera: Camera) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The folder's depth (T, H, W) and background depth (H, W) on `camera`'s grid, or Nones."""
    depth, background = dataset_depth(folder)
    return (None if depth is None else depth.aligned(camera),
            None if background is None else background.aligned(camera))


def hand_palette(hand: HandView, images: np.ndarray, background: np.ndarray, joints: np.ndarray, background_q,
                 settings: SegmentSettings = SegmentSettings(), frames: int = 6, colors: int = 8) -> np.ndarray:
    """The hand's colours as the camera sees them, (n, 3) in background.png's exposure: k-means
    centres of the hand's pixels in background.png (where no object hides any; centres of at
    least 0.5% of them), or, when background.png shows no hand, in up to `frames` frames,
    leaving out those within band px of where the frame differs from the background elsewhere
    (the object, mostly; centres of at least 2% of them)."""
    least = 0.005
    if background_q is not None:
        region = hand.draw(background_q)[0].any(0)
        pixels = background[cv2.erode(region.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)]
    else:
        least = 0.02
        picks = np.unique(np.linspace(0, len(images) - 1, min(frames, len(images))).round().astype(int))
        samples = []
        for t in picks:
            region, known, _, _ = _hand_regions(hand, joints[t], None, settings)
            gains = exposure_gains(images[t], background, known)
            other = color_difference(images[t], np.clip(background * gains, 0, 255), settings) & known
            region &= ~_dilate(other, settings.band)
            region = cv2.erode(region.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
            samples.append(images[t][region] / gains)
        pixels = np.concatenate(samples)
    pixels = pixels.astype(np.float32)
    if len(pixels) < colors:
        return np.zeros((0, 3), np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 30, 0.5)
    _, labels, centres = cv2.kmeans(pixels, colors, None, criteria, 3, cv2.KMEANS_PP_CENTERS)
    share = np.bincount(labels.ravel(), minlength=colors) / len(pixels)
    return centres[share > least]


def _hand_regions(hand: HandView, q, background_q, settings: SegmentSettings) -> tuple:
    """At joint angles q: the pixels of the links that moved since background.png (all links when
    it shows no hand), the pixels where background.png shows what the frame would without the
    object, the whole hand's silhouette (H, W) bool, and the hand's depth (H, W) m."""
    now, depth = hand.draw(q)
    whole = now.any(0)
    if background_q is None:
        return whole, ~whole, whole, depth
    moved = _moved_links(hand, q, background_q, settings.moved_px)
    then = hand.draw(background_q)[0]
    moving = now[moved].any(0)
    return moving, ~(moving | then[moved].any(0)), whole, depth


def palette_distance(image: np.ndarray, palette: np.ndarray, shading: tuple = (0.5, 2.0)) -> np.ndarray:
    """(H, W) distance (DN) of each pixel of image (H, W, 3) to its nearest palette colour lit or
    shaded by a factor within `shading` (a surface of one colour shows a range of brightness),
    after a 3x3 blur; inf for an empty palette."""
    if not len(palette):
        return np.full(image.shape[:2], np.inf)
    img = cv2.GaussianBlur(image.astype(np.float32), (3, 3), 0)
    c = palette.astype(np.float32)
    scale = np.clip((img @ c.T) / np.maximum((c * c).sum(-1), 1.0), *shading)  # (H, W, n)
    return np.sqrt(((img[..., None, :] - scale[..., None] * c) ** 2).sum(-1)).min(-1)


def hand_shift(hand: HandView, images: np.ndarray, background: np.ndarray, joints: np.ndarray, background_q,
               settings: SegmentSettings = SegmentSettings(), frames: int = 4, reach: float = 3.0) -> tuple:
    """The image shift (du, dv) px, within `reach`, that best puts the hand's drawn silhouettes
    on the frames: where the hand is drawn in the frame and not in background.png (or the other
    way round) the frame should differ from the background, and elsewhere under the hand it
    should not. Searched on up to `frames` frames, on a 1 px grid, then around the best by 0.5 and 0.25 px."""
    picks = np.unique(np.linspace(0, len(images) - 1, min(frames, len(images))).round().astype(int))
    differs = []
    for t in picks:
        gains = exposure_gains(images[t], background, np.ones(background.shape[:2], bool))
        differs.append(color_difference(images[t], np.clip(background * gains, 0, 255), settings))

    def score(shift) -> float:
        total = 0.0
        then = None if background_q is None else hand.draw(background_q, shift)[0].any(0)
        for t, diff in zip(picks, differs):
            now = hand.draw(joints[t], shift)[0].any(0)
            change = now if then is None else now ^ then
            total += (change & diff).sum() - (change & ~diff).sum()
        return float(total)

    grid = np.arange(-reach, reach + 1e-9)
    best = max(((du, dv) for du in grid for dv in grid), key=score)
    for step in (0.5, 0.25):
        around = [(best[0] + du * step, best[1] + dv * step) for du in (-1, 0, 1) for dv in (-1, 0, 1)]
        best = max(around, key=score)
    return (float(best[0]), float(best[1]))


def shifted_camera(camera: Camera, shift) -> Camera:
    """The camera turned by the small rotation that moves its image by shift (du, dv) px at the
    optical axis (about its y axis by du / fx, about its x axis by -dv / fy)."""
    from scipy.spatial.transform import Rotation

    du, dv = shift
    R = Rotation.from_rotvec([-dv / float(camera.fy), du / float(camera.fx), 0.0]).as_matrix()
    T = np.eye(4)
    T[:3, :3] = R
    T_cw = torch.tensor(T @ camera.T_cw.double().numpy(), dtype=camera.T_cw.dtype)
    return Camera(camera.fx, camera.fy, camera.cx, camera.cy, camera.width, camera.height, T_cw)


def _moved_links(hand: HandView, q, q0, px: float) -> np.ndarray:
    """(L,) bool: links whose box corners (of their geoms) moved more than `px` pixels in the
    image between joint angles q0 and q."""
    with torch.no_grad():
        poses = [forward_kinematics(torch.as_tensor(np.asarray(x), dtype=torch.float64)).numpy() for x in (q, q0)]
    moved = np.zeros(hand.n_links, bool)
    K = np.array([[float(hand.camera.fx), 0, float(hand.camera.cx)], [0, float(hand.camera.fy), float(hand.camera.cy)]])
    for local, link, corners in zip(hand.local, hand.link, hand.corners):
        uv = []
        for links in poses:
            p = (hand.camera.T_cw.double().numpy() @ links[link] @ local @ corners.T)[:3]
            uv.append((K @ (p / p[2:])).T)
        moved[link] |= np.linalg.norm(uv[0] - uv[1], axis=1).max() > px
    return moved


def _dilate(mask: np.ndarray, px: int) -> np.ndarray:
    return cv2.dilate(mask.astype(np.uint8), np.ones((2 * px + 1,) * 2, np.uint8)).astype(bool)


def write_segmentation(folder, seg: Segmentation, settings: SegmentSettings = SegmentSettings()) -> Path:
    """Write the masks into the dataset `folder` (masks/, hand_masks/ when the clip has a hand)
    and meta.json: masks_empty false, and a "segmentation" record (method, per-frame confidence,
    unsure and off-clock frames, the silhouettes' shift)."""
    folder = Path(folder)
    meta_file = folder / "meta.json"
    meta = json.loads(meta_file.read_text())
    with_hand = seg.hand_masks.any()
    for t in range(len(seg.masks)):
        iio.imwrite(folder / "masks" / frame_name(t), seg.masks[t].astype(np.uint8) * 255)
    if with_hand:
        (folder / "hand_masks").mkdir(exist_ok=True)
        for t in range(len(seg.masks)):
            iio.imwrite(folder / "hand_masks" / frame_name(t), seg.hand_masks[t].astype(np.uint8) * 255)
    meta["masks_empty"] = False
    meta["segmentation"] = {"method": "cgwm segment: background difference (colour, depth), the hand's silhouette "
                                      "from its joints, GrabCut",
                            "confidence": [round(float(c), 4) for c in seg.confidence],
                            "unsure_frames": {str(k): v for k, v in seg.unsure.items()},
                            "off_clock_frames": seg.off_clock, "silhouette_shift_px": list(seg.camera_shift),
                            "settings": {k: getattr(settings, k) for k in settings.__dataclass_fields__}}
    meta_file.write_text(json.dumps(meta, indent=1))
    load_dataset(folder)  # what was written must load
    return folder
