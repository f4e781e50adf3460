"""Push a cube through the Gymnasium interface and save what the world model renders.

Run: python examples/gym_push.py   (writes out/gym_push.png in the current folder)
"""

from pathlib import Path

import gymnasium as gym
import imageio.v3 as iio
import numpy as np

import cgwm_env  # noqa: F401  (registers the environments)

env = gym.make("ContactGaussian-PushSlide-v0", render_mode="rgb_array")
obs, _ = env.reset(seed=0)
frames = [env.render()]
for t in range(30):
    push = np.array([0.25, 0.0, 0.0], np.float32) if t < 15 else np.zeros(3, np.float32)  # push, then let it slide
    obs, reward, terminated, truncated, _ = env.step(push)
    if t % 6 == 5:
        frames.append(env.render())
print(f"cube at {obs['object_pos'].round(3)} m, pusher at {obs['pusher_pos'].round(3)} m")

Path("out").mkdir(exist_ok=True)
iio.imwrite("out/gym_push.png", np.concatenate(frames, axis=1))
print("wrote out/gym_push.png")
