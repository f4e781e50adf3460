"""Views of a real object with their camera poses (`cgwm capture views`): the object stands on a
ChArUco board, and each image's camera pose comes from the board (cv2.aruco's CharucoDetector,
then solvePnP and a Levenberg-Marquardt refinement on the board's corners).

The board's frame is the world's while capturing: origin at the board's centre, x along its
columns, y along its rows away from the first one, z up out of its face. Each view's mask is
the object seen above the board: where depth is given, the points more than `height` above the
board's plane and within its area; everywhere, the pixels that the board, drawn into the view
from its known pattern (through the board's plane's homography, with its brightness and
contrast fitted per view, a shadow allowed), cannot explain; GrabCut seeded from both
(cgwm_env.data.segment.refine_mask). A coarse visual hull carved from the masks inside the board's
prism gives the object's centre (the hull's centroid, a few mm above the solid's: the hull's
roof overreaches where no view looks straight down): the set's world frame is moved there (axes kept, z up; meta
object_pose holds where it sits on the board), and each view is cropped around the object and
resized to `size` px, its principal point moved with the crop. Views without a board pose or
with an unsure mask are left out and named.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import imageio.v3 as iio
import numpy as np
import torch

from cgwm_env.data.dataset import camera_to_meta, save_dataset
from cgwm_env.data.depth import DEPTH_FILE, align_depth, back_project, load_depth
from cgwm_env.data.segment import SegmentSettings, component_filter, refine_mask
from cgwm_env.render.camera import Camera


@dataclass(frozen=True)
class Board:
    """A ChArUco board: squares (columns, rows), square and marker sides (m), a cv2.aruco
    dictionary name. Print it with `image` at a scale where a square measures `square`."""

    squares: tuple = (8, 6)
    square: float = 0.03
    marker: float = 0.022
    dictionary: str = "DICT_4X4_50"

    def __post_init__(self):
        if len(self.squares) != 2 or min(self.squares) < 3 or any(isinstance(s, bool) or not isinstance(s, int)
                                                                   for s in self.squares):
            raise ValueError(f"squares: expected (columns, rows), integers >= 3, got {self.squares!r}")
        if not 0 < self.marker < self.square:
            raise ValueError(f"marker: expected a side in (0, square = {self.square}) m, got {self.marker!r}")
        if not hasattr(cv2.aruco, self.dictionary):
            raise ValueError(f"dictionary: expected a cv2.aruco dictionary name such as 'DICT_4X4_50', "
                             f"got {self.dictionary!r}")
        n_markers = self.squares[0] * self.squares[1] // 2
        if n_markers > int(self.dictionary.rsplit("_", 1)[-1]):
            raise ValueError(f"dictionary: {self.dictionary} has too few markers for a {self.squares} board")

    @property
    def size(self) -> tuple[float, float]:
        """(width, height) of the board, m."""
        return self.squares[0] * self.square, self.squares[1] * self.square

    def charuco(self):
        return cv2.aruco.CharucoBoard(tuple(self.squares), self.square, self.marker,
                                      cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, self.dictionary)))

    def image(self, px_per_square: int = 100) -> np.ndarray:
        """The board's pattern (rows px, columns px) uint8, `px_per_square` px a square, no margin."""
        w, h = self.squares
        return self.charuco().generateImage((w * px_per_square, h * px_per_square), marginSize=0, borderBits=1)

    def T_world_cv(self) -> np.ndarray:
        """(4, 4): OpenCV's board coordinates (origin at the pattern's top-left corner, y down the
        pattern, z into the board) to the board frame (centred, z up)."""
        w, h = self.size
        T = np.diag([1.0, -1.0, -1.0, 1.0])
        T[:3, 3] = (-w / 2, h / 2, 0.0)
        return T


@dataclass(frozen=True)
class BoardPose:
    """T_cw (4, 4) board frame to camera; corners: the ChArUco corners used; rmse_px: their
    reprojection RMS, px."""

    T_cw: np.ndarray
    corners: int
    rmse_px: float


def opencv_matrix(camera: Camera) -> np.ndarray:
    """OpenCV's K (3, 3) of `camera`: OpenCV puts pixel centres at integers, so cx - 0.5, cy - 0.5."""
    return np.array([[float(camera.fx), 0.0, float(camera.cx) - 0.5],
                     [0.0, float(camera.fy), float(camera.cy) - 0.5], [0.0, 0.0, 1.0]])


def board_pose(image: np.ndarray, camera: Camera, board: Board, min_corners: int = 6) -> BoardPose:
    """The camera's pose in the board's frame from an RGB (H, W, 3) or grey (H, W) uint8 image,
    with `camera`'s intrinsics (its T_cw is ignored): the ChArUco corners (CharucoDetector),
    matched to the board (matchImagePoints), solvePnP and solvePnPRefineLM. ValueError when
    fewer than `min_corners` corners are found."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or image.shape[:2] != (camera.height, camera.width):
        raise ValueError(f"image: expected a {camera.height}x{camera.width} uint8 image (the camera's size), got "
                         f"{image.shape} {image.dtype}")
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    K = opencv_matrix(camera)
    params = cv2.aruco.CharucoParameters()
    params.cameraMatrix, params.distCoeffs = K, np.zeros(5)
    detector_params = cv2.aruco.DetectorParameters()
    detector_params.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_SUBPIX
    charuco = board.charuco()
    corners, ids, _, _ = cv2.aruco.CharucoDetector(charuco, params, detector_params).detectBoard(grey)
    found = 0 if ids is None else len(ids)
    if found < min_corners:
        raise ValueError(f"image: found {found} ChArUco corners of the board, need {min_corners}")
    corners = cv2.cornerSubPix(grey, corners.astype(np.float32), (3, 3), (-1, -1),
                               (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 40, 0.001))
    world, pixels = charuco.matchImagePoints(corners, ids)
    world, pixels = world.reshape(-1, 3).astype(np.float64), pixels.reshape(-1, 2).astype(np.float64)
    ok, rvec, tvec = cv2.solvePnP(world, pixels, K, np.zeros(5), flags=cv2.SOLVEPNP_IPPE)
    if not ok:
        raise ValueError("image: solvePnP found no pose for the board's corners")
    rvec, tvec = cv2.solvePnPRefineLM(world, pixels, K, np.zeros(5), rvec, tvec)
    projected, _ = cv2.projectPoints(world, rvec, tvec, K, np.zeros(5))
    rmse = float(math.sqrt(((projected.reshape(-1, 2) - pixels) ** 2).sum(1).mean()))
    T_c_cv = np.eye(4)
    T_c_cv[:3, :3], T_c_cv[:3, 3] = cv2.Rodrigues(rvec)[0], tvec.ravel()
    return BoardPose(T_c_cv @ np.linalg.inv(board.T_world_cv()), len(world), rmse)


def posed(camera: Camera, T_cw) -> Camera:
    """`camera`'s intrinsics with the pose T_cw (4, 4)."""
    return Camera(camera.fx, camera.fy, camera.cx, camera.cy, camera.width, camera.height,
                  torch.tensor(np.asarray(T_cw), dtype=torch.float32))


def board_view(board: Board, camera: Camera, pattern: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The board's pattern (rows, cols) uint8 drawn into `camera`'s view (posed in the board's
    frame) through the board plane's homography: (H, W) float32 grey, and (H, W) bool, where
    the board is."""
    rows, cols = pattern.shape
    w, h = board.size
    # pattern pixel (col, row), centres at integers (OpenCV) -> board frame (x, y, 0)
    A = np.array([[w / cols, 0.0, -w / 2 + 0.5 * w / cols], [0.0, -h / rows, h / 2 - 0.5 * h / rows], [0.0, 0.0, 1.0]])
    T = camera.T_cw.double().numpy()
    H_plane = opencv_matrix(camera) @ np.c_[T[:3, 0], T[:3, 1], T[:3, 3]]  # board (x, y, 1) -> image
    H = H_plane @ A
    size = (camera.width, camera.height)
    view = cv2.warpPerspective(pattern.astype(np.float32), H, size, flags=cv2.INTER_AREA)
    inside = cv2.warpPerspective(np.ones_like(pattern, np.uint8), H, size, flags=cv2.INTER_NEAREST) > 0
    return view, inside


@dataclass(frozen=True)
class CaptureSettings:
    """height: m above the board's plane that counts as the object (depth); reach: the board
    prism's height, m (the object is looked for inside it); board_threshold: DN that a pixel
    must differ from the drawn board (its 3x3 neighbourhood's range, after the fitted
    brightness and contrast, a shadow's darkening allowed) to count as the object; grid: hull
    voxels along the board's longer side; margin: the crop's side in the object's projected
    diameters; min_confidence: views whose mask's GrabCut and cues agree less are left out;
    segment: the GrabCut and component settings."""

    height: float = 0.004
    reach: float = 0.25
    board_threshold: float = 30.0
    grid: int = 160
    margin: float = 1.3
    min_confidence: float = 0.75
    segment: SegmentSettings = field(default_factory=SegmentSettings)


def view_mask(image: np.ndarray, camera: Camera, board: Board, pattern: np.ndarray, depth: np.ndarray | None = None,
              settings: CaptureSettings = CaptureSettings()) -> tuple[np.ndarray, float]:
    """The object's mask (H, W) bool in one view and its confidence (the IoU of GrabCut's result
    with the cues' estimate): camera posed in the board's frame, pattern: board.image(),
    depth (H, W) m on the image's grid (0: none) or None."""
    drawn, on_board = board_view(board, camera, pattern)
    grey = cv2.GaussianBlur(image.astype(np.float32), (3, 3), 0).mean(-1)
    low = cv2.erode(drawn, np.ones((3, 3), np.uint8))
    high = cv2.dilate(drawn, np.ones((3, 3), np.uint8))
    inner = cv2.erode(on_board.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    # brightness and contrast of the board in this view: grey = a drawn + b, fitted on the board's
    # pixels that a 3x3 neighbourhood leaves unambiguous, twice (the second time without outliers)
    flat = inner & (high - low < 1.0)
    a, b = 1.0, 0.0
    for _ in range(2):
        if flat.sum() < 20:
            break
        a, b = np.polyfit(drawn[flat], grey[flat], 1)
        flat &= np.abs(grey - (a * drawn + b)) < settings.board_threshold
    lo = settings.segment.shadow[0] * (a * low + b)  # a shadow darkens the board
    hi = a * high + b
    chroma = np.ptp(cv2.GaussianBlur(image.astype(np.float32), (3, 3), 0), axis=-1)  # the board is grey
    unexplained = (grey < lo - settings.board_threshold) | (grey > hi + settings.board_threshold)
    estimate = inner & (unexplained | (chroma > settings.board_threshold))
    prism = _prism(board, camera, settings.reach)
    if depth is not None:
        points = back_project(depth, camera)
        w, h = board.size
        with np.errstate(invalid="ignore"):
            above = (points[..., 2] > settings.height) & (np.abs(points[..., 0]) < w / 2) & (np.abs(points[..., 1]) < h / 2)
        estimate |= above & prism
    sure_bg = (inner & ~estimate & (grey >= lo - 0.5 * settings.board_threshold)
               & (grey <= hi + 0.5 * settings.board_threshold) & (chroma < 0.5 * settings.board_threshold)) | ~prism
    mask = refine_mask(image, estimate, sure_bg, settings.segment) & prism
    opened = component_filter(cv2.morphologyEx(estimate.astype(np.uint8), cv2.MORPH_OPEN,
                                               np.ones((3, 3), np.uint8)).astype(bool), settings.segment)
    union = (mask | opened).sum()
    return mask, float((mask & opened).sum() / union) if union else 0.0


def _prism(board: Board, camera: Camera, reach: float) -> np.ndarray:
    """(H, W) bool: the image of the box over the board up to `reach` m."""
    w, h = board.size
    corners = np.array([[x, y, z] for x in (-w / 2, w / 2) for y in (-h / 2, h / 2) for z in (0.0, reach)])
    uv, z = camera.project(torch.tensor(corners, dtype=torch.float32))
    out = np.zeros((camera.height, camera.width), np.uint8)
    if (z <= 0).any():
        return np.ones((camera.height, camera.width), bool)
    hull = cv2.convexHull(np.rint((uv.double().numpy() - 0.5) * 16).astype(np.int32))
    cv2.fillConvexPoly(out, hull, 1, shift=4)
    return out.astype(bool)


def carve(masks: list, cameras: list, board: Board, settings: CaptureSettings = CaptureSettings()) -> np.ndarray:
    """Centres (N, 3) m, board frame, of the voxels over the board (up to settings.reach) inside
    every view's mask: a coarse visual hull."""
    w, h = board.size
    step = max(w, h) / settings.grid
    axes = [np.arange(-w / 2, w / 2, step) + step / 2, np.arange(-h / 2, h / 2, step) + step / 2,
            np.arange(0.0, settings.reach, step) + step / 2]
    points = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    keep = np.ones(len(points), bool)
    for mask, camera in zip(masks, cameras):
        uv, z = camera.project(torch.tensor(points[keep], dtype=torch.float32))
        uv, z = uv.double().numpy(), z.double().numpy()
        j, i = np.floor(uv[:, 0]).astype(int), np.floor(uv[:, 1]).astype(int)
        inside = (z > 0) & (j >= 0) & (i >= 0) & (j < camera.width) & (i < camera.height)
        hit = np.zeros(len(uv), bool)
        hit[inside] = mask[i[inside], j[inside]]
        keep[np.flatnonzero(keep)] = hit
    return points[keep]


def crop_camera(camera: Camera, box: tuple, size: int) -> Camera:
    """The camera of the square crop box (row0, col0, side) px of its image, resized to size px."""
    r0, c0, side = box
    s = size / side
    return Camera(float(camera.fx) * s, float(camera.fy) * s, (float(camera.cx) - c0) * s,
                  (float(camera.cy) - r0) * s, size, size, camera.T_cw)


@dataclass(frozen=True)
class Capture:
    """What capture_views did: path (the multi-view set), kept (the input images used, by
    index), left_out {index: why}, poses (index: BoardPose), confidence {index: mask confidence},
    object_pose (4, 4): the set's world frame (the object's) in the board's frame."""

    path: Path
    kept: list
    left_out: dict
    poses: dict
    confidence: dict
    object_pose: np.ndarray


def capture_views(images: list, camera: Camera, board: Board, out, depths: list | None = None, size: int = 128,
                  object_name: str = "object", settings: CaptureSettings = CaptureSettings()) -> Capture:
    """Write the multi-view set `out` (docs/datasets.md) from RGB images (H, W, 3) uint8 taken by
    a camera with `camera`'s intrinsics (its pose is read from the board in each image), and
    optional depths (each (H, W) m on the image's grid, 0: none, or None). Views whose board
    pose or mask fails are named in the result's left_out, never used."""
    if len(images) < 2:
        raise ValueError(f"images: expected at least 2 views, got {len(images)}")
    if depths is not None and len(depths) != len(images):
        raise ValueError(f"depths: expected one per image ({len(images)}), got {len(depths)}")
    pattern = board.image()
    left_out, poses, masks, confidence = {}, {}, {}, {}
    for k, image in enumerate(images):
        try:
            poses[k] = board_pose(image, camera, board)
        except ValueError as err:
            left_out[k] = f"no board pose ({err})"
            continue
        view = posed(camera, poses[k].T_cw)
        mask, confidence[k] = view_mask(image, view, board, pattern, None if depths is None else depths[k], settings)
        if confidence[k] < settings.min_confidence or mask.sum() < 16:
            left_out[k] = f"mask confidence {confidence[k]:.2f} (cues and GrabCut disagree)"
            continue
        masks[k] = mask
    kept = sorted(masks)
    if len(kept) < 2:
        raise ValueError(f"images: only {len(kept)} view(s) gave a board pose and a mask; left out: {left_out}")
    cams = [posed(camera, poses[k].T_cw) for k in kept]
    hull = carve([masks[k] for k in kept], cams, board, settings)
    if len(hull) == 0:
        raise ValueError("images: the views' masks share no point over the board; check the board and the object")
    centre = hull.mean(0)
    radius = float(np.linalg.norm(hull - centre, axis=1).max())
    T_board_object = np.eye(4)
    T_board_object[:3, 3] = centre
    frames, crops, cameras_meta = [], [], []
    for k, cam in zip(kept, cams):
        at_object = posed(cam, cam.T_cw.double().numpy() @ T_board_object)
        box = _crop_box(at_object, radius * settings.margin)
        frames.append(_crop(images[k], box, size, cv2.INTER_AREA))
        crops.append(_crop(masks[k].astype(np.uint8) * 255, box, size, cv2.INTER_AREA) >= 128)
        cameras_meta.append(camera_to_meta(crop_camera(at_object, box, size)))
    pose = {"pos": centre.tolist(), "quat": [1.0, 0.0, 0.0, 0.0]}
    meta = {"scenario": "multiview", "object": object_name, "cameras": cameras_meta, "object_pose": pose,
            "capture": {"board": {"squares": list(board.squares), "square": board.square, "marker": board.marker,
                                  "dictionary": board.dictionary},
                        "views": kept, "left_out": {str(k): v for k, v in left_out.items()},
                        "rmse_px": [poses[k].rmse_px for k in kept],
                        "mask_confidence": [round(confidence[k], 4) for k in kept]}}
    path = save_dataset(out, meta, np.stack(frames), np.stack(crops))
    return Capture(Path(path), kept, left_out, poses, confidence, T_board_object)


def _crop_box(camera: Camera, radius: float) -> tuple[int, int, int]:
    """(row0, col0, side) of the square around the projection of the world origin that holds a
    sphere of `radius` m there (rows and columns may reach outside the image)."""
    uv, z = camera.project(torch.zeros(1, 3))
    u, v, depth = float(uv[0, 0]), float(uv[0, 1]), float(z[0])
    half = math.ceil(float(camera.fx) * radius / max(depth, 1e-6))
    return int(round(v)) - half, int(round(u)) - half, 2 * half


def _crop(image: np.ndarray, box: tuple, size: int, interpolation) -> np.ndarray:
    """The square `box` of `image` (padded with its edge where the box leaves it), resized to size."""
    r0, c0, side = box
    pad = max(0, -r0, -c0, r0 + side - image.shape[0], c0 + side - image.shape[1])
    padded = np.pad(image, ((pad, pad), (pad, pad)) + ((0, 0),) * (image.ndim - 2), mode="edge")
    window = padded[r0 + pad:r0 + pad + side, c0 + pad:c0 + pad + side]
    return cv2.resize(window, (size, size), interpolation=interpolation)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def load_session(folder) -> tuple[list, Camera, list | None]:
    """A capture session's folder (docs/datasets.md, "Capture sessions"): its images (sorted by
    name from images/, each (H, W, 3) uint8), the camera of intrinsics.json (width, height, fx,
    fy, cx, cy in the format's convention; pose the identity), and the depth maps of depth.npz on
    the images' grid (one per image) or None."""
    folder = Path(folder)
    try:
        intrinsics = json.loads((folder / "intrinsics.json").read_text())
        camera = Camera(*(float(intrinsics[k]) for k in ("fx", "fy", "cx", "cy")), int(intrinsics["width"]),
                        int(intrinsics["height"]), torch.eye(4))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{folder}/intrinsics.json: expected width, height, fx, fy, cx, cy ({err})") from err
    files = sorted(f for f in (folder / "images").glob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{folder}/images: no PNG or JPEG images")
    images = []
    for f in files:
        image = iio.imread(f)
        image = np.repeat(image[..., None], 3, -1) if image.ndim == 2 else image[..., :3]
        if image.shape[:2] != (camera.height, camera.width) or image.dtype != np.uint8:
            raise ValueError(f"{f}: expected a {camera.width}x{camera.height} 8-bit image as intrinsics.json says, "
                             f"got {image.shape} {image.dtype}")
        images.append(image)
    depths = None
    if (folder / DEPTH_FILE).is_file():
        depth = load_depth(folder / DEPTH_FILE)
        if depth.depth.ndim != 3 or len(depth.depth) != len(images):
            raise ValueError(f"{folder / DEPTH_FILE}: expected one depth map per image ({len(images)}), "
                             f"got {depth.depth.shape}")
        depths = [align_depth(d, depth.camera, camera, depth.T_color_depth) for d in depth.depth]
    return images, camera, depths
