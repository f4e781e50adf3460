"""`cgwm synth`: MuJoCo datasets (cgwm_env.data.synth; LEAP Hand clips: cgwm_env.envs.leap.clips)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from cgwm_env import progress
from cgwm_env.data.objects import get_object
from cgwm_env.data.synth import synth
from cgwm_env.envs.leap.clips import synth_leap_clips


def main(args) -> int:
    """Run `cgwm synth` with parsed arguments: refuse to write over datasets already in --out
    (unless --overwrite, which removes them first: stale frames would be left in them), record,
    print the folders written and a summary."""
    get_object(args.object)
    out = Path(args.out)
    if (out / "meta.json").exists():
        raise ValueError(f"--out: {out} is itself a dataset folder; give the folder to write datasets into")
    existing = sorted(p for p in out.glob("*") if (p / "meta.json").is_file()) if out.is_dir() else []
    if existing and not args.overwrite:
        raise ValueError(f"--out: {out} already holds {len(existing)} dataset(s) ({existing[0].name}, ...); "
                         "pass --overwrite to replace them, or another --out")
    for folder in existing:
        shutil.rmtree(folder)
    start = time.perf_counter()
    progress.say(f"synth {args.scenario} {args.object}: {args.episodes} episode(s) at {args.size} px into {out}")
    if args.scenario == "leap":
        paths = synth_leap_clips(args.object, out, args.episodes, args.seed, args.size)
    else:
        paths = synth(args.scenario, args.object, out, args.episodes, args.seed, args.size, args.light)
    for path in paths:
        progress.detail(str(path))
    frames = sum(len(list((Path(p) / "frames").glob("*.png"))) for p in paths)
    progress.summary(f"synth: {len(paths)} dataset(s), {frames} frames, in {time.perf_counter() - start:.0f} s "
                     f"-> {out}")
    return 0
