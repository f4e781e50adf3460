"""Gymnasium environments, registered when cgwm_env is imported (ENV_IDS):

- ContactGaussian-FallRebound-v0: the paper's fall-and-rebound scene (no action);
- ContactGaussian-PushSlide-v0: push-slide-settle, the action is the pusher's velocity (m/s).
  Both take `model=` (a cgwm_env.physics.model.Model, e.g. a learned world model) and run as one
  natively batched environment under `gym.make_vec(..., num_envs=N)`.
- ContactGaussian-LeapHand-v1: the LEAP Hand reorientation task (leap.task) on the world model
  (leap.world_model_env), goal-conditioned as Gymnasium-Robotics' GoalEnv, natively batched under
  `gym.make_vec`;
- ContactGaussian-LeapHandMuJoCo-v1: the same task in MuJoCo, the twin plant (leap.mujoco_env);
  `gym.make_vec` steps copies of it one after another.
The LEAP ids' v0 (a flat dict observation, actions in rad) is gone: as Gymnasium does, making it
raises gymnasium.error.DeprecatedEnv naming v1.

docs/envs.md describes each.
"""

import gymnasium as gym

from cgwm_env.envs.leap.task import MAX_EPISODE_STEPS

# id: (entry point, vector entry point or None, max_episode_steps, kwargs)
_ENVS = {
    "ContactGaussian-FallRebound-v0": ("cgwm_env.envs.scenes:SceneEnv", "cgwm_env.envs.scenes:SceneVectorEnv", 60,
                                       {"scenario": "fall"}),
    "ContactGaussian-PushSlide-v0": ("cgwm_env.envs.scenes:SceneEnv", "cgwm_env.envs.scenes:SceneVectorEnv", 60,
                                     {"scenario": "push"}),
    "ContactGaussian-LeapHand-v1": ("cgwm_env.envs.leap.world_model_env:LeapHandEnv",
                                    "cgwm_env.envs.leap.world_model_env:LeapHandVectorEnv", MAX_EPISODE_STEPS, {}),
    "ContactGaussian-LeapHandMuJoCo-v1": ("cgwm_env.envs.leap.mujoco_env:LeapHandMujocoEnv",
                                          "cgwm_env.envs.leap.mujoco_env:make_vector_env", MAX_EPISODE_STEPS,
                                          {}),
}
ENV_IDS = tuple(_ENVS)

for _id, (_entry, _vector_entry, _steps, _kwargs) in _ENVS.items():
    if _id not in gym.registry:
        gym.register(id=_id, entry_point=_entry, vector_entry_point=_vector_entry, max_episode_steps=_steps,
                     kwargs=_kwargs)
