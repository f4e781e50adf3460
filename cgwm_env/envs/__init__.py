"""Gymnasium environments. Registered when cgwm_env is imported:

- ContactGaussian-FallRebound-v0: the paper's fall-and-rebound scene (no action);
- ContactGaussian-PushSlide-v0: push-slide-settle, the action is the pusher's velocity (m/s).

Both take `model=` (a cgwm_env.physics.model.Model, e.g. a learned world model) and support
`gym.make_vec(..., num_envs=N)` as one natively batched environment.

- ContactGaussian-LeapHand-v0: the LEAP Hand reorientation task (leap.task) on the world model
  (leap.world_model_env), natively batched under `gym.make_vec`;
- ContactGaussian-LeapHandMuJoCo-v0: the LEAP Hand reorientation task (leap.task) in MuJoCo, the
  twin plant (leap.mujoco_env); `gym.make_vec` steps copies of it one after another.
"""

import gymnasium as gym

from cgwm_env.envs.leap.task import MAX_EPISODE_STEPS

for _name, _scenario in (("FallRebound", "fall"), ("PushSlide", "push")):
    _id = f"ContactGaussian-{_name}-v0"
    if _id not in gym.registry:
        gym.register(
            id=_id,
            entry_point="cgwm_env.envs.scenes:SceneEnv",
            vector_entry_point="cgwm_env.envs.scenes:SceneVectorEnv",
            max_episode_steps=60,
            kwargs={"scenario": _scenario},
        )

if "ContactGaussian-LeapHand-v0" not in gym.registry:
    gym.register(
        id="ContactGaussian-LeapHand-v0",
        entry_point="cgwm_env.envs.leap.world_model_env:LeapHandEnv",
        vector_entry_point="cgwm_env.envs.leap.world_model_env:LeapHandVectorEnv",
        max_episode_steps=MAX_EPISODE_STEPS,
    )

if "ContactGaussian-LeapHandMuJoCo-v0" not in gym.registry:
    gym.register(
        id="ContactGaussian-LeapHandMuJoCo-v0",
        entry_point="cgwm_env.envs.leap.mujoco_env:LeapHandMujocoEnv",
        max_episode_steps=MAX_EPISODE_STEPS,
    )
