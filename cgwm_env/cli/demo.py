"""`cgwm demo`: the MPC demo (default) and the simulator demo (--scene sim).

The MPC demo: the bundled cube world model plans, by gradient-based MPC, the LEAP Hand's motions
that turn a cube on its palm in MuJoCo (ContactGaussian-LeapHandMuJoCo-v0, the twin plant). Prints
a live progress line and a summary, and writes mpc_demo.gif (MuJoCo's view beside the world
model's Gaussian render of the same state) and mpc_demo.json. The simulator demo: a cube dropped
onto the ground and a cube pushed across it, simulated as one batch of two environments; prints a
table and writes a plot of height and speed over time."""

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

from cgwm_env.envs.leap.task import CONTROL_DT, MAX_EPISODE_STEPS, angle_error
from cgwm_env.physics import math3d
from cgwm_env.physics.model import State, box_model, load_model_settings
from cgwm_env.physics.simulator import rollout
from controllers.mpc import ReorientationMPC, load_settings
from controllers.tasks import REACH_ANGLE, run_episode, state_from_observation

FRAME_EVERY = 2  # control steps per video frame (15 fps of a 30 Hz loop)
SIDE = 0.05  # m, the simulator demo's cubes


def main(args) -> None:
    """`cgwm demo` from parsed arguments."""
    if args.scene == "mpc":
        run_mpc(args.out, seed=args.seed, max_steps=args.steps, config=args.config, compile=args.compile)
    else:
        run_sim(args.out, seconds=args.seconds, settings=load_model_settings(args.config) if args.config else {})


def run_mpc(out_dir: str | Path, seed: int = 7, max_steps: int | None = None, config: str | Path | None = None,
        image_size: int = 160, compile: bool = False) -> dict:
    """Run one episode (task seed `seed`; 7 is one that `cgwm bench mpc` counts a success, as it
    does 90-95% of seeds 0-19), write mpc_demo.gif and mpc_demo.json into out_dir and return the
    summary. config: an MPC settings YAML overriding MPCSettings' defaults; compile: plan
    through torch.compile (controllers.mpc; the compiling first plan is not in the rate)."""
    max_steps = MAX_EPISODE_STEPS if max_steps is None else max_steps
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
        angle = math.degrees(angle_error(obs["object_quat"], obs["goal_quat"]))
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


def run_sim(out_dir: str | Path, seconds: float = 1.5, push_speed: float = 0.2, push_seconds: float = 0.6,
        settings: dict | None = None) -> dict:
    """Simulate both scenes, print a table every 0.1 s, write sim_demo.png and sim_demo.json
    into out_dir, and return the summary. settings: Model keyword arguments (load_model_settings)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = box_model(SIDE, pusher_points=torch.zeros(1, 3), pusher_radii=torch.tensor([0.01]), **(settings or {}))
    steps = round(seconds / model.dt)
    tilt = math3d.quat_from_axis_angle(torch.tensor([1.0, 0.0, 0.0]), torch.tensor(math.radians(10.0)))
    start = State.make(
        [[0.0, 0.0, 0.10 + SIDE / 2 * (math.cos(math.radians(10)) + math.sin(math.radians(10)))],
         [0.0, 0.0, SIDE / 2]],
        quat=torch.stack((tilt, torch.tensor([1.0, 0.0, 0.0, 0.0]))),
        pusher=[[0.0, 0.0, 10.0], [-SIDE / 2 - 0.015, 0.0, SIDE / 2]],
    )
    actions = torch.zeros(2, steps, 3)
    actions[1, : round(push_seconds / model.dt), 0] = push_speed
    with torch.no_grad():
        traj = rollout(model, start, actions)

    t = torch.arange(steps + 1) * model.dt
    height = traj.position[0, :, 2]
    drop_speed = traj.velocity[0].norm(dim=-1)
    push_x = traj.position[1, :, 0]
    push_speed = traj.velocity[1].norm(dim=-1)
    print(f"{'t (s)':>6} | {'drop: height (mm)':>17} {'speed (m/s)':>11} | {'push: x (mm)':>12} {'speed (m/s)':>11}")
    for i in range(0, steps + 1, round(0.1 / model.dt)):
        print(f"{t[i]:6.2f} | {height[i] * 1e3:17.2f} {drop_speed[i]:11.3f} | {push_x[i] * 1e3:12.2f} {push_speed[i]:11.3f}")
    moving = (drop_speed > 1e-3).nonzero()
    summary = {
        "dt_s": model.dt,
        "drop_release_height_mm": height[0].item() * 1e3,
        "drop_final_height_mm": height[-1].item() * 1e3,
        "drop_settle_time_s": t[moving[-1, 0] + 1].item() if len(moving) else 0.0,
        "drop_final_tilt_deg": math.degrees(math3d.quat_angle(traj.quat[0, -1], start.quat[1]).item()),
        "push_distance_mm": push_x[-1].item() * 1e3,
        "pusher_travel_mm": (traj.pusher[1, -1, 0] - traj.pusher[1, 0, 0]).item() * 1e3,
        "push_final_speed_m_s": push_speed[-1].item(),
    }
    print(json.dumps(summary, indent=2))
    (out_dir / "sim_demo.json").write_text(json.dumps(summary, indent=2))
    _plot(out_dir / "sim_demo.png", t, height, drop_speed, push_x, push_speed, traj.pusher[1, :, 0])
    print(f"wrote {out_dir / 'sim_demo.png'} and {out_dir / 'sim_demo.json'}")
    return summary


def _plot(path, t, height, drop_speed, push_x, push_speed, pusher_x):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 6), sharex=True)
    axes[0, 0].plot(t, height * 1e3)
    axes[0, 0].set(title="drop (10 deg tilt, 10 cm)", ylabel="height of centre (mm)")
    axes[1, 0].plot(t, drop_speed)
    axes[1, 0].set(xlabel="time (s)", ylabel="speed (m/s)")
    axes[0, 1].plot(t, push_x * 1e3, label="cube")
    axes[0, 1].plot(t, pusher_x * 1e3, "--", label="pusher centre")
    axes[0, 1].set(title="push", ylabel="x (mm)")
    axes[0, 1].legend()
    axes[1, 1].plot(t, push_speed)
    axes[1, 1].set(xlabel="time (s)", ylabel="speed (m/s)")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
