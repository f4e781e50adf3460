"""The thread policy (cgwm_env.config.use_threads): one torch thread unless the user chose, applied
by `cgwm` at start and by the world-model environments on creation."""

import gymnasium as gym
import pytest
import torch

import cgwm_env  # noqa: F401  (registers the environments)
from cgwm_env import config
from cgwm_env.cli import main


@pytest.fixture
def fresh_process(monkeypatch):
    """As in a new process where the user set no OMP_NUM_THREADS and torch chose two threads."""
    monkeypatch.setattr(config, "_threads_set", False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(1)  # the suite's count (conftest)


def test_env_creation_sets_one_thread_then_leaves_the_users_count(fresh_process):
    gym.make("ContactGaussian-FallRebound-v0")
    assert torch.get_num_threads() == 1
    torch.set_num_threads(2)  # the user's own choice after the first env stays
    gym.make("ContactGaussian-FallRebound-v0")
    assert torch.get_num_threads() == 2


def test_an_explicit_count_or_omp_num_threads_wins(fresh_process, monkeypatch):
    gym.make("ContactGaussian-PushSlide-v0", threads=2)
    assert torch.get_num_threads() == 2
    monkeypatch.setattr(config, "_threads_set", False)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    gym.make("ContactGaussian-PushSlide-v0")
    assert torch.get_num_threads() == 2
    with pytest.raises(ValueError, match="threads"):
        gym.make("ContactGaussian-PushSlide-v0", threads=0)


def test_cgwm_sets_the_default_at_start_and_takes_threads(fresh_process, capsys, tmp_path):
    # a flag the sim scene would ignore: refused by the verb, after the policy, before any work
    assert main(["demo", "--scene", "sim", "--steps", "5", "--out", str(tmp_path)]) == 2
    assert torch.get_num_threads() == 1
    assert main(["--threads", "2", "demo", "--scene", "sim", "--steps", "5", "--out", str(tmp_path)]) == 2
    assert torch.get_num_threads() == 2  # before the verb, or after it:
    assert main(["demo", "--threads", "1", "--scene", "sim", "--steps", "5", "--out", str(tmp_path)]) == 2
    assert torch.get_num_threads() == 1
    capsys.readouterr()
    assert main(["plan", "--threads", "0"]) == 2
    assert "--threads: expected an integer >= 1, got 0" in capsys.readouterr().err
