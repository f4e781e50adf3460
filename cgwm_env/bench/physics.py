"""`cgwm bench physics`: the simulator's speed beside MuJoCo's on the same cube drop.

Scene: a 5 cm, 100 g cube of 488 spheres (a hollow shell, 10 per edge) released 1 mm above the
ground with a small tilt, h = model.dt; ground contacts from the 8 hull spheres (the default) and
from all 488. Figures are medians over repeats; the machine is shared,
so compare ratios taken in one run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform
import statistics
import time
from pathlib import Path

import mujoco
import numpy as np
import torch
from mujoco import rollout as mj_rollout

from cgwm_env import progress
from cgwm_env.data.scenes import box_on_plane_xml
from cgwm_env.physics import math3d
from cgwm_env.physics.model import PhysicalParams, State, box_model
from cgwm_env.physics.simulator import prepare, rollout, step, step_prepared

SIDE, MASS, MU = 0.05, 0.1, 0.5
TILT = math.radians(5.0)
HEIGHT = 0.028  # lowest corner 1 mm above the ground: contact from the first steps on


def start_state(batch: int) -> State:
    quat = math3d.quat_from_axis_angle(torch.tensor([1.0, 0.0, 0.0]), torch.tensor(TILT))
    return State.make(torch.tensor([[0.0, 0.0, HEIGHT]]).expand(batch, 3).clone(), quat=quat)


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _ours(ground_contacts: str, repeats: int, steps: int, compiled: bool) -> list[dict]:
    model = box_model(SIDE, MASS, MU, ground_contacts=ground_contacts)
    candidates = model.ground_candidates()
    label = f"{ground_contacts} ({len(model.gaussians) if candidates is None else len(candidates)})"
    rows = []
    one = start_state(1)
    with torch.no_grad():
        t = median_seconds(lambda: step(model, one), repeats * 20)
    rows.append({"case": "ours: step forward", "contacts": label, "batch": 1, "ms_per_step": t * 1e3})

    params = [p.detach().clone().requires_grad_() for p in model.params.tensors()]
    grad_model = dataclasses.replace(model, params=PhysicalParams(*params))

    def forward_backward():
        traj = rollout(grad_model, one, steps=steps)
        traj.position[:, -1].sum().backward()

    t = median_seconds(forward_backward, max(3, repeats // 2)) / steps
    rows.append({"case": "ours: step forward+backward", "contacts": label, "batch": 1, "ms_per_step": t * 1e3})

    kernels = [("ours: rollout", step_prepared)]
    if compiled:  # fixed shapes, one compilation per batch size (about 10 s each)
        kernels.append(("ours: rollout, torch.compile", torch.compile(step_prepared, dynamic=False)))
    for case, kernel in kernels:
        for batch in (1, 64, 1024):
            state, action = start_state(batch), torch.zeros(batch, 3)
            n = steps if batch < 1024 else max(10, steps // 5)

            def run():
                s, prepared = state, prepare(model, batch)
                for _ in range(n):
                    s = kernel(model, prepared, s, action)

            with torch.no_grad():
                t = median_seconds(run, max(3, repeats // 4)) / n
            rows.append({"case": case, "contacts": label, "batch": batch, "ms_per_step": t * 1e3,
                         "env_steps_per_s": batch / t})
            progress.say(f"bench physics: {case}, contacts {label}, batch {batch}: {batch / t:.0f} env-steps/s")
    return rows


def mujoco_rows(repeats: int, steps: int, nthread: int, batches=(1, 64, 1024)) -> list[dict]:
    m = mujoco.MjModel.from_xml_string(box_on_plane_xml(SIDE, MASS, MU, box_model().dt))
    d = mujoco.MjData(m)
    quat = math3d.quat_from_axis_angle(torch.tensor([1.0, 0.0, 0.0]), torch.tensor(TILT)).tolist()
    d.qpos[:] = [0.0, 0.0, HEIGHT, *quat]
    size = mujoco.mj_stateSize(m, mujoco.mjtState.mjSTATE_FULLPHYSICS)
    state = np.empty(size)
    mujoco.mj_getState(m, d, state, mujoco.mjtState.mjSTATE_FULLPHYSICS)
    rows = []
    with mj_rollout.Rollout(nthread=nthread) as runner:
        datas = [mujoco.MjData(m) for _ in range(nthread)]
        for batch in batches:
            initial = np.tile(state, (batch, 1))
            t = median_seconds(lambda: runner.rollout(m, datas, initial, nstep=steps), max(3, repeats // 4)) / steps
            rows.append({"case": f"MuJoCo: mujoco.rollout ({nthread} threads)", "contacts": "box-plane",
                         "batch": batch, "ms_per_step": t * 1e3, "env_steps_per_s": batch / t})
            progress.say(f"bench physics: MuJoCo, batch {batch}: {batch / t:.0f} env-steps/s")
    return rows


def run(out: str | None = None, quick: bool = False) -> dict:
    """Time the simulator and MuJoCo, print a table, write JSON to `out` if given; returns the
    figures. quick: fewer repeats and no torch.compile rows."""
    repeats, steps = (6, 20) if quick else (20, 100)
    threads = torch.get_num_threads()
    # MuJoCo runs before and after ours (torch's idle threads can slow the next runner); its best
    # figures are kept, so the ratios are if anything unfavourable to us.
    before = mujoco_rows(repeats, steps, max(1, threads))
    ours = _ours("hull", repeats, steps, compiled=not quick) + _ours("all", repeats, steps, compiled=False)
    after = mujoco_rows(repeats, steps, max(1, threads))
    rows = ours + [max(a, b, key=lambda r: r["env_steps_per_s"]) for a, b in zip(before, after)]
    mj_1024 = next(r for r in rows if r["case"].startswith("MuJoCo") and r["batch"] == 1024)["env_steps_per_s"]
    for r in rows:
        if "env_steps_per_s" in r:
            r["ratio_to_mujoco_at_same_batch"] = r["env_steps_per_s"] / next(
                m["env_steps_per_s"] for m in rows if m["case"].startswith("MuJoCo") and m["batch"] == r["batch"])
    print(f"{'case':<40} {'contacts':>9} {'batch':>6} {'ms/step':>9} {'env-steps/s':>12} {'vs MuJoCo':>9}")
    for r in rows:
        rate = f"{r['env_steps_per_s']:12.0f}" if "env_steps_per_s" in r else " " * 12
        ratio = f"{r['ratio_to_mujoco_at_same_batch']:9.3f}" if "ratio_to_mujoco_at_same_batch" in r else ""
        print(f"{r['case']:<40} {r['contacts']:>9} {r['batch']:>6} {r['ms_per_step']:9.3f} {rate} {ratio}")
    result = {
        "scene": f"{SIDE} m cube, {MASS} kg, 488 spheres, tilted drop onto the ground",
        "torch": torch.__version__, "mujoco": mujoco.__version__, "threads": threads,
        "machine": platform.processor() or platform.machine(), "repeats": repeats, "steps": steps,
        "mujoco_env_steps_per_s_at_1024": mj_1024, "rows": rows,
    }
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=2))
        print(f"wrote {out}")
    return result
