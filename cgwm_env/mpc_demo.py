"""The MPC demo (`cgwm demo`): the bundled cube world model plans, by gradient-based MPC, the LEAP
Hand's motions that turn a cube on its palm in MuJoCo (ContactGaussian-LeapHandMuJoCo-v0, the
twin plant). Prints a live progress line and a summary, and writes mpc_demo.gif (MuJoCo's view
beside the world model's Gaussian render of the same state) and mpc_demo.json."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import gymnasium as gym
import imageio.v2 as imageio
import numpy as np
import torch

from cgwm_env.envs.leap_task import CONTROL_DT

FRAME_EVERY = 2  # control steps per video frame (15 fps of a 30 Hz loop)


def run(out_dir: str | Path, seed: int = 7, max_steps: int | None = None, config: str | Path | None = None,
        image_size: int = 160, compile: bool = False) -> dict:
    """Run one episode (task seed `seed`; 7 is one that `cgwm bench mpc` counts a success, as it
    does 90-95% of seeds 0-19), write mpc_demo.gif and mpc_demo.json into out_dir and return the
    summary. config: an MPC settings YAML (default configs/mpc.yaml where present); compile: plan
    through torch.compile (controllers.mpc; the compiling first plan is not in the rate)."""
    import cgwm_env  # noqa: F401  (registers the environments)
    from controllers.mpc import ReorientationMPC
    from controllers.tasks import MAX_STEPS, REACH_ANGLE, run_episode, state_from_observation
    from cgwm_env.bench.mpc import load_settings

    torch.set_num_threads(1)  # batch-1 steps are op-overhead bound: a second thread only contends
    max_steps = MAX_STEPS if max_steps is None else max_steps
    settings, source = load_settings(config)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    twin = gym.make("ContactGaussian-LeapHandMuJoCo-v0", render_mode="rgb_array", image_size=image_size)
    world = gym.make("ContactGaussian-LeapHand-v0", image_size=image_size).unwrapped
    planner = ReorientationMPC(world.model, settings, compile=compile)
    frames, start = [], time.perf_counter()

    def frame(obs):
        world.core.state = state_from_observation(obs)  # draw the twin's state with the world model's Gaussians
        frames.append(np.concatenate((twin.render(), world.core.image(0)), axis=1))

    def on_step(t, obs, info):
        if planner.waypoints:
            solve = "approach (pre-grasp)"
        else:
            solve = f"solve {planner.solve_times[-1] * 1e3:5.1f} ms" if planner.solve_times else "compiled the planner"
        angle = math.degrees(2 * math.acos(math.sqrt(max(0.0, 1.0 - info["orientation_error"]))))
        print(f"\rstep {t:3d}/{max_steps}  angle to goal {angle:5.1f} deg  error {info['orientation_error']:.3f}  "
              f"{solve:20}", end="", flush=True)
        if t % FRAME_EVERY == 0:
            frame(obs)

    print(f"MPC reorientation in MuJoCo (seed {seed}), the cube world model planning; settings {source}"
          + ("; the first solve compiles the planner (about a minute, seconds when cached)" if compile else ""))
    result = run_episode(twin, planner, seed, max_steps=max_steps, on_step=on_step)
    print()
    times = np.array(result.solve_times or [math.nan]) * 1e3  # none: the episode ended in the approach
    summary = {
        "seed": seed, "success": result.success, "steps": result.steps, "seconds_simulated": result.steps * CONTROL_DT,
        "final_error": result.final_error, "final_angle_deg": result.final_angle_deg,
        f"within_{REACH_ANGLE}_rad": result.reached, "dropped": result.dropped, "regrasps": result.regrasps,
        "solve_ms_median": float(np.median(times)), "solve_ms_p95": float(np.percentile(times, 95)),
        "mpc_hz": float(1e3 / np.median(times)), "compile_s": planner.compile_seconds,
        "wall_s": time.perf_counter() - start,
    }
    gif = out_dir / "mpc_demo.gif"
    imageio.mimsave(gif, frames, duration=1000 * CONTROL_DT * FRAME_EVERY, loop=0)
    (out_dir / "mpc_demo.json").write_text(json.dumps(summary, indent=2))
    print(f"{'success' if result.success else 'no success'} after {result.steps} steps "
          f"({summary['seconds_simulated']:.1f} s simulated, {result.regrasps} regrasps); "
          f"final error {result.final_angle_deg:.1f} deg; "
          f"MPC {summary['mpc_hz']:.0f} Hz (median solve {summary['solve_ms_median']:.1f} ms, "
          f"p95 {summary['solve_ms_p95']:.1f} ms)")
    print(f"wrote {gif} (left: MuJoCo, right: the world model's Gaussians) and {out_dir / 'mpc_demo.json'}",
          file=sys.stdout)
    twin.close()
    return summary
