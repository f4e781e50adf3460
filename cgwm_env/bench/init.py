"""`cgwm bench init`: stage I (SG-GS) on every library object's multi-view set.

Per object: 72 MuJoCo views at 128 x 128 (quick: two objects, 24 views at 64 x 64, a coarser
hull and fewer steps), every 8th view held out of the fit (quick: every 4th). Reports the held-out PSNR (dB)
and mask IoU, the surface error on 4000 points sampled on the true surface (phi_mm: mean |phi|
of the soft SDF with the simulator's default settings; dist_mm: mean |distance| to the exact
sphere union min_i |p - c_i| - r_i), the Gaussians and the seconds of the fit and of the whole
stage (with saving and meshing).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

from cgwm_env import progress
from cgwm_env.data.objects import OBJECTS
from cgwm_env.data.synth import synth_multiview
from cgwm_env.learn import stage1
from cgwm_env.physics.collision import sphere_distance
from cgwm_env.physics.gaussians import SphereGaussians

QUICK_OBJECTS = ("cube", "mug")


def run(out: str | None = None, quick: bool = False) -> list[dict]:
    """Run the benchmark, print a table, write JSON to `out` if given; returns the rows."""
    names = QUICK_OBJECTS if quick else tuple(OBJECTS)
    n_views, size, holdout = (24, 64, 4) if quick else (72, 128, 8)
    quick_settings = stage1.Settings(grid=32, geometry_iterations=150, appearance_iterations=150)
    settings = quick_settings if quick else stage1.Settings()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            views = synth_multiview(name, Path(tmp) / name, n_views=n_views, size=size, seed=0)
            summary = stage1.run_init(views, Path(tmp) / f"{name}.npz", settings, holdout, 64 if quick else 96,
                                    progress=False)
            gaussians = SphereGaussians.load_npz(Path(tmp) / f"{name}.npz")
            points = torch.as_tensor(OBJECTS[name].sample_surface(4000, seed=1), dtype=torch.float32)
            phi = sphere_distance(gaussians, points)
            dist = sphere_distance(gaussians, points, settings=None)
            rows.append({"object": name, "views": summary["views"], "held_out": summary["held_out"], "size": size,
                         "psnr_db": round(summary["psnr"], 2), "iou": round(summary["iou"], 4),
                         "phi_mm": round(1e3 * float(phi.abs().mean()), 3),
                         "dist_mm": round(1e3 * float(dist.abs().mean()), 3), "gaussians": summary["gaussians"],
                         "fit_s": round(summary["fit_s"], 1), "total_s": round(summary["seconds"], 1)})
            progress.say(f"bench init: {name}: held-out PSNR {summary['psnr']:.2f} dB in {summary['seconds']:.0f} s")
    print(f"{'object':8} {'views':>5} {'size':>4} {'PSNR dB':>8} {'IoU':>6} {'phi mm':>7} {'dist mm':>7} "
          f"{'Gaussians':>9} {'fit s':>6} {'total s':>7}")
    for r in rows:
        print(f"{r['object']:8} {r['views']:>5} {r['size']:>4} {r['psnr_db']:>8.2f} {r['iou']:>6.3f} "
              f"{r['phi_mm']:>7.2f} {r['dist_mm']:>7.2f} {r['gaussians']:>9} {r['fit_s']:>6.1f} {r['total_s']:>7.1f}")
    print("phi: soft SDF (default SoftSDFSettings) at true-surface points; dist: exact sphere-union distance")
    if out is not None:
        Path(out).write_text(json.dumps(rows, indent=2))
    return rows
