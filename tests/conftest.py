import os

import torch

# MuJoCo renders offscreen through EGL (Mesa) on machines with no display.
os.environ.setdefault("MUJOCO_GL", "egl")
# One torch thread: the suite's tensors are small, and on a shared two-core machine a second
# thread's spin-waits make small ops up to 50x slower.
torch.set_num_threads(1)
