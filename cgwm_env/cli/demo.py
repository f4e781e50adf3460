"""`cgwm demo`: the MPC demo (default) and the simulator demo (--scene sim).

The MPC demo: the bundled cube world model plans, by gradient-based MPC, the LEAP Hand's motions
that turn a cube on its palm in MuJoCo (ContactGaussian-LeapHandMuJoCo-v1, the twin plant). Shows
its progress and a summary, and writes mpc_demo.mp4 and mpc_demo.gif (MuJoCo's view beside the
world model's Gaussian render of the same state, titled, with the cube's heading and the goal's
drawn as arrows and the step, the angle to the goal and the solve time overlaid) and
mpc_demo.json. The simulator demo: a cube dropped onto the ground and a cube pushed across it,
simulated as one batch of two environments; prints a table and writes a plot of height and speed
over time."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from cgwm_env import progress
from cgwm_env.envs.leap.task import CONTROL_DT, MAX_EPISODE_STEPS, angle_error, observation_parts
from cgwm_env.physics import math3d
from cgwm_env.physics.model import State, box_model, load_model_settings
from cgwm_env.physics.simulator import rollout
from cgwm_env.render.annotate import arrows, overlay, panels, write_video
from controllers.mpc import ReorientationMPC, load_settings
from controllers.tasks import REACH_ANGLE, run_episode, state_from_observation

FRAME_EVERY = 2  # control steps per video frame (15 fps of a 30 Hz loop)
SIDE = 0.05  # m, the simulator demo's cubes
IMAGE_SIZE = 320  # px of each panel of the MPC demo's video
HEADING = 0.06  # m, the length of the heading arrows
CUBE, GOAL = (255, 140, 0), (40, 200, 60)  # the arrows' colours: the cube's heading, the goal's
MPC_ONLY, SIM_ONLY = ("seed", "steps", "compile"), ("seconds",)


def main(args) -> None:
    """`cgwm demo` from parsed arguments; a flag the chosen scene does not use is refused."""
    unused = SIM_ONLY if args.scene == "mpc" else MPC_ONLY
    for name in unused:
        if getattr(args, name) not in (None, False):
            raise ValueError(f"--{name}: not used by --scene {args.scene}; drop it or choose the other scene")
    if args.scene == "mpc":
        run_mpc(args.out, seed=7 if args.seed is None else args.seed, max_steps=args.steps, config=args.config,
                compile=args.compile)
    else:
        run_sim(args.out, seconds=1.5 if args.seconds is None else args.seconds,
                settings=load_model_settings(args.config) if args.config else {})


def run_mpc(out_dir: str | Path, seed: int = 7, max_steps: int | None = None, config: str | Path | None = None,
            image_size: int = IMAGE_SIZE, compile: bool = False) -> dict:
    """Run one episode (task seed `seed`; 7 is one that `cgwm bench mpc` counts a success, as it
    does 90-95% of seeds 0-19), write mpc_demo.mp4, mpc_demo.gif and mpc_demo.json into out_dir
    and return the summary. config: an MPC settings YAML overriding MPCSettings' defaults; compile:
    plan through torch.compile (controllers.mpc; the compiling first plan is not in the rate);
    image_size: px of each of the video's two panels."""
    max_steps = MAX_EPISODE_STEPS if max_steps is None else max_steps
    settings, source = load_settings(config)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # normalized_actions=False: the planner's joint-target changes (rad) go to the twin as they are
    twin = gym.make("ContactGaussian-LeapHandMuJoCo-v1", render_mode="rgb_array", image_size=image_size,
                    normalized_actions=False)
    world = gym.make("ContactGaussian-LeapHand-v1", image_size=image_size).unwrapped
    planner = ReorientationMPC(world.model, settings, compile=compile)
    frames, last, start = [], {}, time.perf_counter()

    def frame(t: int, obs: dict) -> None:
        world.core.state = state_from_observation(obs)  # draw the twin's state with the world model's Gaussians
        parts = observation_parts(obs["observation"])
        top = parts["object_pos"] + [0.0, 0.0, 0.03]
        heads = [math3d.rotate(torch.as_tensor(q, dtype=torch.float32), torch.tensor([HEADING, 0.0, 0.0])).numpy()
                 for q in (obs["achieved_goal"], obs["desired_goal"])]
        views = [arrows(view, world.core.camera, [top, top], [top + heads[0], top + heads[1]], [CUBE, GOAL])
                 for view in (twin.render(), world.core.image(0))]
        angle = math.degrees(angle_error(obs["achieved_goal"], obs["desired_goal"]))
        solve = (f"solve {planner.solve_times[-1] * 1e3:.1f} ms" if planner.solve_times and not planner.waypoints
                 else "approach (pre-grasp)" if t else "start")
        views[0] = overlay(views[0], [f"step {t} ({t * CONTROL_DT:.1f} s)", f"angle to goal {angle:.1f} deg", solve])
        views[1] = overlay(views[1], ["orange: the cube's heading", "green: the goal's"], corner="bottom-left")
        frames.append(panels(views, ["MuJoCo (the plant)", "world model (its Gaussians)"]))

    progress.detail(f"MPC settings: {source}")
    if compile:
        progress.say("the first solve compiles the planner (about a minute, seconds when cached)")
    with progress.bar(max_steps, f"demo: MPC turning the cube in MuJoCo (seed {seed})", unit="control step") as bar:
        def on_step(t, obs, info):
            last["obs"] = obs
            bar.update()
            angle = math.degrees(info["angle_error"])
            solve = f"solve {planner.solve_times[-1] * 1e3:.1f} ms" if planner.solve_times else "approach"
            bar.set_postfix_str(f"{angle:.1f} deg to go, {solve}")
            if t % FRAME_EVERY == 0:
                frame(t, obs)

        def first(obs):
            frame(0, obs)

        result = run_episode(twin, planner, seed, max_steps=max_steps, on_step=on_step, on_reset=first)
    if result.steps % FRAME_EVERY:
        frame(result.steps, last["obs"])
    times = np.array(result.solve_times or [math.nan]) * 1e3  # none: the episode ended in the approach
    mp4, gif = write_video(frames, out_dir / "mpc_demo", fps=1.0 / (CONTROL_DT * FRAME_EVERY))
    summary = {
        "seed": seed, "success": result.success, "steps": result.steps, "seconds_simulated": result.steps * CONTROL_DT,
        "final_error": result.final_error, "final_angle_deg": result.final_angle_deg,
        f"within_{REACH_ANGLE}_rad": result.reached, "dropped": result.dropped, "regrasps": result.regrasps,
        "solve_ms_median": float(np.median(times)), "solve_ms_p95": float(np.percentile(times, 95)),
        "mpc_hz": float(1e3 / np.median(times)), "compile_s": planner.compile_seconds,
        "wall_s": time.perf_counter() - start, "video": [str(mp4), str(gif)], "frame_px": list(frames[0].shape[:2]),
    }
    (out_dir / "mpc_demo.json").write_text(json.dumps(summary, indent=2))
    rate = (f"MPC {summary['mpc_hz']:.0f} Hz (median solve {summary['solve_ms_median']:.1f} ms)" if result.solve_times
            else "no solves (the episode ended in the approach)")
    progress.summary(f"demo: {'success' if result.success else 'no success'} after {result.steps} steps "
                     f"({summary['seconds_simulated']:.1f} s simulated, {result.regrasps} regrasps), final error "
                     f"{result.final_angle_deg:.1f} deg, {rate} -> {mp4}, {gif.name}, mpc_demo.json")
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
    progress.show(f"{'t (s)':>6} | {'drop: height (mm)':>17} {'speed (m/s)':>11} | {'push: x (mm)':>12} "
                  f"{'speed (m/s)':>11}")
    for i in range(0, steps + 1, round(0.1 / model.dt)):
        progress.show(f"{t[i]:6.2f} | {height[i] * 1e3:17.2f} {drop_speed[i]:11.3f} | {push_x[i] * 1e3:12.2f} "
                      f"{push_speed[i]:11.3f}")
    moving = (drop_speed > 1e-3).nonzero()
    summary = {
        "dt_s": model.dt,
        "drop_release_height_mm": height[0].item() * 1e3,
        "drop_final_height_mm": height[-1].item() * 1e3,
        # None: still moving when the simulation ends
        "drop_settle_time_s": (t[moving[-1, 0] + 1].item() if moving[-1, 0] < steps else None) if len(moving) else 0.0,
        "drop_final_tilt_deg": math.degrees(math3d.quat_angle(traj.quat[0, -1], start.quat[1]).item()),
        "push_distance_mm": push_x[-1].item() * 1e3,
        "pusher_travel_mm": (traj.pusher[1, -1, 0] - traj.pusher[1, 0, 0]).item() * 1e3,
        "push_final_speed_m_s": push_speed[-1].item(),
    }
    progress.detail(json.dumps(summary, indent=2))
    (out_dir / "sim_demo.json").write_text(json.dumps(summary, indent=2))
    _plot(out_dir / "sim_demo.png", t, height, drop_speed, push_x, push_speed, traj.pusher[1, :, 0])
    settle = summary["drop_settle_time_s"]
    drop = (f"rests at {summary['drop_final_height_mm']:.1f} mm after {settle:.2f} s" if settle is not None
            else f"is still moving at {summary['drop_final_height_mm']:.1f} mm")
    progress.summary(f"demo sim: the dropped cube {drop}, the pushed one slid {summary['push_distance_mm']:.1f} mm "
                     f"-> {out_dir / 'sim_demo.png'}, sim_demo.json")
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
