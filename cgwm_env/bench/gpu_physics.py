"""GPU batch timing: the simulator on a device against MuJoCo's rollout on all CPU cores.

The `cgwm bench physics` cube drop (a 5 cm, 100 g shell of 488 spheres, hull ground contacts)
at large batches, for a machine with CUDA (`cgwm bench physics` times the CPU):

    python -m cgwm_env.bench.gpu_physics DEVICES BATCHES [OUT.json]
    COMPILE=0 python -m cgwm_env.bench.gpu_physics cuda 1,1024,16384,65536,262144 out/gpu_physics.json

DEVICES: comma-separated torch devices (cpu, cuda); BATCHES: comma-separated batch sizes. On CUDA
it also times `torch.compile(step_prepared)` unless COMPILE=0 (one compilation per batch size).
STEPS (default 50) steps per timing, medians of 3 after a warm-up (the physics bench's
median_seconds and mujoco_rows, on all CPU cores). Prints a table; mean_z_after (m) is the cubes'
mean height after the steps, the same on every device.
"""

import json
import os
import sys
import time

import mujoco
import torch

from cgwm_env.bench.physics import MASS, MU, SIDE, median_seconds, mujoco_rows, start_state
from cgwm_env.physics.model import State, box_model
from cgwm_env.physics.simulator import prepare, step_prepared

STEPS = int(os.environ.get("STEPS", "50"))


def main(argv: list[str]) -> None:
    """Run the timing: argv = DEVICES BATCHES [OUT.json] (module doc)."""
    devices = argv[0].split(",")
    batches = [int(b) for b in argv[1].split(",")]
    out = argv[2] if len(argv) > 2 else None

    rows = []
    model = box_model(SIDE, MASS, MU)
    for dev in devices:
        device_model = model.to(dev)
        kernels = [("eager", step_prepared)]
        if dev == "cuda" and os.environ.get("COMPILE", "1") == "1":
            kernels.append(("torch.compile", torch.compile(step_prepared, dynamic=False)))
        for name, kernel in kernels:
            for batch in batches:
                state = State(*(t.to(dev) for t in start_state(batch)))
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
                    t = median_seconds(run, 3) / STEPS
                rows.append({"case": f"ours: rollout, {name}, {dev}", "batch": batch, "ms_per_step": 1e3 * t,
                             "env_steps_per_s": batch / t, "first_call_s": first,
                             "mean_z_after": float(final.position[:, 2].mean())})
                print(rows[-1], flush=True)
    rows += mujoco_rows(12, STEPS, os.cpu_count(), batches)
    print(f"{'case':<40} {'batch':>7} {'ms/step':>9} {'env-steps/s':>12}")
    for r in rows:
        print(f"{r['case']:<40} {r['batch']:>7} {r['ms_per_step']:9.3f} {r['env_steps_per_s']:12.0f}")
    if out:
        with open(out, "w") as f:
            json.dump({"torch": torch.__version__, "mujoco": mujoco.__version__, "threads": torch.get_num_threads(),
                       "steps": STEPS, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1:])
