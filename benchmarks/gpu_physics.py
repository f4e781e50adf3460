"""GPU batch timing: the simulator on a device against MuJoCo's rollout on all CPU cores.

The `cgwm bench physics` cube drop (a 5 cm, 100 g shell of 488 spheres, hull ground contacts)
at large batches, for a machine with CUDA (`cgwm bench physics` times the CPU):

    python benchmarks/gpu_physics.py DEVICES BATCHES [OUT.json]
    COMPILE=0 python benchmarks/gpu_physics.py cuda 1,1024,16384,65536,262144 out/gpu_physics.json

DEVICES: comma-separated torch devices (cpu, cuda); BATCHES: comma-separated batch sizes. On CUDA
it also times `torch.compile(step_prepared)` unless COMPILE=0 (one compilation per batch size).
STEPS (default 50) steps per timing, medians of 3 after a warm-up. Prints a table; mean_z_after
(m) is the cubes' mean height after the steps, the same on every device.
"""
import json
import os
import statistics
import sys
import time

import mujoco
import numpy as np
import torch
from mujoco import rollout as mj_rollout

from cgwm_env import math3d
from cgwm_env.bench.physics import SIDE, MASS, MU, TILT, HEIGHT, _start
from cgwm_env.data.scenes import box_on_plane_xml
from cgwm_env.model import State, box_model
from cgwm_env.simulator import prepare, step_prepared

STEPS = int(os.environ.get("STEPS", "50"))
devices = sys.argv[1].split(",")
batches = [int(b) for b in sys.argv[2].split(",")]
out = sys.argv[3] if len(sys.argv) > 3 else None



def timed(fn, dev, repeats=3):
    """Median wall time (s) of fn() over `repeats` calls after a warm-up, synchronizing CUDA."""
    fn()
    times = []
    for _ in range(repeats):
        if dev == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if dev == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


rows = []
model = box_model(SIDE, MASS, MU)
for dev in devices:
    device_model = model.to(dev)
    kernels = [("eager", step_prepared)]
    if dev == "cuda" and os.environ.get("COMPILE", "1") == "1":
        kernels.append(("compiled", torch.compile(step_prepared, dynamic=False)))
    for name, kernel in kernels:
        for batch in batches:
            state = State(*(t.to(dev) for t in _start(batch)))
            action = torch.zeros(batch, 3, device=dev)
            prepared = prepare(device_model, batch)

            def run():
                s = state
                for _ in range(STEPS):
                    s = kernel(device_model, prepared, s, action)
                return s
            with torch.no_grad():
                start = time.perf_counter()
                final = run()
                first = time.perf_counter() - start
                t = timed(run, dev) / STEPS
            z = float(final.position[:, 2].mean())
            rows.append({"sim": f"ours {name}", "device": dev, "batch": batch, "ms_per_step": 1e3 * t, "env_steps_per_s": batch / t, "first_call_s": first, "mean_z_after": z})
            print(rows[-1], flush=True)
mj_model = mujoco.MjModel.from_xml_string(box_on_plane_xml(SIDE, MASS, MU, model.dt))
mj_data = mujoco.MjData(mj_model)
quat = math3d.quat_from_axis_angle(torch.tensor([1.0, 0.0, 0.0]), torch.tensor(TILT)).tolist()
mj_data.qpos[:] = [0.0, 0.0, HEIGHT, *quat]
st = np.empty(mujoco.mj_stateSize(mj_model, mujoco.mjtState.mjSTATE_FULLPHYSICS))
mujoco.mj_getState(mj_model, mj_data, st, mujoco.mjtState.mjSTATE_FULLPHYSICS)
nthread = os.cpu_count()
with mj_rollout.Rollout(nthread=nthread) as runner:
    datas = [mujoco.MjData(mj_model) for _ in range(nthread)]
    for batch in batches:
        init = np.tile(st, (batch, 1))
        t = timed(lambda: runner.rollout(mj_model, datas, init, nstep=STEPS), "cpu") / STEPS
        rows.append({"sim": f"MuJoCo rollout ({nthread} threads)", "device": "cpu", "batch": batch, "ms_per_step": 1e3 * t, "env_steps_per_s": batch / t})
        print(rows[-1], flush=True)
print(f"{'sim':<28} {'device':>6} {'batch':>7} {'ms/step':>9} {'env-steps/s':>12}")
for r in rows:
    print(f"{r['sim']:<28} {r['device']:>6} {r['batch']:>7} {r['ms_per_step']:9.3f} {r['env_steps_per_s']:12.0f}")
if out:
    json.dump({"torch": torch.__version__, "mujoco": mujoco.__version__, "threads": torch.get_num_threads(), "steps": STEPS, "rows": rows}, open(out, "w"), indent=1)
