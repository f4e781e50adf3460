"""Gymnasium environments. Registered when cgwm_env is imported:

- ContactGaussian-FallRebound-v0: the paper's fall-and-rebound scene (no action);
- ContactGaussian-PushSlide-v0: push-slide-settle, the action is the pusher's velocity (m/s).

Both take `model=` (a cgwm_env.model.Model, e.g. a learned world model) and support
`gym.make_vec(..., num_envs=N)` as one natively batched environment.

- ContactGaussian-LeapHand-v0: the LEAP Hand reorientation task (leap_task) on the world model
  (leap), natively batched under `gym.make_vec`;
- ContactGaussian-LeapHandMuJoCo-v0: the LEAP Hand reorientation task (leap_task) in MuJoCo, the
  twin plant (leap_mujoco); `gym.make_vec` steps copies of it one after another.
"""

import gymnasium as gym

from cgwm_env.envs.leap_task import MAX_EPISODE_STEPS

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
        entry_point="cgwm_env.envs.leap:LeapHandEnv",
        vector_entry_point="cgwm_env.envs.leap:LeapHandVectorEnv",
        max_episode_steps=MAX_EPISODE_STEPS,
    )

if "ContactGaussian-LeapHandMuJoCo-v0" not in gym.registry:
    gym.register(
        id="ContactGaussian-LeapHandMuJoCo-v0",
        entry_point="cgwm_env.envs.leap_mujoco:LeapHandMujocoEnv",
        max_episode_steps=MAX_EPISODE_STEPS,
    )
