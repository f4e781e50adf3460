"""Environment benchmark: control steps per second of ContactGaussian-LeapHand-v1 (the world model)
without and with the 128x128 image, eager and with compile=True, of its natively batched vector env
at 64 and 1024 envs, and of the MuJoCo twin, in one run. Every env runs the same motion: the thumb curling into the cube on the
palm (contacts active), from one seeded reset; a rate is env steps per second of wall time, the
median over repeated blocks of steps.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import cgwm_env  # noqa: F401  (registers the environments)
from cgwm_env import progress
from cgwm_env.envs.leap import task
from cgwm_env.physics import hand_mjcf

LEAP, TWIN = "ContactGaussian-LeapHand-v1", "ContactGaussian-LeapHandMuJoCo-v1"
TARGET_WITH_IMAGE = 60.0  # env steps/s with a 128x128 image (issue 5)


def thumb_curl() -> np.ndarray:
    """The action (16,) rad curling the thumb into the object on the palm (contacts active)."""
    action = np.zeros(hand_mjcf.N_JOINTS, np.float32)
    action[[13, 14, 15]] = 1.0  # normalised: ACTION_BOUND rad per control step
    return action


def env_rate(env, action, blocks: int, steps: int, batch: int = 1) -> float:
    """Median env steps/s over `blocks` blocks of `steps` steps after a warm-up step."""
    env.reset(seed=0)
    env.step(action)
    rates = []
    for _ in range(blocks):
        start = time.perf_counter()
        for _ in range(steps):
            env.step(action)
        rates.append(batch * steps / (time.perf_counter() - start))
    return statistics.median(rates)


def run(out: str | None = None, quick: bool = False) -> dict:
    """Time the envs, print a table, write JSON to `out` if given; returns the figures.
    quick: fewer and shorter blocks (noisier)."""
    blocks, steps = (2, 3) if quick else (5, 10)
    curl = thumb_curl()
    rows = []

    def add(case, batch, rate):
        rows.append({"case": case, "batch": batch, "env_steps_per_s": rate, "ms_per_env_step": 1e3 / rate})
        progress.say(f"bench env: {case}, batch {batch}: {rate:.1f} env-steps/s")

    add("world model, no image", 1, env_rate(gym.make(LEAP), curl, blocks, steps))
    add("world model, 128x128 image", 1, env_rate(gym.make(LEAP, image_obs=True, image_size=128), curl, blocks, steps))
    # compile=True: the warm-up step in env_rate pays for the compilation (not timed).
    add("world model, compiled, no image", 1, env_rate(gym.make(LEAP, compile=True), curl, blocks, steps))
    add("world model, compiled, 128x128 image", 1,
        env_rate(gym.make(LEAP, compile=True, image_obs=True, image_size=128), curl, blocks, steps))
    for batch in (64, 1024):
        venv = gym.make_vec(LEAP, num_envs=batch)  # eager: batching amortizes the per-op overhead
        add("world model, make_vec, no image", batch,
            env_rate(venv, np.tile(curl, (batch, 1)), max(1, blocks // 2), max(1, steps // 5), batch))
    add("MuJoCo twin, no image", 1, env_rate(gym.make(TWIN), curl, blocks, 10 * steps))
    add("MuJoCo twin, 128x128 image", 1, env_rate(gym.make(TWIN, image_obs=True, image_size=128), curl, blocks, 10 * steps))
    twin = rows[-2]["env_steps_per_s"]
    for r in rows:
        r["ratio_to_mujoco_twin"] = r["env_steps_per_s"] / twin

    print(f"{'case':<36} {'batch':>6} {'env-steps/s':>12} {'ms/env-step':>12} {'vs twin':>8}")
    for r in rows:
        print(f"{r['case']:<36} {r['batch']:>6} {r['env_steps_per_s']:12.1f} {r['ms_per_env_step']:12.3f} "
              f"{r['ratio_to_mujoco_twin']:8.3f}")
    for row in (rows[1], rows[3]):
        rate = row["env_steps_per_s"]
        print(f"target: >= {TARGET_WITH_IMAGE:.0f} env steps/s with the image ({row['case']}): "
              f"{'met' if rate >= TARGET_WITH_IMAGE else 'missed'} ({rate:.1f})")
    result = {"torch": torch.__version__, "threads": torch.get_num_threads(),
              "machine": platform.processor() or platform.machine(), "blocks": blocks, "steps": steps,
              "control_dt_s": task.CONTROL_DT, "target_with_image": TARGET_WITH_IMAGE, "rows": rows}
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=2))
        print(f"wrote {out}")
    return result
