"""Gymnasium environments. Registered when cgwm_env is imported:

- ContactGaussian-FallRebound-v0: the paper's fall-and-rebound scene (no action);
- ContactGaussian-PushSlide-v0: push-slide-settle, the action is the pusher's velocity (m/s).

Both take `model=` (a cgwm_env.model.Model, e.g. a learned world model) and support
`gym.make_vec(..., num_envs=N)` as one natively batched environment.
"""

import gymnasium as gym

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
