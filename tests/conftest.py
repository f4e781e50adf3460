import os

# MuJoCo renders offscreen through EGL (Mesa) on machines with no display.
os.environ.setdefault("MUJOCO_GL", "egl")
