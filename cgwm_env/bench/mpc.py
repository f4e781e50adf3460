"""`cgwm bench mpc`: the gradient-based MPC's on-palm reorientation in the MuJoCo twin, per object.

Per world model bundled for an object (cgwm_env/assets/world_models/<object> or
<object>_<variant>: the cube, the cup and the L-block learned by scripts/learn_world_model.sh,
and the hand-made cube, cube_handmade), `trials` episodes of ContactGaussian-LeapHandMuJoCo-v1 (seeds
0..trials-1) with the world model planning (controllers.tasks.run_episode, MPCSettings() or
--config's overrides). Reports success (error < 0.04 for 20 consecutive
steps within 500), the mean final angle error in degrees, the rate of ending within 0.1 rad,
drops, and the planner's median and 95th-percentile solve time with the rate it allows (over
the planned steps: the pre-grasp, the move into the cage around the object, is not planned) and
that rate over the MuJoCo twin's control steps per second measured in the same run ("vs twin"). Objects
without a world model are listed as skipped. Solve times are wall time on a machine shared with
other work (one torch thread unless --threads says otherwise); compare figures from one run.
With --compile the planner runs through torch.compile; its first plan, which compiles, is
reported apart (compile_s, the planner's compile_seconds) and left out of the solve-time figures.
With --workers N the episodes run in N processes, each with its own planner and twin (one torch
thread each unless --threads says otherwise): the same episodes and outcomes, N times fewer
minutes on N free cores; each solve time is still one planner's on one core. With --ray ADDRESS
(the [ray] extra) those N workers are Ray actors on the cluster at ADDRESS ("local": a Ray
instance started here), one CPU each, with the same episodes and outcomes; every node needs this
package installed.
"""

from __future__ import annotations

import json
import multiprocessing
import platform
import time
from pathlib import Path

import gymnasium as gym
import torch

from cgwm_env.bench.env import TWIN, env_rate, thumb_curl
from cgwm_env.data.objects import OBJECTS
from cgwm_env.envs.leap.task import MAX_EPISODE_STEPS
from cgwm_env.envs.leap.world_model_env import DEFAULT_WORLD_MODEL
from cgwm_env.learn.world_model import WorldModel
from cgwm_env.physics.hand import hand_scene
from controllers.mpc import ReorientationMPC, load_settings
from controllers.tasks import run_episode, summarize

WORLD_MODELS = DEFAULT_WORLD_MODEL.parent


def world_model_bundles() -> list[tuple[str, Path | None]]:
    """(object, bundle folder) for every library object: each bundle in WORLD_MODELS named after
    it or <object>_<variant>, or (object, None) where it has none."""
    found = []
    for name in OBJECTS:
        bundles = sorted(p for p in WORLD_MODELS.iterdir() if (p.name == name or p.name.startswith(name + "_"))
                         and (p / "world_model.json").is_file())
        found += [(name, b) for b in bundles] or [(name, None)]
    return found


def chosen_bundles(objects) -> list[tuple[str, Path | None]]:
    """(object, bundle folder) for each of `objects`: a library object (its bundles, as
    world_model_bundles), a bundle's name in WORLD_MODELS, or the path of a bundle folder a user
    made (e.g. `cgwm learn-leap`'s OUT_DIR/model), whose info names a library object."""
    bundled = world_model_bundles()
    known = {name for name, _ in bundled} | {b.name for _, b in bundled if b is not None}
    chosen = []
    for item in objects:
        if item in known:
            chosen += [(n, b) for n, b in bundled if item in (n, b and b.name) and (n, b) not in chosen]
            continue
        folder = Path(item)
        if not (folder / "world_model.json").is_file():
            raise ValueError(f"objects: {item!r} is neither a library object, a bundle in {WORLD_MODELS} nor a "
                             f"world-model folder; expected some of {sorted(known)} or a folder with world_model.json")
        name = WorldModel.load(folder).info.get("object")
        if name not in OBJECTS:
            raise ValueError(f"objects: the world model {item!r} is of {name!r}, not a library object; the MuJoCo "
                             f"twin needs one of {sorted(OBJECTS)}")
        chosen.append((name, folder))
    return chosen


def run(out: str | None = None, quick: bool = False, trials: int | None = None, config: str | None = None,
        threads: int | None = None, compile: bool = False, workers: int = 1, objects=None,
        ray_address: str | None = None) -> dict:
    """Run the benchmark, print a table, write JSON to `out` (default out/bench_mpc.json); returns
    the figures. quick: 3 trials of at most 300 steps; trials: episodes per object (default 20);
    threads: torch CPU threads per planner (default 1: batch-1 planning is op-overhead bound, and a
    second thread on a busy machine made solves 20 times slower); compile: plan through
    torch.compile; workers: processes running episodes at once; objects: the objects, bundle
    names or bundle folders to run (chosen_bundles; default every bundled world model);
    ray_address: run the workers as Ray actors on this cluster ("local": start one here) instead
    of local processes."""
    for name, value in (("trials", trials), ("workers", workers)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name}: expected a count >= 1, got {value!r}")
    bundles = world_model_bundles() if objects is None else chosen_bundles(objects)
    threads = threads or 1
    torch.set_num_threads(threads)
    trials = trials or (3 if quick else 20)
    max_steps = 300 if quick else MAX_EPISODE_STEPS
    settings, source = load_settings(config)
    rows = []
    for name, bundle in bundles:
        if bundle is None:
            rows.append({"object": name, "skipped": f"no world model in {WORLD_MODELS / name} (cgwm learn-leap --object "
                                                    f"{name} --out DIR learns one; --object DIR/model plans with it)"})
            continue
        start = time.perf_counter()
        results, compile_s = _episodes(bundle, name, settings, compile, threads, range(trials), max_steps, workers,
                                       ray_address)
        label = bundle.name if bundle.parent == WORLD_MODELS else str(bundle)
        row = {"object": name, "world_model": label, **summarize(results), "compile_s": compile_s,
               "wall_s": time.perf_counter() - start, "workers": workers,
               "episodes_detail": [{k: v for k, v in vars(r).items() if k != "solve_times"} for r in results]}
        rows.append(row)
    twin_rate = env_rate(gym.make(TWIN), thumb_curl(), 5, 100)  # the MuJoCo twin's control steps/s, this run
    for r in rows:
        if "skipped" not in r:
            r["mpc_hz_vs_twin_steps"] = r["mpc_hz"] / twin_rate
    print(f"\n{'model':12} {'trials':>6} {'success':>8} {'final deg':>9} {'<0.1 rad':>8} {'dropped':>7} {'regrasps':>8} "
          f"{'solve ms p50':>12} {'p95':>7} {'MPC Hz':>7} {'vs twin':>7}")
    for r in rows:
        if "skipped" in r:
            print(f"{r['object']:12} skipped: {r['skipped']}")
            continue
        print(f"{r['world_model']:12} {r['episodes']:>6} {r['success_rate']:>8.0%} {r['mean_final_error_deg']:>9.1f} "
              f"{r['reach_0.1rad_rate']:>8.0%} {r['dropped']:>7} {r['mean_regrasps']:>8.1f} {r['solve_ms_median']:>12.1f} "
              f"{r['solve_ms_p95']:>7.1f} {r['mpc_hz']:>7.1f} {r['mpc_hz_vs_twin_steps']:>7.4f}")
        if r["compile_s"] is not None:
            slowest = f" (the slowest of {workers} workers)" if workers > 1 else ""
            print(f"{'':12} planner compiled by torch.compile; its first plan (the compilation) took "
                  f"{r['compile_s']:.1f} s{slowest}")
    print(f"vs twin: MPC solves per second over the MuJoCo twin's control steps per second ({twin_rate:.0f}), "
          "measured in this run")
    result = {"task": "on-palm reorientation, MuJoCo twin, world model planning", "trials": trials,
              "twin_steps_per_s": twin_rate,
              "max_steps": max_steps, "settings": {k: getattr(settings, k) for k in settings.__dataclass_fields__},
              "config": source, "compiled": compile, "workers": workers, "ray": ray_address, "torch": torch.__version__,
              "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(), "rows": rows}
    out = Path(out or "out/bench_mpc.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return result


_WORKER = None  # (planner, env) of this process: built once by _start_worker, used by _episode


def _start_worker(bundle: Path, name: str, settings, compile: bool, threads: int) -> None:
    global _WORKER
    torch.set_num_threads(threads)
    model = WorldModel.load(bundle).model(**hand_scene())
    # The planner's changes in rad go to the twin as they are (normalized_actions=False: no rescaling).
    _WORKER = ReorientationMPC(model, settings, compile=compile), gym.make(
        "ContactGaussian-LeapHandMuJoCo-v1", object=name, normalized_actions=False)


def _episode(task: tuple[int, int]):
    """One episode, task = (seed, max_steps), in this process's twin: (EpisodeResult, the planner's
    compile_seconds)."""
    seed, max_steps = task
    planner, env = _WORKER
    return run_episode(env, planner, seed, max_steps=max_steps), planner.compile_seconds


def _episodes(bundle: Path, name: str, settings, compile: bool, threads: int, seeds, max_steps: int,
              workers: int, ray_address: str | None = None):
    """Episodes of `seeds` with the bundle planning, in this process or in `workers` processes (a
    planner and a twin each; Ray actors on the cluster at ray_address where given), printing each
    as it ends. Returns the EpisodeResults in seed order and the slowest planner's compile_seconds
    (None unless compile)."""
    global _WORKER
    seeds = list(seeds)
    args = [(seed, max_steps) for seed in seeds]
    start = (bundle, name, settings, compile, threads)
    pool = None
    if ray_address is not None:
        done = _ray_episodes(ray_address, start, args, workers)
    elif workers == 1:
        _start_worker(*start)
        done = map(_episode, args)
    else:  # spawn: fresh interpreters (forking a process that holds torch's and MuJoCo's threads is unsafe)
        pool = multiprocessing.get_context("spawn").Pool(min(workers, len(seeds)), _start_worker, start)
        done = pool.imap_unordered(_episode, args)
    results, compile_s = {}, None
    try:
        for r, seconds in done:
            results[r.seed] = r
            if seconds is not None:
                compile_s = max(compile_s or 0.0, seconds)
            print(f"{bundle.name} trial {len(results)}/{len(seeds)} (seed {r.seed}): "
                  f"{'success' if r.success else 'failure'} in {r.steps} steps, final error {r.final_angle_deg:.1f} deg, "
                  f"{r.regrasps} regrasps{', dropped' if r.dropped else ''}", flush=True)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
        elif ray_address is None:
            _WORKER[1].close()
            _WORKER = None
    return [results[seed] for seed in seeds], compile_s


def _ray_episodes(address: str, start: tuple, args: list, workers: int):
    """Yield _episode's results of `args` as they end, run by `workers` Ray actors (one CPU each,
    each set up by _start_worker(*start)) on the cluster at `address` ("local": a Ray instance
    started in this process, shut down after)."""
    try:
        import ray  # the [ray] extra: only this path needs it
        from ray.util import ActorPool
    except ImportError as err:
        raise ValueError("--ray: needs Ray, the [ray] extra (pip install 'cgwm[ray]')") from err
    started = not ray.is_initialized()
    if started:
        ray.init(address=None if address == "local" else address, include_dashboard=False,
                 num_cpus=workers if address == "local" else None, log_to_driver=False)

    @ray.remote(num_cpus=1)
    class Worker:
        def __init__(self, *start):
            _start_worker(*start)

        def episode(self, task):
            return _episode(task)

    try:
        actors = [Worker.remote(*start) for _ in range(min(workers, len(args)))]
        yield from ActorPool(actors).map_unordered(lambda actor, task: actor.episode.remote(task), args)
    finally:
        if started:
            ray.shutdown()
