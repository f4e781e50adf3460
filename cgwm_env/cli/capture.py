"""`cgwm capture views`: a multi-view set with camera poses from a ChArUco board (cgwm_env.data.capture)."""

from __future__ import annotations

import numpy as np

from cgwm_env import progress
from cgwm_env.data.capture import Board, capture_views, load_session


def main(args) -> None:
    """Read the session folder, write the multi-view set, show one line per view."""
    board = Board(tuple(args.squares), args.square, args.marker, args.dictionary)  # names its fields as the flags
    try:
        images, camera, depths = load_session(args.session)
    except ValueError as err:
        raise ValueError(f"--session: {err}") from err
    result = capture_views(images, camera, board, args.out, depths, args.size, args.object)
    progress.show(f"{'view':>5} {'corners':>8} {'rmse px':>8} {'mask conf':>10}  status")
    for k in range(len(images)):
        pose, conf = result.poses.get(k), result.confidence.get(k)
        corners = f"{pose.corners:>8d} {pose.rmse_px:>8.3f}" if pose is not None else f"{'-':>8} {'-':>8}"
        status = "kept" if k in result.kept else f"left out: {result.left_out[k]}"
        progress.show(f"{k:>5} {corners} {'-' if conf is None else f'{conf:.3f}':>10}  {status}")
    centre = np.round(result.object_pose[:3, 3] * 1000, 1).tolist()
    progress.summary(f"capture views: {len(result.kept)} of {len(images)} views, the object's centre on the board at "
                     f"{centre} mm -> {result.path}; next: cgwm init --data {result.path} --gaussians gaussians.npz")
