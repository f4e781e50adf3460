"""`cgwm track`: the object's pose in every frame of clips by render-and-compare (cgwm_env.learn.track)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

from cgwm_env.learn.clips import clip_paths, load_clip
from cgwm_env.learn.track import TrackSettings, pose_errors, track_clip
from cgwm_env.physics.gaussians import SphereGaussians
from cgwm_env.physics.hand_mjcf import PALM_Z


def main(args) -> int:
    """Track every clip under --data (one clip, or its train_* and test_* folders); write one .npz per clip
    (times, object_pos, object_quat, loss, iou) and summary.json under --out; print each clip's error
    against its states.npz where there is one."""
    gfile = Path(args.gaussians)
    if not gfile.is_file() or gfile.suffix not in (".npz", ".ply"):
        raise ValueError(f"--gaussians: expected a stage I .npz or .ply file, got {str(gfile)!r}")
    root = Path(args.data)
    paths = [root] if (root / "meta.json").is_file() else clip_paths(root, "train") + clip_paths(root, "test")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out: expected a folder, got the file {out}")
    out.mkdir(parents=True, exist_ok=True)
    gaussians = SphereGaussians.load_npz(gfile) if gfile.suffix == ".npz" else SphereGaussians.load_ply(gfile)
    settings = TrackSettings(iterations=args.iterations, seed=args.seed)
    summary = []
    for path in paths:
        clip = load_clip(path)
        ground = args.ground if args.ground is not None else (PALM_Z if clip.joint_target is not None else 0.0)
        track = track_clip(gaussians, clip, settings, ground=ground,
                           progress=lambda message: print(f"{path.name}: {message}", file=sys.stderr, flush=True))
        np.savez(out / f"{path.name}.npz", times=np.arange(len(clip)) / clip.fps, object_pos=track.position.numpy(),
                 object_quat=track.quat.numpy(), loss=track.loss.numpy(), iou=track.iou.numpy())
        row = {"clip": str(path), "frames": len(clip), "loss_mean": float(track.loss.mean()),
               "iou_min": float(track.iou.min())}
        line = f"{path.name}: {len(clip)} frames, mask IoU {float(track.iou.min()):.3f} at worst"
        if clip.truth is not None:
            trans, rot = pose_errors(track, clip.truth.position[0], clip.truth.quat[0])
            row.update(trans_median_m=float(trans.median()), trans_max_m=float(trans.max()),
                       rot_median_rad=float(rot.median()), rot_max_rad=float(rot.max()))
            line += (f"; against states.npz: median {float(trans.median()) * 1e3:.2f} mm / "
                     f"{math.degrees(float(rot.median())):.2f} deg, largest {float(trans.max()) * 1e3:.2f} mm / "
                     f"{math.degrees(float(rot.max())):.2f} deg")
        print(line)
        summary.append(row)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return 0
