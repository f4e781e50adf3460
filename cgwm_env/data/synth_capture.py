"""A software capture session (for tests and the demo of `cgwm capture views`): a library object
standing on a ChArUco board on a wooden table, photographed from around it by a software camera
that looks like a real one (cgwm_env.data.camera_model).

synth_capture writes what a user has after such a session: images/00000.png ..., intrinsics.json
(width, height, fx, fy, cx, cy) and, with depth, depth.npz (the depth stream's maps, one per
image, with its intrinsics and T_color_depth). The truth (each view's true pose in the board's
frame, the object's masks, the object's pose on the board) goes to truth.npz beside them, for
scoring only.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import imageio.v3 as iio
import mujoco
import numpy as np

from cgwm_env.checks import check_count
from cgwm_env.data.camera_model import SoftwareCamera, SoftwareRig, place_mujoco_camera, prepare_spec
from cgwm_env.data.capture import Board
from cgwm_env.data.depth import save_depth
from cgwm_env.data.objects import get_object
from cgwm_env.render.camera import look_at


def capture_spec(object_name: str, board: Board, software: SoftwareCamera, yaw: float, width: int,
                 height: int) -> mujoco.MjSpec:
    """The scene: the board (its pattern on a 1 mm card, top face at z = 0, the board's frame the
    world's) on a wooden table, the object upright at the board's centre turned by `yaw` rad,
    a camera "cam", dressed by software.look."""
    obj = get_object(object_name)
    spec = mujoco.MjSpec()
    spec.visual.global_.offwidth, spec.visual.global_.offheight = width, height
    pattern = board.image()
    texture = spec.add_texture(name="board", type=mujoco.mjtTexture.mjTEXTURE_2D, width=pattern.shape[1],
                               height=pattern.shape[0], nchannel=3)
    texture.data = np.repeat(pattern[..., None], 3, -1).tobytes()
    spec.add_material(name="board", textures=["", "board"], texrepeat=[1, 1])
    w, h = board.size
    spec.worldbody.add_geom(name="table", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[1.0, 1.0, 0.01], pos=[0, 0, -0.001])
    spec.worldbody.add_geom(name="board", type=mujoco.mjtGeom.mjGEOM_BOX, size=[w / 2, h / 2, 0.0005],
                            pos=[0, 0, -0.0005], material="board", rgba=[1, 1, 1, 1])
    lowest = obj.sample_surface(4000, seed=0)
    c, s = math.cos(yaw), math.sin(yaw)
    lowest = (lowest @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]).T)[:, 2].min()
    body = spec.worldbody.add_body(name="object", pos=[0.0, 0.0, -lowest], quat=[math.cos(yaw / 2), 0, 0, math.sin(yaw / 2)])
    for i, g in enumerate(obj.geoms):
        size = np.zeros(3)
        size[:len(g.size)] = g.size
        body.add_geom(name=f"object_{i}", type=getattr(mujoco.mjtGeom, f"mjGEOM_{g.type.upper()}"), size=size,
                      pos=g.pos, quat=g.quat, rgba=g.rgba)
    spec.worldbody.add_camera(name="cam", mode=mujoco.mjtCamLight.mjCAMLIGHT_FIXED)
    prepare_spec(spec, software, table_geoms=("table",))
    return spec


def view_poses(views: int, distance: float, target, rng: np.random.Generator) -> list[np.ndarray]:
    """World-to-camera poses (4, 4) of `views` cameras around `target` (3,) at `distance` m, on
    three rings at 35, 55 and 75 degrees of elevation, jittered as a hand-held camera is."""
    rings = np.array([35.0, 55.0, 75.0])
    poses = []
    for k in range(views):
        elevation = math.radians(rings[k % 3] + rng.uniform(-4, 4))
        azimuth = 2 * math.pi * k / views + rng.uniform(-0.05, 0.05)
        d = distance * rng.uniform(0.95, 1.05)
        eye = np.asarray(target) + d * np.array([math.cos(elevation) * math.cos(azimuth),
                                                 math.cos(elevation) * math.sin(azimuth), math.sin(elevation)])
        poses.append(look_at(eye, np.asarray(target) + rng.normal(0, 0.005, 3)).double().numpy())
    return poses


def synth_capture(object_name: str, out_dir, views: int = 36, width: int = 480, height: int = 360,
                  fovy: float = 50.0, distance: float = 0.34, seed: int = 0,
                  software: SoftwareCamera = SoftwareCamera(), board: Board = Board()) -> Path:
    """Photograph `object_name` on `board` from `views` viewpoints (view_poses) at width x height
    px with a vertical field of view of `fovy` degrees; write the session into `out_dir` (module
    docstring) and return it. seed: the object's yaw and the viewpoints' jitter."""
    check_count(views, "views")
    rng = np.random.default_rng(seed)
    spec = capture_spec(object_name, board, software, rng.uniform(0, 2 * math.pi), width, height)
    model = spec.compile()
    data = mujoco.MjData(model)
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    fy = 0.5 * height / math.tan(math.radians(fovy) / 2)
    object_geoms = np.flatnonzero(model.geom_bodyid == model.body("object").id)
    mujoco.mj_forward(model, data)
    centre = data.xpos[model.body("object").id].copy()
    truth = {"T_cw": [], "masks": []}
    depths = []
    cam = model.camera("cam").id
    with SoftwareRig(model, data, "cam", width, height, software) as rig:
        for k, T_cw in enumerate(view_poses(views, distance, centre, rng)):
            place_mujoco_camera(model, cam, T_cw, fy, height)
            rig.aim()
            color, depth, seg = rig.frame()
            iio.imwrite(out / "images" / f"{k:05d}.png", color)
            depths.append(depth)
            truth["T_cw"].append(rig.color_camera.T_cw.double().numpy())
            truth["masks"].append((seg[..., 1] == mujoco.mjtObj.mjOBJ_GEOM) & np.isin(seg[..., 0], object_geoms))
        intrinsics = {k: float(getattr(rig.color_camera, k)) for k in ("fx", "fy", "cx", "cy")}
        if depths[0] is not None:
            save_depth(out / "depth.npz", np.stack(depths), rig.depth_camera, rig.T_color_depth)
    (out / "intrinsics.json").write_text(json.dumps({"width": width, "height": height, **intrinsics}, indent=1))
    np.savez(out / "truth.npz", T_cw=np.stack(truth["T_cw"]), masks=np.stack(truth["masks"]),
             object_pos=data.xpos[model.body("object").id], object_quat=data.xquat[model.body("object").id])
    return out
