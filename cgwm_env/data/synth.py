"""Data synthesis in MuJoCo: fall-and-rebound, push-slide-settle and LEAP Hand clips, and multi-view sets.

MuJoCo's own renderer draws offscreen (EGL unless MUJOCO_GL says otherwise) with shadows off and an
ambient-only headlight: a surface point has its geom's colour from every view and in every pose,
as the Gaussians' view-independent colours assume. Masks come from MuJoCo's segmentation pass.
Clips are FPS frames per second with SUBSTEPS physics steps per frame, seen by one fixed camera.

synth() writes one dataset folder (docs/datasets.md) per episode: out_dir/train_000 (15 frames)
and out_dir/test_000 (60 frames, from an unseen pose, pusher velocity or hand motion), ... for
clips, and out_dir/views_000, ... (each a differently rotated lattice of views) for multi-view sets.
LEAP Hand clips run in the MuJoCo twin (cgwm_env.envs.leap_mujoco) at its own time step.
"""

from __future__ import annotations

import math
from pathlib import Path

import mujoco  # cgwm_env.data has chosen EGL unless MUJOCO_GL was set
import numpy as np
import torch
from tqdm import tqdm

from cgwm_env import hand, math3d
from cgwm_env.camera import from_mujoco, look_at
from cgwm_env.data.dataset import camera_to_meta, save_background, save_dataset
from cgwm_env.data.objects import ObjectSpec, get_object
from cgwm_env.envs import leap_task
from cgwm_env.envs.leap_mujoco import CAMERA, SUBSTEPS as LEAP_SUBSTEPS, LeapHandMujocoEnv, scene_model

SCENARIOS = ("fall", "push", "multiview", "leap")
FPS, SUBSTEPS = 30.0, 20
TRAIN_FRAMES, TEST_FRAMES = 15, 60
FRICTION = 0.4
SOLREF = (0.008, 0.2)  # contact time constant (s), damping ratio: rebounds up to ~3 cm; (0.005, 0.2) blew up
GRAVITY = (0.0, 0.0, -9.81)
PUSHER_RADIUS = 0.01
FOVY_DEG = 45.0
CLIP_EYE, CLIP_TARGET = (0.0, -0.24, 0.16), (0.0, 0.0, 0.03)
FAR = 1e4  # where hidden bodies are parked, beyond any far plane, m
LEAP_EYE, LEAP_TARGET = (-0.23, 0.17, 0.2), (-0.03, 0.02, 0.05)  # over the palm from the heel's side, m
LEAP_MOTIONS = ("finger", "thumb", "curl")
LEAP_LEAD = (2, 6)  # frames of a LEAP clip before a finger first touches the object (drawn in this range)
LEAP_MIN_MOTION = (0.002, math.radians(3.0))  # a LEAP clip moves the object by this much (m) or turns it (rad)


def scene_xml(obj: ObjectSpec, size: int, ground: bool = True, pusher: bool = False) -> str:
    """MJCF of `obj` (body "object") at the origin, a camera "cam" looking from CLIP_EYE at
    CLIP_TARGET, a checkered ground plane at z = 0 and a mocap sphere "pusher" parked far away."""
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
    <headlight ambient="1 1 1" diffuse="0 0 0" specular="0 0 0"/>
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
    {floor}
    {obj.mjcf("object")}
    {ball}
  </worldbody>
</mujoco>"""


class _Scene:
    """A compiled scene with its data and an offscreen renderer of `size` x `size` px."""

    def __init__(self, obj: ObjectSpec, size: int, ground: bool = True, pusher: bool = False):
        self.obj = obj
        self.model = mujoco.MjModel.from_xml_string(scene_xml(obj, size, ground, pusher))
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


def _in_view(camera, positions: np.ndarray, margin: float) -> bool:
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
               progress=None) -> Path:
    """A fall-and-rebound clip of `frames` frames: the object released above the ground from a
    random pose and velocity drawn with numpy seed `seed` (an int or a sequence of ints), kept
    in view of the camera. Returns the dataset folder `out_dir`."""
    obj = get_object(object_name)
    _check_count("frames", frames)
    scene = _Scene(obj, _check_size(size))
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
            if _in_view(camera, sim["object_pos"], 0.1):
                break
        else:
            raise RuntimeError(f"synth_fall: no drop of {object_name!r} stayed in view in 50 tries")
        initial = {"pos": pos.tolist(), "quat": quat.tolist(), "vel": vel.tolist(), "angvel": angvel.tolist()}
        meta = {"scenario": "fall", "object": object_name, "seed": _seed_meta(seed), "initial": initial}
        return _save_clip(scene, out_dir, sim, meta, progress)
    finally:
        scene.close()


def synth_push(object_name: str, out_dir, frames: int = TRAIN_FRAMES, seed=0, size: int = 128,
               progress=None) -> Path:
    """A push-slide-settle clip of `frames` frames: the object settles upright at a random yaw,
    then a sphere pusher moves at a random constant horizontal velocity (0.2 to 0.4 m/s, drawn
    with numpy seed `seed`) through it for 2 to 4 cm and stops. Returns `out_dir`."""
    obj = get_object(object_name)
    _check_count("frames", frames)
    scene = _Scene(obj, _check_size(size), pusher=True)
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
        meta = {"scenario": "push", "object": object_name, "seed": _seed_meta(seed),
                "pusher": {"radius": PUSHER_RADIUS, "velocity": (speed * direction).tolist(),
                           "moving_frames": moving, "offset": offset}}
        return _save_clip(scene, out_dir, sim, meta, progress)
    finally:
        scene.close()


def synth_multiview(object_name: str, out_dir, n_views: int = 72, size: int = 128, seed=0, progress=None) -> Path:
    """`n_views` images and masks of the object floating at the origin in its rest pose (world
    frame = body frame, no ground), from cameras on a Fibonacci lattice (turned about z by a
    random angle drawn with `seed`) looking at the origin from 1.25 bounding radii / tan(fovy/2).
    Returns the dataset folder `out_dir`."""
    obj = get_object(object_name)
    _check_count("n_views", n_views)
    scene = _Scene(obj, _check_size(size), ground=False)
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
        meta = {"scenario": "multiview", "object": object_name, "seed": _seed_meta(seed), "cameras": cameras,
                "object_pose": {"pos": [0.0, 0.0, 0.0], "quat": [1.0, 0.0, 0.0, 0.0]},
                "physics": {k: v for k, v in scene.physics_meta().items() if k in ("mass", "inertia", "com")}}
        path = save_dataset(out_dir, meta, np.stack(images), np.stack(masks))
        save_background(path, scene.render_background())
        return path
    finally:
        scene.close()


def _ease(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Joint targets (n, 16) float32 from a (excluded) to b (included) along a half cosine, changing
    by at most 0.9 ACTION_BOUND per control step, slowed by a random factor in [1, 2]."""
    steps = np.abs(b - a).max() * (math.pi / 2) / (0.9 * leap_task.ACTION_BOUND) * rng.uniform(1.0, 2.0)
    n = max(1, math.ceil(steps))
    s = (1.0 - np.cos(math.pi * np.arange(1, n + 1) / n)) / 2.0
    return (a + s[:, None] * (b - a)).astype(np.float32)


def _leap_motion(rng: np.random.Generator) -> tuple[str, np.ndarray]:
    """A scripted hand motion drawn with rng: its kind (LEAP_MOTIONS) and the joint targets (N, 16)
    float32 of N control steps, starting from HOME_Q (sim joint order: a finger's mcp, rot, pip,
    dip at 4 f .. 4 f + 3 for index, middle, ring; the thumb's cmc, axl, mcp, ipl at 12 .. 15).

    finger: one or two fingers raise (mcp), press down (pip, dip) and sweep sideways (rot);
    thumb: the thumb swings across the palm into the object; curl: the three fingers raise
    together and curl onto it. The ranges are those that reach the object on the palm."""
    kind = LEAP_MOTIONS[int(rng.integers(len(LEAP_MOTIONS)))]
    home = leap_task.HOME_Q
    poses = [home]
    if kind == "thumb":
        pose = home.copy()
        pose[12:16] = rng.uniform((0.0, 0.4, 0.6, 0.5), (1.4, 1.5, 1.8, 1.5))
        poses.append(pose)
    else:
        if kind == "finger":
            fingers = rng.choice(3, size=int(rng.integers(1, 3)), replace=False)
        else:
            fingers = np.arange(3)
            curl = rng.uniform((1.2, 1.0, 0.5), (1.8, 1.8, 1.4))  # mcp, pip, dip shared by the fingers
        reach, press = home.copy(), home.copy()
        for f in fingers:
            if kind == "finger":
                mcp, rot, pip, dip = rng.uniform((1.0, -0.8, 1.0, 0.3), (1.8, 0.8, 1.8, 1.4))
            else:
                (mcp, pip, dip), rot = curl + rng.uniform(-0.1, 0.1, 3) * (1, 1, 0), rng.uniform(-0.2, 0.2)
            reach[4 * f:4 * f + 4] = (mcp, rot, rng.uniform(0.2, 0.6), 0.2)
            press[4 * f:4 * f + 4] = (mcp, rot, pip, dip)
        poses += [reach, press]
        if kind == "finger":
            sweep = press.copy()
            sweep[4 * fingers + 1] = rng.uniform(-0.8, 0.8, len(fingers))
            poses.append(sweep)
    return kind, np.concatenate([_ease(a, b, rng) for a, b in zip(poses[:-1], poses[1:])])


def _leap_rollout(env: LeapHandMujocoEnv, obs: dict, targets: np.ndarray, steps: int) -> dict:
    """Drive env from its state (observation `obs`) through the joint targets (N, 16), then hold
    the last, for `steps` control steps. Returns per frame (steps + 1 rows): the object's pos,
    quat, world-frame vel and angvel, joint_pos and the observed joint_target (in effect up to the
    frame), qpos (MuJoCo's) and touch (a finger, not the palm, touches the object)."""
    m, d = env.mj_model, env.mj_data
    joint, body = m.joint("object"), m.body("object").id
    q, v = int(joint.qposadr[0]), int(joint.dofadr[0])
    links = np.setdiff1d(np.arange(1, m.nbody), (body, m.body("palm").id))  # the hand's, but the palm
    out = {k: [] for k in ("object_pos", "object_quat", "object_vel", "object_angvel", "joint_pos", "joint_target",
                           "qpos", "touch")}
    for t in range(steps + 1):
        if t > 0:
            obs = env.step(targets[min(t - 1, len(targets) - 1)] - obs["joint_target"])[0]
        R = d.xmat[body].reshape(3, 3)
        b1, b2 = m.geom_bodyid[d.contact.geom1[:d.ncon]], m.geom_bodyid[d.contact.geom2[:d.ncon]]
        touch = bool((((b1 == body) & np.isin(b2, links)) | ((b2 == body) & np.isin(b1, links))).any())
        for key, value in (("object_pos", d.qpos[q:q + 3]), ("object_quat", d.qpos[q + 3:q + 7]),
                           ("object_vel", d.qvel[v:v + 3]), ("object_angvel", R @ d.qvel[v + 3:v + 6]),
                           ("joint_pos", obs["joint_pos"]), ("joint_target", obs["joint_target"]),
                           ("qpos", d.qpos), ("touch", touch)):
            out[key].append(np.array(value))
    return {k: np.stack(a) for k, a in out.items()}


def synth_leap(object_name: str, out_dir, frames: int = TRAIN_FRAMES, seed=0, size: int = 128,
               progress=None) -> Path:
    """A LEAP Hand clip of `frames` frames from the MuJoCo twin (LeapHandMujocoEnv, 30 fps): the
    object starts at rest on the palm at a random yaw and a scripted motion (_leap_motion, drawn
    with numpy seed `seed`) touches, pushes or rolls it. The clip starts LEAP_LEAD frames before a
    finger first touches the object; motions that move it less than LEAP_MIN_MOTION within the
    clip, drop it or leave the view are drawn again. A fixed camera looks at the palm from LEAP_EYE.
    states.npz adds joint_pos (joint positions at each frame) and joint_target (the targets from
    the frame to the next), (T, 16) float32 rad; hand_masks/ marks the hand. Returns `out_dir`."""
    obj = get_object(object_name)
    frames = _check_count("frames", frames)
    size = _check_size(size)
    rng = np.random.default_rng(seed)
    env = LeapHandMujocoEnv(object_name)
    model = scene_model(obj, size)  # the same scene, rendered from the fixed camera
    data = mujoco.MjData(model)
    renderer = mujoco.Renderer(model, size, size)
    try:
        cam = model.camera(CAMERA).id
        R = look_at(LEAP_EYE, LEAP_TARGET).double()[:3, :3].numpy()
        model.cam_pos[cam] = LEAP_EYE
        mujoco.mju_mat2Quat(model.cam_quat[cam], np.stack((R[0], -R[1], -R[2]), axis=1).reshape(-1))
        mujoco.mj_forward(model, data)
        camera = from_mujoco(model, data, cam, size, size)
        for _ in range(50):
            kind, targets = _leap_motion(rng)
            obs, _ = env.reset(seed=int(rng.integers(2**31)))
            lead = int(rng.integers(LEAP_LEAD[0], LEAP_LEAD[1] + 1))
            run = _leap_rollout(env, obs, targets, len(targets) + frames + lead)
            if not run["touch"].any():
                continue
            start = max(0, int(np.argmax(run["touch"])) - lead)
            clip = {k: a[start:start + frames + 1] for k, a in run.items()}  # + 1: the targets after the last frame
            if len(clip["qpos"]) < frames + 1:
                continue
            moved = np.linalg.norm(clip["object_pos"] - clip["object_pos"][0], axis=1).max()
            turned = np.abs(clip["object_quat"] @ clip["object_quat"][0]).min()
            if ((moved >= LEAP_MIN_MOTION[0] or 2.0 * math.acos(min(turned, 1.0)) >= LEAP_MIN_MOTION[1])
                    and not leap_task.dropped(clip["object_pos"], run["object_pos"][0]).any()
                    and _in_view(camera, clip["object_pos"], 0.05)):
                break
        else:
            raise RuntimeError(f"synth_leap: no motion moved {object_name!r} within the view in 50 tries")
        images, masks, hand_masks = _render_leap(model, data, renderer, clip["qpos"][:frames], progress)
        states = {"times": np.arange(frames) / FPS,
                  **{k: clip[k][:frames] for k in ("object_pos", "object_quat", "object_vel", "object_angvel")},
                  "joint_pos": clip["joint_pos"][:frames].astype(np.float32),
                  "joint_target": clip["joint_target"][1:].astype(np.float32)}
        friction = float(model.geom_friction[np.flatnonzero(model.geom_bodyid == model.body("object").id)[0], 0])
        physics = {"mass": obj.mass, "inertia": obj.inertia.tolist(), "com": obj.com.tolist(), "friction": friction,
                   "gravity": list(model.opt.gravity), "timestep": float(model.opt.timestep),
                   "substeps": LEAP_SUBSTEPS, "simulator": f"mujoco {mujoco.__version__}"}
        meta = {"scenario": "leap", "object": object_name, "seed": _seed_meta(seed), "fps": FPS,
                "cameras": [camera_to_meta(camera)], "physics": physics,
                "hand": {"joint_names": list(hand.JOINT_NAMES), "motion": kind, "start_step": start,
                         "first_touch_frame": int(np.argmax(clip["touch"]))}}
        path = save_dataset(out_dir, meta, images, masks, states, hand_masks)
        save_background(path, _leap_background(model, data, renderer, clip["qpos"][0]))
        return path
    finally:
        renderer.close()
        env.close()


def _leap_segments(model) -> tuple[np.ndarray, np.ndarray]:
    """Geom ids of the object and of the hand, (n,) each."""
    body = model.geom_bodyid
    obj = model.body("object").id
    return np.flatnonzero(body == obj), np.flatnonzero((body != obj) & (body != 0))


def _render_leap(model, data, renderer, qpos: np.ndarray, progress) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RGB (T, H, W, 3) uint8, object and hand masks (T, H, W) bool of the MuJoCo states qpos (T, nq)."""
    obj, hand_geoms = _leap_segments(model)
    images, masks, hand_masks = [], [], []
    for q in qpos:
        data.qpos[:] = q
        mujoco.mj_forward(model, data)
        renderer.update_scene(data, camera=CAMERA)
        images.append(renderer.render().copy())
        renderer.enable_segmentation_rendering()
        renderer.update_scene(data, camera=CAMERA)
        seg = renderer.render()
        renderer.disable_segmentation_rendering()
        is_geom = seg[..., 1] == mujoco.mjtObj.mjOBJ_GEOM
        masks.append(is_geom & np.isin(seg[..., 0], obj))
        hand_masks.append(is_geom & np.isin(seg[..., 0], hand_geoms))
        if progress is not None:
            progress.update(1)
    return np.stack(images), np.stack(masks), np.stack(hand_masks)


def _leap_background(model, data, renderer, qpos: np.ndarray) -> np.ndarray:
    """The view without the object (parked far away) and the hand (transparent); the model is restored."""
    _, hand_geoms = _leap_segments(model)
    rgba = model.geom_rgba[hand_geoms].copy()
    joint = model.joint("object")
    data.qpos[:] = qpos
    data.qpos[joint.qposadr[0]:joint.qposadr[0] + 3] = FAR
    model.geom_rgba[hand_geoms, 3] = 0.0
    try:
        mujoco.mj_forward(model, data)
        renderer.update_scene(data, camera=CAMERA)
        return renderer.render().copy()
    finally:
        model.geom_rgba[hand_geoms] = rgba


def synth(scenario: str, object_name: str, out_dir, episodes: int = 1, seed: int = 0, size: int = 128) -> list[Path]:
    """Write `episodes` datasets of `scenario` for `object_name` under `out_dir` (layout in the
    module docstring) with a progress bar; returns their folders. Train episode k draws with
    numpy seed (seed, 0, k), test episode k with (seed, 1, k), view set k with (seed, 2, k)."""
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario: expected one of {SCENARIOS}, got {scenario!r}")
    get_object(object_name)
    _check_count("episodes", episodes)
    out_dir = Path(out_dir)
    if scenario == "multiview":
        jobs = [(f"views_{k:03d}", 72, (seed, 2, k)) for k in range(episodes)]
    else:
        jobs = [(f"{split}_{k:03d}", frames, (seed, code, k)) for k in range(episodes)
                for split, code, frames in (("train", 0, TRAIN_FRAMES), ("test", 1, TEST_FRAMES))]
    paths = []
    with tqdm(total=sum(j[1] for j in jobs), unit="frame", desc=f"{scenario} {object_name}", mininterval=1.0) as bar:
        for name, count, job_seed in jobs:
            if scenario == "multiview":
                paths.append(synth_multiview(object_name, out_dir / name, count, size, job_seed, bar))
            else:
                fn = {"fall": synth_fall, "push": synth_push, "leap": synth_leap}[scenario]
                paths.append(fn(object_name, out_dir / name, count, job_seed, size, bar))
    return paths


def add_arguments(parser) -> None:
    """Add `cgwm synth`'s options to an argparse parser."""
    parser.add_argument("--scenario", required=True, choices=SCENARIOS, help="what to record")
    parser.add_argument("--object", required=True, help="object name (see cgwm_env.data.objects.OBJECTS)")
    parser.add_argument("--out", required=True, help="output folder (one dataset folder per episode inside)")
    parser.add_argument("--episodes", type=int, default=1, help="train/test clip pairs or view sets (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--size", type=int, default=128, help="image width and height, px (default 128)")


def main(args) -> int:
    """Run `cgwm synth` with parsed arguments; prints the folders written."""
    for path in synth(args.scenario, args.object, args.out, args.episodes, args.seed, args.size):
        print(path)
    return 0


def _check_count(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
    return int(value)


def _check_size(size) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 16 <= size <= 2048:
        raise ValueError(f"size: expected an image size in [16, 2048] px, got {size!r}")
    return int(size)


def _seed_meta(seed):
    return [int(s) for s in np.atleast_1d(seed)]
