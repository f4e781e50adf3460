"""cgwm: ContactGaussian-WM, a physics-grounded world model of spherical Gaussians.

The public API: Model, State, step, rollout (the differentiable simulator; box_model builds a
box's Model), WorldModel (a learned world-model bundle), Camera and render (the Gaussian
renderer), and the Gymnasium environments in ENV_IDS, registered on import. The names load on first
use, so importing cgwm_env costs about what importing Gymnasium does; nothing else in the process
changes (keep_freed_memory is opt-in).
"""

import ctypes
import ctypes.util
import importlib

from cgwm_env.envs import ENV_IDS

# name: the module that defines it
_API = {"Model": "cgwm_env.physics.model", "State": "cgwm_env.physics.model", "box_model": "cgwm_env.physics.model",
        "step": "cgwm_env.physics.simulator", "rollout": "cgwm_env.physics.simulator",
        "WorldModel": "cgwm_env.learn.world_model", "Camera": "cgwm_env.render.camera", "render": "cgwm_env.render"}
__all__ = [*_API, "ENV_IDS", "keep_freed_memory"]


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'cgwm_env' has no attribute {name!r}")
    value = globals()[name] = getattr(importlib.import_module(_API[name]), name)
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory instead of returning it to the OS (opt-in; `cgwm` calls it).

    torch's CPU kernels allocate and free work buffers on every call; where glibc returns them
    to the OS, each call pays page faults again. Measured when it was added: a (4, 3) @ (3, 488)
    product took 16 ms instead of 0.01 ms and a simulator step 100 ms instead of 0.7 ms; with
    torch 2.13 on the 2-core development machine it changes neither (docs/design.md). The cost:
    the process's resident memory does not shrink after large frees. Returns False where glibc
    is not there (then nothing changes).
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
