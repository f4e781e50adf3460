"""The LEAP Hand's description: its MJCF files, joint count, joint-to-motor map and palm height,
and what the MJCF says (JOINT_NAMES, LINK_NAMES), parsed on first use. Imports neither torch nor
mujoco until the MJCF is needed: registering the environments imports this module."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

ASSET_DIR = Path(__file__).parent.parent / "assets" / "leap_hand"
HAND_XML = ASSET_DIR / "right_hand.xml"  # the hand alone, in its own frame (palm-up, fingers along +x)
SCENE_XML = ASSET_DIR / "palm_up_scene.xml"  # the hand, a cube on its palm, a camera over it
N_JOINTS = 16  # the hand's joints (the MJCF's, checked when it loads)
PALM_Z = 0.0345  # m, the height of the palm face in the hand's frame

# The Dynamixel motor ID (0..15) of each sim joint. A finger's motors are (side, forward, PIP,
# DIP) while its sim joints are (mcp, rot, pip, dip): mcp is the forward motor, rot the side one.
MOTOR_OF_JOINT = (1, 0, 2, 3, 5, 4, 6, 7, 9, 8, 10, 11, 12, 13, 14, 15)
JOINT_OF_MOTOR = tuple(int(j) for j in np.argsort(MOTOR_OF_JOINT))  # the sim joint of each motor ID


@functools.cache
def mjcf():
    """The hand's MJCF (HAND_XML) as a mujoco.MjModel, parsed on first use."""
    import mujoco  # here, not at the top: MuJoCo picks its OpenGL backend when first imported

    model = mujoco.MjModel.from_xml_path(str(HAND_XML))
    if model.njnt != N_JOINTS:
        raise RuntimeError(f"{HAND_XML} has {model.njnt} joints, expected the LEAP Hand's {N_JOINTS}")
    return model


@functools.cache
def joint_names() -> tuple[str, ...]:
    """The joints' names in sim order (the MJCF's)."""
    return tuple(mjcf().joint(j).name for j in range(N_JOINTS))


@functools.cache
def link_names() -> tuple[str, ...]:
    """The links' names in MuJoCo's body order."""
    model = mjcf()
    return tuple(model.body(b).name for b in range(1, model.nbody))


def __getattr__(name: str):
    """JOINT_NAMES and LINK_NAMES, read from the MJCF when first asked for."""
    if name == "JOINT_NAMES":
        return joint_names()
    if name == "LINK_NAMES":
        return link_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
