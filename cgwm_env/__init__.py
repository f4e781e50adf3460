"""cgwm: ContactGaussian-WM, a physics-grounded world model of spherical Gaussians.

Importing cgwm_env raises glibc's malloc trim and mmap thresholds for the process (see
keep_freed_memory); set CGWM_KEEP_FREED_MEMORY=0 before the import to leave malloc alone.
"""

import ctypes
import ctypes.util
import os


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory instead of returning it to the OS.

    torch's CPU kernels (MKL's small matrix products above all) allocate and free large work
    buffers on every call; when glibc returns them to the OS, each call pays page faults again.
    Measured here: a (4, 3) @ (3, 488) product took 16 ms instead of 0.01 ms, and a simulator step
    100 ms instead of 0.7 ms. The cost is that the process's resident memory does not shrink after
    large frees. Returns False where glibc is not there (then nothing changes).
    """
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_trim_threshold, 1 << 30) and libc.mallopt(m_mmap_threshold, 1 << 30))
    except (OSError, AttributeError):
        return False


if os.environ.get("CGWM_KEEP_FREED_MEMORY", "1") != "0":
    keep_freed_memory()

# MuJoCo picks its OpenGL backend when first imported (the environments' registration imports it):
# EGL, offscreen, unless MUJOCO_GL says otherwise.
os.environ.setdefault("MUJOCO_GL", "egl")

from cgwm_env import envs  # noqa: E402,F401  (registers the Gymnasium environments)
