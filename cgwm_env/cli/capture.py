"""`cgwm capture views`: a multi-view set with camera poses from a ChArUco board (cgwm_env.data.capture)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cgwm_env.data.capture import Board, capture_views, load_session


def main(args) -> None:
    """Read the session folder, write the multi-view set, print one line per view."""
    try:
        board = Board(tuple(args.squares), args.square, args.marker, args.dictionary)
    except ValueError as err:  # Board names its fields; the user typed them as options
        raise ValueError(f"--{err}") from err
    if args.size < 16:
        raise ValueError(f"--size: expected at least 16 px, got {args.size}")
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"--out: cannot make the folder {out} ({err})") from err
    if not os.access(out, os.W_OK):
        raise ValueError(f"--out: {out} is not writable")
    images, camera, depths = load_session(args.session)
    result = capture_views(images, camera, board, out, depths, args.size, args.object)
    print(f"{'view':>5} {'corners':>8} {'rmse px':>8} {'mask conf':>10}  status")
    for k in range(len(images)):
        pose, conf = result.poses.get(k), result.confidence.get(k)
        corners = f"{pose.corners:>8d} {pose.rmse_px:>8.3f}" if pose is not None else f"{'-':>8} {'-':>8}"
        status = "kept" if k in result.kept else f"left out: {result.left_out[k]}"
        print(f"{k:>5} {corners} {'-' if conf is None else f'{conf:.3f}':>10}  {status}")
    centre = np.round(result.object_pose[:3, 3] * 1000, 1).tolist()
    print(f"wrote {Path(result.path)}: {len(result.kept)} of {len(images)} views; the object's centre on the board "
          f"at {centre} mm; next: cgwm init --views {result.path} --out gaussians.npz")
