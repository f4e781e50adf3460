"""Score segmentation and capture on the software camera against its hidden truth (the table of
docs/real_camera.md, "How well").

  python scripts/score_real_camera.py segment OUT [CLIPS]   LEAP clips of the cube through the camera, segmented
  python scripts/score_real_camera.py capture OUT [VIEWS]   a capture session of the cube, posed and masked
"""

import math
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")

from scipy.spatial.transform import Rotation  # noqa: E402

from cgwm_env.data.camera_model import SoftwareCamera  # noqa: E402
from cgwm_env.data.capture import Board, board_pose, load_session, posed, view_mask  # noqa: E402
from cgwm_env.data.dataset import load_dataset  # noqa: E402
from cgwm_env.data.segment import segment_dataset  # noqa: E402
from cgwm_env.data.synth_capture import synth_capture  # noqa: E402
from cgwm_env.envs.leap.clips import synth_leap  # noqa: E402


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    union = (a | b).sum((-2, -1))
    return np.where(union > 0, (a & b).sum((-2, -1)) / np.maximum(union, 1), 1.0)


def segment(out: Path, clips: int = 3) -> None:
    print(f"{'clip':>10} {'object IoU median':>17} {'min':>6} {'hand IoU median':>15} {'unsure':>6} {'s':>5}")
    for k in range(clips):
        folder = out / f"train_{k:03d}"
        if not folder.is_dir():
            synth_leap("cube", folder, frames=30, seed=(0, 0, k), size=128, software=SoftwareCamera(seed=k))
        truth = np.load(out / "truth" / f"{folder.name}.npz")
        start = time.perf_counter()
        seg = segment_dataset(load_dataset(folder), folder)
        seconds = time.perf_counter() - start
        obj, hand = iou(seg.masks, truth["masks"]), iou(seg.hand_masks, truth["hand_masks"])
        print(f"{folder.name:>10} {np.median(obj):>17.3f} {obj.min():>6.3f} {np.median(hand):>15.3f} "
              f"{len(seg.unsure):>6} {seconds:>5.1f}")


def capture(out: Path, views: int = 36) -> None:
    session = out / "session"
    if not (session / "truth.npz").is_file():
        synth_capture("cube", session, views=views)
    images, camera, depths = load_session(session)
    truth = np.load(session / "truth.npz")
    board, pattern = Board(), Board().image()
    moved, turned, masks = [], [], []
    for k, image in enumerate(images):
        T, G = board_pose(image, camera, board).T_cw, truth["T_cw"][k]
        moved.append(np.linalg.norm(T[:3, :3].T @ T[:3, 3] - G[:3, :3].T @ G[:3, 3]))
        turned.append(math.degrees(Rotation.from_matrix(T[:3, :3] @ G[:3, :3].T).magnitude()))
        mask, _ = view_mask(image, posed(camera, T), board, pattern, None if depths is None else depths[k])
        masks.append(iou(mask, truth["masks"][k]))
    print(f"{len(images)} views: camera centre error median {1000 * np.median(moved):.2f} mm, max "
          f"{1000 * max(moved):.2f} mm; rotation error median {np.median(turned):.3f}, max {max(turned):.3f} degrees; "
          f"mask IoU median {np.median(masks):.3f}, min {min(masks):.3f}")


if __name__ == "__main__":
    what, out = sys.argv[1], Path(sys.argv[2])
    {"segment": segment, "capture": capture}[what](out, *map(int, sys.argv[3:]))
