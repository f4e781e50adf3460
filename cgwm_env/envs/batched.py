"""BatchedVectorEnv: the gymnasium VectorEnv over one natively batched core, shared by the scenes
and the LEAP Hand. Next-step autoreset: the step after an episode ends resets that environment
(its action is ignored and its reward is 0), as gymnasium's AutoresetMode.NEXT_STEP says."""

from __future__ import annotations

import abc

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from cgwm_env.checks import check_count


class BatchedVectorEnv(VectorEnv, abc.ABC):
    """num_envs environments of `core` stepped as one batch. The core has batch, reset(which, rng),
    step(actions), observation() and image(i); a subclass gives the checked actions (B, ...) of a
    batch of actions, and each step's rewards (B,), terminations (B,) and info."""

    metadata = {"render_modes": ["rgb_array"], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, core, single_observation_space: gym.spaces.Space, single_action_space: gym.spaces.Space,
                 render_mode: str | None, max_episode_steps: int):
        self.core, self.num_envs = core, core.batch
        max_episode_steps = check_count(max_episode_steps, "max_episode_steps")
        self.render_mode, self.max_episode_steps = render_mode, max_episode_steps
        self.single_observation_space, self.single_action_space = single_observation_space, single_action_space
        self.observation_space = batch_space(single_observation_space, self.num_envs)
        self.action_space = batch_space(single_action_space, self.num_envs)
        self._elapsed = np.zeros(self.num_envs, int)
        self._needs_reset = np.zeros(self.num_envs, bool)

    @abc.abstractmethod
    def checked_actions(self, actions) -> torch.Tensor:
        """The core's actions (B, ...) for a batch of env actions; a ValueError names `action`."""

    @abc.abstractmethod
    def outcome(self) -> tuple[np.ndarray, np.ndarray, dict]:
        """Rewards (B,), terminated (B,) and the info dict of the current states."""

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.core.reset(np.ones(self.num_envs, bool), self.np_random)
        self._elapsed[:] = 0
        self._needs_reset[:] = False
        return self.core.observation(), self.outcome()[2]

    def step(self, actions):
        restart = self._needs_reset.copy()
        action = self.checked_actions(actions)
        action[torch.as_tensor(restart)] = 0.0
        self.core.step(action)
        self.core.reset(restart, self.np_random)  # those envs start over; their step is a reset
        self._elapsed = np.where(restart, 0, self._elapsed + 1)
        reward, terminated, info = self.outcome()
        terminated = terminated & ~restart
        truncated = (self._elapsed >= self.max_episode_steps) & ~terminated & ~restart
        self._needs_reset = terminated | truncated
        return self.core.observation(), np.where(restart, 0.0, reward), terminated, truncated, info

    def render(self):
        return tuple(self.core.image(i) for i in range(self.num_envs)) if self.render_mode == "rgb_array" else None


def first_env(obs: dict) -> dict:
    """The first environment's entries of a batched observation dict."""
    return {k: v[0] for k, v in obs.items()}
