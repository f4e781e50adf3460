"""The simulator demo: a cube dropped onto the ground and a cube pushed across it, simulated as
one batch of two environments. Prints a table and writes a plot of height and speed over time."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from cgwm_env import math3d
from cgwm_env.model import State, box_model
from cgwm_env.simulator import rollout

SIDE = 0.05


def run(out_dir: str | Path, seconds: float = 1.5, push_speed: float = 0.2, push_seconds: float = 0.6,
        settings: dict | None = None) -> dict:
    """Simulate both scenes, print a table every 0.1 s, write sim_demo.png and sim_demo.json
    into out_dir, and return the summary. settings: Model keyword arguments (config.load_model_settings)."""
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
