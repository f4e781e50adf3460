"""Data synthesis in MuJoCo: fall-and-rebound and push-slide-settle clips, and multi-view sets.

MuJoCo's own renderer draws offscreen (set MUJOCO_GL=egl where there is no display) with shadows off and an
ambient-only headlight: a surface point has its geom's colour from every view and in every pose,
as the Gaussians' view-independent colours assume. Masks come from MuJoCo's segmentation pass.
Clips are FPS frames per second with SUBSTEPS physics steps per frame, seen by one fixed camera.

synth() writes one dataset folder (docs/datasets.md) per episode: out_dir/train_000 (15 frames)
and out_dir/test_000 (60 frames, from an unseen pose, pusher velocity or hand motion), ... for
clips, and out_dir/views_000, ... (each a differently rotated lattice of views) for multi-view sets.
LEAP Hand clips are recorded in the MuJoCo twin (cgwm_env.envs.leap.clips), named as these.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import mujoco
import numpy as np
import torch

from cgwm_env import progress as progress_lines
from cgwm_env.checks import check_count
from cgwm_env.data.dataset import camera_to_meta, save_background, save_dataset
from cgwm_env.data.objects import ObjectSpec, get_object
from cgwm_env.physics import math3d
from cgwm_env.render.camera import from_mujoco, look_at

SCENARIOS = ("fall", "flatdrop", "push", "multiview")
LIGHTS = ("ambient", "directional")
FPS, SUBSTEPS = 30.0, 20
TRAIN_FRAMES, TEST_FRAMES = 15, 60
FRICTION = 0.4
SOLREF = (0.008, 0.2)  # contact time constant (s), damping ratio: rebounds up to ~3 cm; (0.005, 0.2) blew up
GRAVITY = (0.0, 0.0, -9.81)
PUSHER_RADIUS = 0.01
FOVY_DEG = 45.0
CLIP_EYE, CLIP_TARGET = (0.0, -0.24, 0.16), (0.0, 0.0, 0.03)
FAR = 1e4  # where hidden bodies are parked, beyond any far plane, m


def scene_xml(obj: ObjectSpec, size: int, ground: bool = True, pusher: bool = False, light: str = "ambient") -> str:
    """MJCF of `obj` (body "object") at the origin, a camera "cam" looking from CLIP_EYE at
    CLIP_TARGET, a checkered ground plane at z = 0 and a mocap sphere "pusher" parked far away.
    light: "ambient" (every surface point shows its flat colour from any view) or "directional" (a
    light from above and aside shades the faces by their orientation, as a room's light would)."""
    if light not in LIGHTS:
        raise ValueError(f"light: expected one of {LIGHTS}, got {light!r}")
    R = look_at(CLIP_EYE, CLIP_TARGET).double()[:3, :3].numpy()
    xyaxes = " ".join(f"{x:.9g}" for x in np.concatenate((R[0], -R[1])))
    floor = ('<geom name="ground" type="plane" size="1 1 0.1" material="grid"/>' if ground else "")
    ball = (f'<body name="pusher" mocap="true" pos="0 0 {FAR}"><geom name="pusher" type="sphere" '
            f'size="{PUSHER_RADIUS}" rgba="0.25 0.25 0.28 1"/></body>' if pusher else "")
    return f"""
<mujoco model="cgwm_synth">
  <statistic center="0 0 0" extent="1"/>
  <option timestep="{1.0 / (FPS * SUBSTEPS):.9g}" gravity="{' '.join(map(str, GRAVITY))}"/>
  <visual>
    <quality shadowsize="0"/>
    {_HEADLIGHT[light]}
    <global offwidth="{size}" offheight="{size}"/>
  </visual>
  <!-- a fixed extent fixes the clipping planes at 0.01 and 50 m -->
  <default><geom friction="{FRICTION} 0.005 0.0001" solref="{SOLREF[0]} {SOLREF[1]}" condim="3"/></default>
  <asset>
    <texture name="grid" type="2d" builtin="checker" width="64" height="64" rgb1="0.72 0.72 0.7" rgb2="0.6 0.6 0.62"/>
    <material name="grid" texture="grid" texrepeat="25 25"/>
  </asset>
  <worldbody>
    <camera name="cam" pos="{' '.join(map(str, CLIP_EYE))}" xyaxes="{xyaxes}" fovy="{FOVY_DEG}"/>
    {_LIGHT[light]}
    {floor}
    {obj.mjcf("object")}
    {ball}
  </worldbody>
</mujoco>"""


_HEADLIGHT = {"ambient": '<headlight ambient="1 1 1" diffuse="0 0 0" specular="0 0 0"/>',
              "directional": '<headlight ambient="0.35 0.35 0.35" diffuse="0 0 0" specular="0 0 0"/>'}
_LIGHT = {"ambient": "", "directional": '<light directional="true" dir="0.4 0.3 -1" diffuse="0.7 0.7 0.7" '
                                        'specular="0.1 0.1 0.1" castshadow="false"/>'}


class _Scene:
    """A compiled scene with its data and an offscreen renderer of `size` x `size` px."""

    def __init__(self, obj: ObjectSpec, size: int, ground: bool = True, pusher: bool = False, light: str = "ambient"):
        self.obj = obj
        self.model = mujoco.MjModel.from_xml_string(scene_xml(obj, size, ground, pusher, light))
        self.data = mujoco.MjData(self.model)
        self.body = self.model.body("object").id
        self.qadr = int(self.model.jnt_qposadr[self.model.body_jntadr[self.body]])
        self.vadr = int(self.model.jnt_dofadr[self.model.body_jntadr[self.body]])
        self.geoms = np.flatnonzero(self.model.geom_bodyid == self.body)
        self.renderer = mujoco.Renderer(self.model, size, size)

    def close(self):
        self.renderer.close()

    def set_object(self, pos, quat, vel=(0.0, 0.0, 0.0), angvel=(0.0, 0.0, 0.0)):
        """Reset the simulation to time 0 with the object at this pose and velocity (angular
        velocity `angvel` in the world frame)."""
        d, a, v = self.data, self.qadr, self.vadr
        mujoco.mj_resetData(self.model, d)
        d.qpos[a:a + 3], d.qpos[a + 3:a + 7] = pos, quat
        mujoco.mj_forward(self.model, d)
        d.qvel[v:v + 3] = vel
        d.qvel[v + 3:v + 6] = self.data.xmat[self.body].reshape(3, 3).T @ np.asarray(angvel, float)

    def object_state(self) -> tuple:
        """Position (3,), quaternion (4,), velocity (3,), world angular velocity (3,) of the object."""
        d, a, v = self.data, self.qadr, self.vadr
        R = d.xmat[self.body].reshape(3, 3)
        return d.qpos[a:a + 3].copy(), d.qpos[a + 3:a + 7].copy(), d.qvel[v:v + 3].copy(), R @ d.qvel[v + 3:v + 6]

    def camera(self):
        mujoco.mj_forward(self.model, self.data)
        return from_mujoco(self.model, self.data, "cam", self.renderer.width, self.renderer.height)

    def render(self) -> tuple[np.ndarray, np.ndarray]:
        """RGB (H, W, 3) uint8 and object mask (H, W) bool of the current state from "cam"."""
        r = self.renderer
        r.update_scene(self.data, camera="cam")
        rgb = r.render().copy()
        r.enable_segmentation_rendering()
        r.update_scene(self.data, camera="cam")
        seg = r.render()
        r.disable_segmentation_rendering()
        mask = (seg[..., 1] == mujoco.mjtObj.mjOBJ_GEOM) & np.isin(seg[..., 0], self.geoms)
        return rgb, mask

    def render_background(self) -> np.ndarray:
        """The view with the object and the pusher parked out of sight; the state is restored."""
        qpos, mocap = self.data.qpos.copy(), self.data.mocap_pos.copy()
        self.data.qpos[self.qadr:self.qadr + 3] = FAR
        self.data.mocap_pos[:] = FAR
        mujoco.mj_forward(self.model, self.data)
        rgb = self.render()[0]
        self.data.qpos[:], self.data.mocap_pos[:] = qpos, mocap
        mujoco.mj_forward(self.model, self.data)
        return rgb

    def physics_meta(self) -> dict:
        o = self.obj
        return {"mass": o.mass, "inertia": o.inertia.tolist(), "com": o.com.tolist(), "friction": FRICTION,
                "gravity": list(self.model.opt.gravity), "timestep": float(self.model.opt.timestep),
                "substeps": SUBSTEPS, "solref": list(SOLREF), "condim": 3,
                "pusher_radius": PUSHER_RADIUS if self.model.nmocap else None,
                "simulator": f"mujoco {mujoco.__version__}"}


def _random_quat(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    return q if q[0] >= 0 else -q


def in_view(camera, positions: np.ndarray, margin: float) -> bool:
    """Whether world points (T, 3) project inside the image with `margin` (fraction) to spare."""
    uv, z = camera.project(torch.as_tensor(positions, dtype=torch.float32))
    lo = margin * torch.tensor([camera.width, camera.height])
    hi = torch.tensor([camera.width, camera.height]) - lo
    return bool((z > 0).all() and (uv >= lo).all() and (uv <= hi).all())


def _simulate(scene: _Scene, frames: int, pusher_vel=None) -> dict:
    """Step `frames` - 1 frame intervals from the current state; the pusher (if any) moves at
    pusher_vel[t] (frames, 3) m/s from frame t to t + 1. Returns states.npz's arrays and "qpos"."""
    m, d = scene.model, scene.data
    out = {k: [] for k in ("times", "object_pos", "object_quat", "object_vel", "object_angvel", "qpos")}
    if pusher_vel is not None:
        out["pusher_pos"], out["pusher_vel"] = [], list(pusher_vel)
    for t in range(frames):
        if t > 0:
            for _ in range(SUBSTEPS):
                if pusher_vel is not None:
                    d.mocap_pos[0] += pusher_vel[t - 1] * m.opt.timestep
                mujoco.mj_step(m, d)
            if not np.abs(d.qvel).max() < 100.0:
                raise RuntimeError(f"MuJoCo went unstable at frame {t} (|qvel| >= 100 or NaN)")
        pos, quat, vel, angvel = scene.object_state()
        for key, value in zip(("times", "object_pos", "object_quat", "object_vel", "object_angvel", "qpos"),
                              (t / FPS, pos, quat, vel, angvel, d.qpos.copy())):
            out[key].append(value)
        if pusher_vel is not None:
            out["pusher_pos"].append(d.mocap_pos[0].copy())
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


def _render_clip(scene: _Scene, sim: dict, progress=None) -> tuple[np.ndarray, np.ndarray]:
    images, masks = [], []
    for t, qpos in enumerate(sim["qpos"]):
        scene.data.qpos[:] = qpos
        if "pusher_pos" in sim:
            scene.data.mocap_pos[0] = sim["pusher_pos"][t]
        mujoco.mj_forward(scene.model, scene.data)
        rgb, mask = scene.render()
        images.append(rgb)
        masks.append(mask)
        if progress is not None:
            progress.update(1)
    return np.stack(images), np.stack(masks)


def _save_clip(scene: _Scene, out_dir, sim: dict, meta: dict, progress) -> Path:
    images, masks = _render_clip(scene, sim, progress)
    meta = {"fps": FPS, "cameras": [camera_to_meta(scene.camera())], "physics": scene.physics_meta(), **meta}
    states = {k: v for k, v in sim.items() if k != "qpos"}
    path = save_dataset(out_dir, meta, images, masks, states)
    save_background(path, scene.render_background())
    return path


def synth_fall(object_name: str, out_dir, frames: int = TRAIN_FRAMES, seed=0, size: int = 128,
               progress=None, light: str = "ambient") -> Path:
    """A fall-and-rebound clip of `frames` frames: the object released above the ground from a
    random pose and velocity drawn with numpy seed `seed` (an int or a sequence of ints), kept
    in view of the camera. Returns the dataset folder `out_dir`."""
    obj = get_object(object_name)
    check_count(frames, "frames")
    scene = _Scene(obj, check_size(size), light=light)
    try:
        rng = np.random.default_rng(seed)
        camera = scene.camera()
        for _ in range(50):
            pos = np.array([*rng.uniform(-0.02, 0.02, 2), obj.size + rng.uniform(0.03, 0.1)])
            quat = _random_quat(rng)
            vel = np.array([*rng.uniform(-0.05, 0.05, 2), rng.uniform(-0.3, 0.3)])
            angvel = rng.uniform(-4.0, 4.0, 3)
            scene.set_object(pos, quat, vel, angvel)
            sim = _simulate(scene, frames)
            if in_view(camera, sim["object_pos"], 0.1):
                break
        else:
            raise RuntimeError(f"synth_fall: no drop of {object_name!r} stayed in view in 50 tries")
        initial = {"pos": pos.tolist(), "quat": quat.tolist(), "vel": vel.tolist(), "angvel": angvel.tolist()}
        meta = {"scenario": "fall", "object": object_name, "seed": seed_meta(seed), "initial": initial}
        return _save_clip(scene, out_dir, sim, meta, progress)
    finally:
        scene.close()


def synth_flatdrop(object_name: str, out_dir, frames: int = TRAIN_FRAMES, seed=0, size: int = 128,
                   progress=None, light: str = "ambient") -> Path:
    """A flat drop: the object upright (its rest pose) at a random yaw, its lowest point 2 to 5 cm above
    the ground, released with a little spin (up to 0.2 rad/s about each axis) and no velocity, drawn
    with numpy seed `seed`; it lands on its base and settles. Returns `out_dir`."""
    obj = get_object(object_name)
    check_count(frames, "frames")
    scene = _Scene(obj, check_size(size), light=light)
    try:
        rng = np.random.default_rng(seed)
        yaw = rng.uniform(0.0, 2.0 * math.pi)
        quat = np.array([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)])
        lowest = (obj.sample_surface(4000, seed=0)[:, 2]).min()
        pos = np.array([*rng.uniform(-0.02, 0.02, 2), rng.uniform(0.02, 0.05) - lowest])
        angvel = rng.uniform(-0.2, 0.2, 3)
        scene.set_object(pos, quat, angvel=angvel)
        sim = _simulate(scene, frames)
        initial = {"pos": pos.tolist(), "quat": quat.tolist(), "vel": [0.0, 0.0, 0.0], "angvel": angvel.tolist()}
        meta = {"scenario": "flatdrop", "object": object_name, "seed": seed_meta(seed), "initial": initial}
        return _save_clip(scene, out_dir, sim, meta, progress)
    finally:
        scene.close()


def synth_push(object_name: str, out_dir, frames: int = TRAIN_FRAMES, seed=0, size: int = 128,
               progress=None, light: str = "ambient") -> Path:
    """A push-slide-settle clip of `frames` frames: the object settles upright at a random yaw,
    then a sphere pusher moves at a random constant horizontal velocity (0.2 to 0.4 m/s, drawn
    with numpy seed `seed`) through it for 2 to 4 cm and stops. Returns `out_dir`."""
    obj = get_object(object_name)
    check_count(frames, "frames")
    scene = _Scene(obj, check_size(size), pusher=True, light=light)
    try:
        rng = np.random.default_rng(seed)
        yaw = rng.uniform(0.0, 2.0 * math.pi)
        quat = np.array([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)])
        points = obj.sample_surface(4000, seed=0)
        R = np.zeros(9)
        mujoco.mju_quat2Mat(R, quat)
        points = points @ R.reshape(3, 3).T
        scene.set_object([0.0, 0.0, 0.0005 - points[:, 2].min()], quat)
        spin = slice(scene.vadr + 3, scene.vadr + 6)
        scene.model.dof_damping[spin] = 1e-3  # N m s/rad while it settles: a rocking duck would not stop
        for _ in range(int(0.5 * FPS * SUBSTEPS)):
            mujoco.mj_step(scene.model, scene.data)
        scene.model.dof_damping[spin] = 0.0
        if np.abs(scene.data.qvel).max() > 0.05:
            raise RuntimeError(f"synth_push: {object_name!r} did not come to rest upright")
        scene.data.qvel[:] = 0.0
        centre = scene.object_state()[0]
        heading = rng.uniform(0.0, 2.0 * math.pi)
        direction = np.array([math.cos(heading), math.sin(heading), 0.0])
        side = np.array([-direction[1], direction[0], 0.0])
        reach = (points @ -direction).max()
        offset = rng.uniform(-0.01, 0.01)
        height = max(centre[2], PUSHER_RADIUS + 0.003)
        start = centre - direction * (reach + PUSHER_RADIUS + 0.003) + side * offset
        scene.data.mocap_pos[0] = [start[0], start[1], height]
        speed, distance = rng.uniform(0.2, 0.4), rng.uniform(0.02, 0.04)
        moving = math.ceil((0.003 + distance) / speed * FPS)
        pusher_vel = np.zeros((frames, 3))
        pusher_vel[:moving] = speed * direction
        sim = _simulate(scene, frames, pusher_vel)
        meta = {"scenario": "push", "object": object_name, "seed": seed_meta(seed),
                "pusher": {"radius": PUSHER_RADIUS, "velocity": (speed * direction).tolist(),
                           "moving_frames": moving, "offset": offset}}
        return _save_clip(scene, out_dir, sim, meta, progress)
    finally:
        scene.close()


def synth_multiview(object_name: str, out_dir, n_views: int = 72, size: int = 128, seed=0, progress=None,
                    light: str = "ambient") -> Path:
    """`n_views` images and masks of the object floating at the origin in its rest pose (world
    frame = body frame, no ground), from cameras on a Fibonacci lattice (turned about z by a
    random angle drawn with `seed`) looking at the origin from 1.25 bounding radii / tan(fovy/2).
    Returns the dataset folder `out_dir`."""
    obj = get_object(object_name)
    check_count(n_views, "n_views")
    scene = _Scene(obj, check_size(size), ground=False, light=light)
    try:
        m = scene.model
        scene.set_object((0.0, 0.0, 0.0), (1.0, 0.0, 0.0, 0.0))
        distance = 1.25 * obj.size / math.tan(math.radians(FOVY_DEG) / 2)
        directions = math3d.fibonacci_sphere(n_views, np.random.default_rng(seed).uniform(0.0, 2.0 * math.pi)).numpy()
        images, masks, cameras = [], [], []
        for direction in directions:
            up = (0.0, 0.0, 1.0) if abs(direction[2]) < 0.99 else (0.0, 1.0, 0.0)
            R = look_at(distance * direction, (0.0, 0.0, 0.0), up).double()[:3, :3].numpy()
            m.cam_pos[0] = distance * direction
            mujoco.mju_mat2Quat(m.cam_quat[0], np.stack((R[0], -R[1], -R[2]), axis=1).reshape(-1))
            cameras.append(camera_to_meta(scene.camera()))
            rgb, mask = scene.render()
            images.append(rgb)
            masks.append(mask)
            if progress is not None:
                progress.update(1)
        meta = {"scenario": "multiview", "object": object_name, "seed": seed_meta(seed), "cameras": cameras,
                "object_pose": {"pos": [0.0, 0.0, 0.0], "quat": [1.0, 0.0, 0.0, 0.0]},
                "physics": {k: v for k, v in scene.physics_meta().items() if k in ("mass", "inertia", "com")}}
        path = save_dataset(out_dir, meta, np.stack(images), np.stack(masks))
        save_background(path, scene.render_background())
        return path
    finally:
        scene.close()


def synth(scenario: str, object_name: str, out_dir, episodes: int = 1, seed: int = 0, size: int = 128,
          light: str = "ambient") -> list[Path]:
    """Write `episodes` datasets of `scenario` (fall, flatdrop, push or multiview) for `object_name` under
    `out_dir` (layout in the module docstring), showing its progress (cgwm_env.progress.bar); returns
    their folders. Train episode k draws with numpy seed (seed, 0, k), test episode k with (seed, 1, k),
    view set k with (seed, 2, k). LEAP Hand clips: cgwm_env.envs.leap.clips.synth_leap_clips."""
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario: expected one of {SCENARIOS}, got {scenario!r}")
    if light not in LIGHTS:
        raise ValueError(f"light: expected one of {LIGHTS}, got {light!r}")
    if scenario != "multiview":
        record = {"fall": synth_fall, "flatdrop": synth_flatdrop, "push": synth_push}[scenario]
        return synth_clips(functools.partial(record, light=light), scenario, object_name, out_dir, episodes, seed, size)
    get_object(object_name)
    check_count(episodes, "episodes")
    jobs = [(f"views_{k:03d}", 72, (seed, 2, k)) for k in range(episodes)]
    with progress_lines.bar(sum(j[1] for j in jobs), f"{scenario} {object_name}", unit="frame") as bar:
        return [synth_multiview(object_name, Path(out_dir) / name, count, size, job_seed, bar, light)
                for name, count, job_seed in jobs]


def synth_clips(record, scenario: str, object_name: str, out_dir, episodes: int, seed: int, size: int) -> list[Path]:
    """`episodes` train/test clip pairs under `out_dir`: train_k (TRAIN_FRAMES frames, numpy seed
    (seed, 0, k)) and test_k (TEST_FRAMES, seed (seed, 1, k)), each written by
    record(object_name, folder, frames, seed, size, progress_bar); returns their folders."""
    get_object(object_name)
    check_count(episodes, "episodes")
    jobs = [(f"{split}_{k:03d}", frames, (seed, code, k)) for k in range(episodes)
            for split, code, frames in (("train", 0, TRAIN_FRAMES), ("test", 1, TEST_FRAMES))]
    with progress_lines.bar(sum(j[1] for j in jobs), f"{scenario} {object_name}", unit="frame") as bar:
        return [record(object_name, Path(out_dir) / name, count, job_seed, size, bar) for name, count, job_seed in jobs]


def check_size(size) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 16 <= size <= 2048:
        raise ValueError(f"size: expected an image size in [16, 2048] px, got {size!r}")
    return int(size)


def seed_meta(seed):
    return [int(s) for s in np.atleast_1d(seed)]
