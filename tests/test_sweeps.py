"""Sweeps past one machine: `cgwm bench mpc --ray ADDRESS` runs its episodes as Ray actors with the
same outcomes as in one process (here on a local Ray instance; the [ray] extra)."""

import dataclasses

import pytest

from cgwm_env.bench.mpc import WORLD_MODELS, _episodes
from controllers.mpc import load_settings


def test_ray_actors_run_the_same_episodes_as_one_process():
    pytest.importorskip("ray", reason="the [ray] extra is not installed")
    settings = dataclasses.replace(load_settings()[0], pregrasp=False)  # every step planned: solve times to compare
    args = (WORLD_MODELS / "cube", "cube", settings, False, 1, [5, 3], 30)
    here, _ = _episodes(*args, workers=1)
    on_ray, _ = _episodes(*args, workers=2, ray_address="local")
    assert [r.seed for r in on_ray] == [5, 3]
    for a, b in zip(here, on_ray):
        assert (a.success, a.steps, a.regrasps) == (b.success, b.steps, b.regrasps)
        assert a.final_angle_deg == pytest.approx(b.final_angle_deg, abs=1e-6)
        assert len(b.solve_times) == 30  # every step planned (no pre-grasp)


def test_ray_without_the_extra_is_a_clear_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    args = (WORLD_MODELS / "cube", "cube", load_settings()[0], False, 1, [5], 90)
    with pytest.raises(ValueError, match="--ray: needs Ray"):
        _episodes(*args, workers=1, ray_address="local")
