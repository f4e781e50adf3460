"""The LEAP Hand and its camera: Dynamixel driver (dynamixel), RealSense capture (realsense), ArUco
camera calibration (calibration), open-loop playback of planned trajectories (playback), settings
(config), and a virtual bus and camera for dry runs and tests (virtual); `cgwm bench hardware`
(cgwm_env.bench.hardware) times them.

Importing this package makes MuJoCo render offscreen through EGL (no display needed) unless
MUJOCO_GL is set, as cgwm_env.data does; it takes effect where mujoco is not yet imported.
"""

import os

os.environ.setdefault("MUJOCO_GL", "egl")
