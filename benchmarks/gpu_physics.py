"""GPU batch timing: the simulator on a device against MuJoCo's rollout on all CPU cores.

The `cgwm bench physics` cube drop (a 5 cm, 100 g shell of 488 spheres, hull ground contacts)
at large batches, for a machine with CUDA (`cgwm bench physics` times the CPU):

    python benchmarks/gpu_physics.py DEVICES BATCHES [OUT.json]
    COMPILE=0 python benchmarks/gpu_physics.py cuda 1,1024,16384,65536,262144 out/gpu_physics.json

DEVICES: comma-separated torch devices (cpu, cuda); BATCHES: comma-separated batch sizes. On CUDA
it also times `torch.compile(step_prepared)` unless COMPILE=0 (one compilation per batch size).
STEPS (default 50) steps per timing, medians of 3 after a warm-up (the physics bench's
_median_seconds and _mujoco, on all CPU cores). Prints a table; mean_z_after (m) is the cubes'
mean height after the steps, the same on every device.
"""
import json
import os
import sys
import time

import mujoco
import torch

from cgwm_env.bench.physics import MASS, MU, SIDE, _median_seconds, _mujoco, _start
from cgwm_env.model import State, box_model
from cgwm_env.simulator import prepare, step_prepared

STEPS = int(os.environ.get("STEPS", "50"))
devices = sys.argv[1].split(",")
batches = [int(b) for b in sys.argv[2].split(",")]
out = sys.argv[3] if len(sys.argv) > 3 else None

rows = []
model = box_model(SIDE, MASS, MU)
for dev in devices:
    device_model = model.to(dev)
    kernels = [("eager", step_prepared)]
    if dev == "cuda" and os.environ.get("COMPILE", "1") == "1":
        kernels.append(("torch.compile", torch.compile(step_prepared, dynamic=False)))
    for name, kernel in kernels:
        for batch in batches:
            state = State(*(t.to(dev) for t in _start(batch)))
            action = torch.zeros(batch, 3, device=dev)
            prepared = prepare(device_model, batch)

            def run():
                s = state
                for _ in range(STEPS):
                    s = kernel(device_model, prepared, s, action)
                if dev == "cuda":
                    torch.cuda.synchronize()
                return s

            with torch.no_grad():
                start = time.perf_counter()
                final = run()
                first = time.perf_counter() - start
                t = _median_seconds(run, 3) / STEPS
            rows.append({"case": f"ours: rollout, {name}, {dev}", "batch": batch, "ms_per_step": 1e3 * t,
                         "env_steps_per_s": batch / t, "first_call_s": first,
                         "mean_z_after": float(final.position[:, 2].mean())})
            print(rows[-1], flush=True)
rows += _mujoco(12, STEPS, os.cpu_count(), batches)
print(f"{'case':<40} {'batch':>7} {'ms/step':>9} {'env-steps/s':>12}")
for r in rows:
    print(f"{r['case']:<40} {r['batch']:>7} {r['ms_per_step']:9.3f} {r['env_steps_per_s']:12.0f}")
if out:
    with open(out, "w") as f:
        json.dump({"torch": torch.__version__, "mujoco": mujoco.__version__, "threads": torch.get_num_threads(),
                   "steps": STEPS, "rows": rows}, f, indent=1)
