"""The LEAP Hand world-model env's trajectories held to the ones stored in
tests/data/leap_trajectories.npz, made before the control step was restructured for speed (on
the v1 envs, whose reset settles the object): the same physics, whatever order its operations run
in. Regenerate (only for a deliberate change of the physics) with
`python tests/test_leap_trajectories.py`."""

from pathlib import Path

import gymnasium as gym
import numpy as np

import cgwm_env  # noqa: F401  (registers the environments)
from cgwm_env.envs.leap import task

REFERENCE = Path(__file__).resolve().parent / "data" / "leap_trajectories.npz"
FIELDS = ("position", "quat", "velocity", "omega", "hand", "hand_target")
STEPS = 24  # control steps, 16 physics steps each
RAD = {"normalized_actions": False}  # the actions below are joint-target changes in rad


def _actions(batch: int) -> np.ndarray:
    """(STEPS, batch, 16) joint-target changes: the thumb curling into the object on the palm, the
    other fingers wandering (seeded), so the hand's contacts open, close and slide."""
    rng = np.random.default_rng(3)
    actions = rng.uniform(-1, 1, (STEPS, batch, 16)).astype(np.float32) * task.ACTION_BOUND
    actions[..., [13, 14, 15]] = task.ACTION_BOUND
    return actions


def trajectories() -> dict:
    """Each field of the batched state after every control step, (STEPS, B, ...), of 3 envs
    (make_vec, seeded resets) and of one env (batch 1)."""
    out = {}
    for name, env, batch in (("vec", gym.make_vec("ContactGaussian-LeapHand-v1", num_envs=3, **RAD), 3),
                             ("one", gym.make("ContactGaussian-LeapHand-v1", **RAD), 1)):
        env.reset(seed=5)
        states = []
        for action in _actions(batch):
            env.step(action if batch > 1 else action[0])
            states.append(env.unwrapped.state if batch == 1 else env.state)
        for field in FIELDS:
            out[f"{name}_{field}"] = np.stack([getattr(s, field).detach().numpy() for s in states])
    return out


def test_trajectories_match_the_stored_ones():
    reference = np.load(REFERENCE, allow_pickle=False)
    now = trajectories()
    assert set(now) == set(reference.files)
    turned = np.abs(reference["vec_quat"] - reference["vec_quat"][0]).max()
    assert turned > 1e-3  # the thumb turns the (settled) object: the contacts act (1.6e-3 stored)
    for key in reference.files:
        np.testing.assert_allclose(now[key], reference[key], rtol=0, atol=2e-6, err_msg=key)  # ulp-level drift measured: 2e-7 (omega)


if __name__ == "__main__":
    REFERENCE.parent.mkdir(exist_ok=True)
    np.savez_compressed(REFERENCE, **trajectories())
    print(f"wrote {REFERENCE}")
