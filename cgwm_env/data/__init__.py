"""MuJoCo scenes: the ground truth that our simulator and world models are checked against.

MuJoCo picks its OpenGL backend when it is first imported, so this package asks for EGL
(offscreen, no display needed) before any of its modules imports mujoco, unless MUJOCO_GL is set.
"""

import os

os.environ.setdefault("MUJOCO_GL", "egl")
