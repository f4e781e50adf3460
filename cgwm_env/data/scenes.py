"""MuJoCo twins of the simulator's scenes: a box with a free joint on a ground plane.

MuJoCo's free joint: qpos = (x, y, z, qw, qx, qy, qz), qvel = (linear velocity in the world frame,
angular velocity in the body frame).
"""

from __future__ import annotations

import numpy as np


def box_on_plane_xml(size, mass: float, friction: float, timestep: float, pusher_radius: float | None = None) -> str:
    """MJCF of a solid box (sides `size` (3,) m, `mass` kg, sliding friction `friction`) above a
    plane at z = 0, shadows off for fast offscreen rendering. With pusher_radius, a kinematic
    (mocap) sphere of that radius named "pusher" is added, parked 10 m up."""
    half = " ".join(f"{s / 2:.9g}" for s in np.broadcast_to(np.asarray(size, float), (3,)))
    pusher = ""
    if pusher_radius is not None:
        pusher = (f'<body name="pusher" mocap="true" pos="0 0 10"><geom type="sphere" size="{pusher_radius}" '
                  f'friction="{friction} 0 0" rgba="0.2 0.2 0.2 1"/></body>')
    return f"""
<mujoco model="box_on_plane">
  <option timestep="{timestep}" gravity="0 0 -9.81"/>
  <visual><quality shadowsize="0"/></visual>
  <worldbody>
    <light pos="0 0 2" dir="0 0 -1" castshadow="false"/>
    <geom name="ground" type="plane" size="2 2 0.1" friction="{friction} 0 0" rgba="0.8 0.8 0.8 1"/>
    <body name="box" pos="0 0 0.5">
      <freejoint name="box"/>
      <geom name="box" type="box" size="{half}" mass="{mass}" friction="{friction} 0 0" rgba="0.8 0.3 0.2 1"/>
    </body>
    {pusher}
  </worldbody>
</mujoco>"""
