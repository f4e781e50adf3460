"""`cgwm learn-leap --object NAME --out DIR`: a LEAP Hand world model of a library object learned
from its MuJoCo twin (cgwm_env.envs.leap.learn)."""

from __future__ import annotations

from pathlib import Path

from cgwm_env import progress
from cgwm_env.envs.leap.learn import learn_world_model
from cgwm_env.learn.world_model import params_values


def main(args) -> None:
    """Learn args.object's world model under args.out; one summary line with its parameters."""
    wm = learn_world_model(args.object, args.out, progress=progress.level() >= progress.NORMAL)
    v = params_values(wm.params)
    progress.summary(f"learn-leap: {args.object}: mu {v['mu']:.3f}, K {v['stiffness']:.3g} N/m, "
                     f"D {v['damping']:.3g} N s/m -> {Path(args.out) / 'model'}")
