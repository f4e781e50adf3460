"""GPU batch timing of the hand scene: the bundled cube on the LEAP Hand, the world model on a
device against its MuJoCo twin through mujoco.rollout on all CPU cores.

    python -m cgwm_env.bench.gpu_hand DEVICES BATCHES [OUT.json]
    python -m cgwm_env.bench.gpu_hand cuda,cpu 1,64,1024,4096 out/gpu_hand.json

Every environment starts from the task's reset (seed 0: the cube upright on the palm, the hand
open) and curls its thumb into the cube for CONTROL_STEPS (default 60) control steps of 1/30 s:
our simulator's 16 physics steps each (480 Hz), MuJoCo's 10 (300 Hz). Medians of 3 after a
warm-up (the physics bench's median_seconds), eager, no gradients. Prints a table of control
steps per second summed over the batch; cube_shift_mm is the cubes' mean displacement at the end
(the thumb pushes it; the same on every device up to rounding).
"""

import json
import os
import sys
import time

import mujoco
import numpy as np
import torch
from mujoco import rollout as mj_rollout

from cgwm_env.bench.physics import median_seconds
from cgwm_env.envs.leap import task
from cgwm_env.envs.leap.mujoco_env import SUBSTEPS, LeapHandMujocoEnv
from cgwm_env.envs.leap.world_model_env import default_model
from cgwm_env.physics.model import State
from cgwm_env.physics.simulator import control_step, prepare
from controllers.tasks import state_from_observation

CONTROL_STEPS = int(os.environ.get("CONTROL_STEPS", "60"))
THUMB_CURL = np.zeros(16, np.float32)
THUMB_CURL[[13, 14, 15]] = task.ACTION_BOUND  # rad per control step


def main(argv: list[str]) -> None:
    """Run the timing: argv = DEVICES BATCHES [OUT.json] (module doc)."""
    devices = argv[0].split(",")
    batches = [int(b) for b in argv[1].split(",")]
    out = argv[2] if len(argv) > 2 else None

    twin = LeapHandMujocoEnv()
    obs, _ = twin.reset(seed=0)
    rows = []
    model = default_model()
    substeps = round(task.CONTROL_DT / model.dt)
    for dev in devices:
        device_model = model.to(dev)
        for batch in batches:
            start = State(*(x.to(dev).expand(batch, -1).contiguous() for x in state_from_observation(obs)))
            action = torch.as_tensor(THUMB_CURL, device=dev)[None].expand(batch, -1)
            try:
                prepared = prepare(device_model, batch)

                def run():
                    s = start
                    for _ in range(CONTROL_STEPS):
                        s = control_step(device_model, prepared, s, action, substeps)
                    if dev == "cuda":
                        torch.cuda.synchronize()
                    return s

                with torch.no_grad():
                    t0 = time.perf_counter()
                    final = run()
                    first = time.perf_counter() - t0
                    t = median_seconds(run, 3) / CONTROL_STEPS
            except torch.OutOfMemoryError:
                print(f"ours, {dev}, batch {batch}: out of memory", flush=True)
                break
            shift = (final.position - start.position).norm(dim=1).mean()
            rows.append({"case": f"ours: control_step, eager, {dev}", "batch": batch, "ms_per_control_step": 1e3 * t,
                         "control_steps_per_s": batch / t, "first_call_s": first, "cube_shift_mm": 1e3 * float(shift)})
            print(rows[-1], flush=True)

    # The twin: the same start, ctrl stepped by THUMB_CURL each control step (clipped to the joint range).
    m, d = twin.mj_model, twin.mj_data
    state = np.empty(mujoco.mj_stateSize(m, mujoco.mjtState.mjSTATE_FULLPHYSICS))
    mujoco.mj_getState(m, d, state, mujoco.mjtState.mjSTATE_FULLPHYSICS)
    targets, target = [], np.asarray(task.observation_parts(obs["observation"])["joint_target"], np.float64)
    for _ in range(CONTROL_STEPS):
        target = task.next_target(target, THUMB_CURL)
        targets += [target] * SUBSTEPS
    control = np.asarray(targets)[None]
    nthread = os.cpu_count()
    with mj_rollout.Rollout(nthread=nthread) as runner:
        datas = [mujoco.MjData(m) for _ in range(nthread)]
        for batch in batches:
            initial, ctrl = np.tile(state, (batch, 1)), np.tile(control, (batch, 1, 1))
            result = []

            def run():
                result[:] = [runner.rollout(m, datas, initial, ctrl, nstep=CONTROL_STEPS * SUBSTEPS)[0]]

            t = median_seconds(run, 3) / CONTROL_STEPS
            obj = 1 + m.joint("object").qposadr[0] + np.arange(3)  # the object's position in the state (time first)
            shift = np.linalg.norm(result[0][:, -1, obj] - state[obj], axis=1).mean()
            rows.append({"case": f"MuJoCo twin: mujoco.rollout ({nthread} threads)", "batch": batch,
                         "ms_per_control_step": 1e3 * t, "control_steps_per_s": batch / t,
                         "cube_shift_mm": 1e3 * shift})
            print(rows[-1], flush=True)

    print(f"{'case':<44} {'batch':>7} {'ms/control step':>16} {'control steps/s':>16} {'cube shift mm':>14}")
    for r in rows:
        print(f"{r['case']:<44} {r['batch']:>7} {r['ms_per_control_step']:16.2f} {r['control_steps_per_s']:16.0f}"
              f" {r['cube_shift_mm']:14.2f}")
    if out:
        with open(out, "w") as f:
            json.dump({"torch": torch.__version__, "mujoco": mujoco.__version__, "threads": torch.get_num_threads(),
                       "control_steps": CONTROL_STEPS, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1:])
