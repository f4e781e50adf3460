"""`cgwm segment`: fill the masks of recorded clips (cgwm_env.data.segment)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cgwm_env import progress
from cgwm_env.data.dataset import load_dataset
from cgwm_env.data.segment import SegmentSettings, segment_dataset, write_segmentation


def main(args) -> None:
    """Segment each folder and write masks/, hand_masks/ and meta.json's segmentation record;
    show one line per folder and name every unsure or off-clock frame."""
    if not args.min_confidence <= 1:
        raise ValueError(f"--min-confidence: expected a number in [0, 1], got {args.min_confidence}")
    settings = SegmentSettings(min_confidence=args.min_confidence, refine_camera=not args.no_refine_camera)
    folders = [Path(f) for f in args.data]
    for folder in folders:  # check them all before the long work
        if not (folder / "meta.json").is_file():
            raise ValueError(f"--data: {folder} is not a dataset folder (no meta.json)")
        if not os.access(folder / "meta.json", os.W_OK) or not os.access(folder / "masks", os.W_OK):
            raise ValueError(f"--data: {folder}: meta.json and masks/ must be writable")
        if not (folder / "background.png").is_file():
            raise ValueError(f"--data: {folder} has no background.png (the scene without the object; "
                             "`cgwm play --background` records it)")
    progress.show(f"{'folder':<32} {'frames':>6} {'confidence median':>17} {'min':>5} {'unsure':>6} {'shift px':>10}")
    unsure = 0
    for folder in folders:
        seg = segment_dataset(load_dataset(folder), folder, settings)
        write_segmentation(folder, seg, settings)
        shift = f"{seg.camera_shift[0]:+.2f},{seg.camera_shift[1]:+.2f}"
        progress.show(f"{str(folder):<32} {len(seg.masks):>6} {np.median(seg.confidence):>17.3f} "
                      f"{seg.confidence.min():>5.2f} {len(seg.unsure):>6} {shift:>10}")
        for frame, why in seg.unsure.items():
            progress.show(f"  frame {frame}: unsure: {why}")
        if seg.off_clock:
            progress.show(f"  frames not taken on the clip's clock (dropped and shown again, or late): {seg.off_clock}")
        unsure += len(seg.unsure)
    progress.summary(f"segment: {len(folders)} folder(s), {unsure} unsure frame(s) -> masks/, hand_masks/ and "
                     f"meta.json in each")
