"""`cgwm bench mpc`: the gradient-based MPC's on-palm reorientation in the MuJoCo twin, per object.

Per world model bundled for an object (cgwm_env/assets/world_models/<object> or
<object>_<variant>: the hand-made cube, and the cube, the cup and the L-block learned by
scripts/learn_world_model.sh), `trials` episodes of ContactGaussian-LeapHandMuJoCo-v0 (seeds
0..trials-1) with the world model planning (controllers.tasks.run_episode, settings from
configs/mpc.yaml or MPCSettings' defaults). Reports success (error < 0.04 for 20 consecutive
steps within 500), the mean final angle error in degrees, the rate of ending within 0.1 rad,
drops, and the planner's median and 95th-percentile solve time with the rate it allows (over
the planned steps: the approach to the pre-grasp, settings.approach, is not planned). Objects
without a world model are listed as skipped. Solve times are wall time on a machine shared with
other work (one torch thread unless --threads says otherwise); compare figures from one run.
With --compile the planner runs through torch.compile; its first plan, which compiles, is
reported apart (compile_s, the planner's compile_seconds) and left out of the solve-time figures.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import gymnasium as gym
import torch

from cgwm_env.data.objects import OBJECTS
from cgwm_env.envs.leap import DEFAULT_WORLD_MODEL, hand_scene

WORLD_MODELS = DEFAULT_WORLD_MODEL.parent
CONFIG = Path(__file__).resolve().parents[2] / "configs" / "mpc.yaml"


def load_settings(config=None):
    """MPCSettings from the YAML `config`, else from configs/mpc.yaml where present, else the
    defaults; returns them and where they came from (a path or "MPCSettings defaults")."""
    from controllers.mpc import MPCSettings

    if config:
        return MPCSettings.from_yaml(config), str(config)
    if CONFIG.is_file():
        return MPCSettings.from_yaml(CONFIG), str(CONFIG)
    return MPCSettings(), "MPCSettings defaults"


def world_model_bundles() -> list[tuple[str, Path | None]]:
    """(object, bundle folder) for every library object: each bundle in WORLD_MODELS named after
    it or <object>_<variant>, or (object, None) where it has none."""
    found = []
    for name in OBJECTS:
        bundles = sorted(p for p in WORLD_MODELS.iterdir() if (p.name == name or p.name.startswith(name + "_"))
                         and (p / "world_model.json").is_file())
        found += [(name, b) for b in bundles] or [(name, None)]
    return found


def run(out: str | None = None, quick: bool = False, trials: int | None = None, config: str | None = None,
        threads: int | None = None, compile: bool = False) -> dict:
    """Run the benchmark, print a table, write JSON to `out` (default out/bench_mpc.json); returns
    the figures. quick: 3 trials of at most 300 steps; trials: episodes per object (default 20);
    threads: torch CPU threads (default 1: batch-1 planning is op-overhead bound, and a second
    thread on a busy machine made solves 20 times slower); compile: plan through torch.compile."""
    from controllers.mpc import ReorientationMPC
    from controllers.tasks import MAX_STEPS, run_episode, summarize
    from cgwm_env.world_model import WorldModel

    if trials is not None and (isinstance(trials, bool) or not isinstance(trials, int) or trials < 1):
        raise ValueError(f"trials: expected a count >= 1, got {trials!r}")
    torch.set_num_threads(threads or 1)
    trials = trials or (3 if quick else 20)
    max_steps = 300 if quick else MAX_STEPS
    settings, source = load_settings(config)
    rows = []
    for name, bundle in world_model_bundles():
        if bundle is None:
            rows.append({"object": name, "skipped": f"no world model in {WORLD_MODELS / name}"})
            continue
        model = WorldModel.load(bundle).model(**hand_scene())
        planner = ReorientationMPC(model, settings, compile=compile)
        env = gym.make("ContactGaussian-LeapHandMuJoCo-v0", object=name)
        results, start = [], time.perf_counter()
        for seed in range(trials):
            r = run_episode(env, planner, seed, max_steps=max_steps)
            results.append(r)
            print(f"{bundle.name} trial {seed + 1}/{trials}: {'success' if r.success else 'failure'} in {r.steps} steps, "
                  f"final error {r.final_angle_deg:.1f} deg, {r.regrasps} regrasps{', dropped' if r.dropped else ''}",
                  flush=True)
        env.close()
        row = {"object": name, "world_model": bundle.name, **summarize(results), "compile_s": planner.compile_seconds,
               "wall_s": time.perf_counter() - start,
               "episodes_detail": [{k: v for k, v in vars(r).items() if k != "solve_times"} for r in results]}
        rows.append(row)
    print(f"\n{'model':12} {'trials':>6} {'success':>8} {'final deg':>9} {'<0.1 rad':>8} {'dropped':>7} {'regrasps':>8} "
          f"{'solve ms p50':>12} {'p95':>7} {'MPC Hz':>7}")
    for r in rows:
        if "skipped" in r:
            print(f"{r['object']:12} skipped: {r['skipped']}")
            continue
        print(f"{r['world_model']:12} {r['episodes']:>6} {r['success_rate']:>8.0%} {r['mean_final_error_deg']:>9.1f} "
              f"{r['reach_0.1rad_rate']:>8.0%} {r['dropped']:>7} {r['mean_regrasps']:>8.1f} {r['solve_ms_median']:>12.1f} "
              f"{r['solve_ms_p95']:>7.1f} {r['mpc_hz']:>7.1f}")
        if r["compile_s"] is not None:
            print(f"{'':12} planner compiled by torch.compile; its first plan (the compilation) took {r['compile_s']:.1f} s")
    result = {"task": "on-palm reorientation, MuJoCo twin, world model planning", "trials": trials,
              "max_steps": max_steps, "settings": {k: getattr(settings, k) for k in settings.__dataclass_fields__},
              "config": source, "compiled": compile, "torch": torch.__version__,
              "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(), "rows": rows}
    out = Path(out or "out/bench_mpc.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return result
