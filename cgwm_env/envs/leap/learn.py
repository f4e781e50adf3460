"""A LEAP Hand world model of a library object learned from its MuJoCo twin, the same way for
every object (`cgwm learn-leap --object NAME --out DIR`, scripts/learn_world_model.sh): VIEWS views at
VIEW_SIZE px (cgwm synth --scenario multiview), stage I on a GRID-voxel hull (cgwm init),
CLIPS train/test pairs of LEAP Hand clips at CLIP_SIZE px (cgwm synth --scenario leap), then stage
II on the train clips with the test clips held out (cgwm_env.learn.leap). OUT_DIR/model is the
world-model bundle."""

from __future__ import annotations

from pathlib import Path

from cgwm_env.data.objects import get_object
from cgwm_env.data.synth import synth
from cgwm_env.envs.leap.clips import synth_leap_clips
from cgwm_env.learn.leap import run_learn_leap
from cgwm_env.learn.stage1 import Settings, run_init
from cgwm_env.learn.world_model import WorldModel

VIEW_SIZE, GRID, CLIPS, CLIP_SIZE = 96, 30, 3, 64


def learn_world_model(object_name: str, out_dir, progress: bool = True) -> WorldModel:
    """Learn the LEAP Hand world model of the library object `object_name` under `out_dir` (module
    doc); returns the bundle out_dir/model. A step whose output is already there is not run again
    (views_000/meta.json, gaussians.npz, the clips' meta.json, model/world_model.json)."""
    get_object(object_name)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out: expected a folder, got the file {out}")
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "views" / "views_000" / "meta.json").is_file():
        synth("multiview", object_name, out / "views", 1, 0, VIEW_SIZE)
    if not (out / "gaussians.npz").is_file():
        run_init(out / "views" / "views_000", out / "gaussians.npz", Settings(grid=GRID), progress=progress)
    if not all((out / "leap" / f"{split}_{k:03d}" / "meta.json").is_file() for split in ("train", "test")
               for k in range(CLIPS)):
        synth_leap_clips(object_name, out / "leap", CLIPS, 0, CLIP_SIZE)
    if not (out / "model" / "world_model.json").is_file():
        run_learn_leap(out / "leap", out / "gaussians.npz", out / "model", progress=progress)
    return WorldModel.load(out / "model")
