"""Renderer benchmark: forward and forward+backward times, peak memory, torch vs gsplat.

Scene (as in the CPU prototype): Gaussians spread uniformly over the surface of a 5 cm cube,
scales 2-4 mm, opacities 0.5-0.99, seen from 0.30 m along a diagonal (three faces in view),
fovy 45 deg. Times are medians over repeated runs, float32, ms.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import time

import torch

from cgwm_env import progress
from cgwm_env.physics.gaussians import FACE_COLORS, SphereGaussians
from cgwm_env.render import render
from cgwm_env.render.camera import Camera, look_at

CASES = ((128, 2000), (128, 10000), (256, 2000), (256, 10000))


def cube_scene(n: int, size: int, seed: int = 0) -> tuple[SphereGaussians, Camera]:
    """n Gaussians on a 5 cm cube's faces, and a size x size camera 0.30 m away on a diagonal."""
    gen = torch.Generator().manual_seed(seed)
    face = torch.randint(0, 6, (n,), generator=gen)
    centers = (torch.rand(n, 3, generator=gen) - 0.5) * 0.05
    axis, sign = face // 2, 1.0 - 2.0 * (face % 2)
    centers[torch.arange(n), axis] = 0.025 * sign
    scales = 0.002 + 0.002 * torch.rand(n, generator=gen)
    opacity = 0.5 + 0.49 * torch.rand(n, generator=gen)
    gaussians = SphereGaussians(centers, scales.log(), torch.logit(opacity), FACE_COLORS[face].clone())
    eye = torch.tensor([1.0, 0.8, 0.9])
    T_cw = look_at(0.30 * eye / eye.norm(), (0.0, 0.0, 0.0))
    return gaussians, Camera.from_fovy(math.radians(45.0), size, size, T_cw)


def _median_ms(fn, device, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def _time_case(size: int, n: int, backend: str, device: torch.device, repeats: int) -> dict:
    gaussians, camera = cube_scene(n, size)
    params = [t.to(device).requires_grad_() for t in gaussians.tensors()]
    weights = torch.rand(size, size, 3, generator=torch.Generator().manual_seed(1)).to(device)

    def forward():
        return render(SphereGaussians(*params), camera, background=(1.0, 1.0, 1.0), backend=backend)

    def forward_backward():
        out = forward()
        ((out.rgb * weights).sum() + out.alpha.sum() + out.depth.sum()).backward()

    return {
        "backend": backend,
        "device": str(device),
        "size": size,
        "gaussians": n,
        "fwd_ms": round(_median_ms(forward, device, repeats), 2),
        "fwd_bwd_ms": round(_median_ms(forward_backward, device, repeats), 2),
    }


def _peak_rss_mib(size: int, n: int) -> float:
    """Growth of the peak resident set (VmHWM) over one forward+backward, in a fresh process."""
    code = f"""
import torch
from cgwm_env.bench.render import cube_scene
from cgwm_env.physics.gaussians import SphereGaussians
from cgwm_env.render import render
g, cam = cube_scene({n}, {size})
params = [t.requires_grad_() for t in g.tensors()]
def status(key):
    for line in open('/proc/self/status'):
        if line.startswith(key):
            return int(line.split()[1])
open('/proc/self/clear_refs', 'w').write('5')
base = status('VmRSS:')
out = render(SphereGaussians(*params), cam)
(out.rgb.sum() + out.alpha.sum() + out.depth.sum()).backward()
print((status('VmHWM:') - base) / 1024)
"""
    try:
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        return round(float(result.stdout.split()[-1]), 1)
    except (subprocess.CalledProcessError, OSError, ValueError, IndexError):
        return float("nan")


def run(out: str | None = None, repeats: int = 20) -> list[dict]:
    """Time every case on the CPU torch backend (and gsplat where CUDA is present); print a table,
    write JSON to `out` if given, and return the rows."""
    rows = []
    cpu = torch.device("cpu")
    for size, n in CASES:
        row = _time_case(size, n, "torch", cpu, repeats)
        row["peak_rss_mib"] = _peak_rss_mib(size, n)
        row["threads"] = torch.get_num_threads()
        rows.append(row)
        progress.say(f"bench render: {size} px, {n} Gaussians on the CPU: {row['fwd_ms']} ms forward, "
                     f"{row['fwd_bwd_ms']} ms forward+backward")
    if torch.cuda.is_available():
        cuda = torch.device("cuda")
        for size, n in CASES:
            for backend in ("torch", "gsplat"):
                rows.append(_time_case(size, n, backend, cuda, repeats))
    header = f"{'backend':8} {'device':6} {'size':>5} {'gaussians':>9} {'fwd ms':>8} {'fwd+bwd ms':>10} {'peak MiB':>9}"
    print(header)
    for r in rows:
        peak = r.get("peak_rss_mib", float("nan"))
        print(
            f"{r['backend']:8} {r['device']:6} {r['size']:>5} {r['gaussians']:>9} {r['fwd_ms']:>8.2f} "
            f"{r['fwd_bwd_ms']:>10.2f} {peak:>9.1f}"
        )
    print("peak MiB: growth of the process's peak resident set over one CPU forward+backward (fresh process)")
    if out is not None:
        with open(out, "w") as f:
            json.dump(rows, f, indent=2)
    return rows
