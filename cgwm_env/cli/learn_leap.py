"""`cgwm learn-leap OBJECT --out DIR`: a LEAP Hand world model of a library object learned from its
MuJoCo twin (cgwm_env.envs.leap.learn)."""

from __future__ import annotations

from cgwm_env.envs.leap.learn import learn_world_model


def main(args) -> int:
    """Learn args.object's world model under args.out."""
    learn_world_model(args.object, args.out)
    return 0
