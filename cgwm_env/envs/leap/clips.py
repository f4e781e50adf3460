"""LEAP Hand clips recorded in the MuJoCo twin (`cgwm synth --scenario leap`): an object at rest
on the palm, touched, pushed or rolled by a scripted hand motion, seen by a fixed camera over the
palm. The datasets are docs/datasets.md's, with the hand's joints and masks added."""

from __future__ import annotations

import math
from pathlib import Path

import mujoco
import numpy as np

from cgwm_env.checks import check_count
from cgwm_env.data.camera_model import SoftwareCamera, SoftwareRig, prepare_spec
from cgwm_env.data.dataset import camera_to_meta, save_background, save_dataset
from cgwm_env.data.depth import BACKGROUND_DEPTH_FILE, DEPTH_FILE, save_depth
from cgwm_env.data.objects import get_object
from cgwm_env.data.synth import FAR, FPS, TRAIN_FRAMES, check_size, in_view, seed_meta, synth_clips
from cgwm_env.envs.leap import task as leap_task
from cgwm_env.envs.leap.mujoco_env import CAMERA, LeapHandMujocoEnv, scene_model, scene_spec
from cgwm_env.envs.leap.mujoco_env import SUBSTEPS as LEAP_SUBSTEPS
from cgwm_env.physics import hand_mjcf
from cgwm_env.render.camera import from_mujoco, look_at

LEAP_EYE, LEAP_TARGET = (-0.23, 0.17, 0.2), (-0.03, 0.02, 0.05)  # over the palm from the heel's side, m
LEAP_MOTIONS = ("finger", "thumb", "curl")
LEAP_LEAD = (2, 6)  # frames of a LEAP clip before a finger first touches the object (drawn in this range)
LEAP_MIN_MOTION = (0.002, math.radians(3.0))  # a LEAP clip moves the object by this much (m) or turns it (rad)


def _ease(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Joint targets (n, 16) float32 from a (excluded) to b (included) along a half cosine, changing
    by at most 0.9 ACTION_BOUND per control step, slowed by a random factor in [1, 2]."""
    steps = np.abs(b - a).max() * (math.pi / 2) / (0.9 * leap_task.ACTION_BOUND) * rng.uniform(1.0, 2.0)
    n = max(1, math.ceil(steps))
    s = (1.0 - np.cos(math.pi * np.arange(1, n + 1) / n)) / 2.0
    return (a + s[:, None] * (b - a)).astype(np.float32)


def leap_motion(rng: np.random.Generator) -> tuple[str, np.ndarray]:
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
            obs = env.step(targets[min(t - 1, len(targets) - 1)] - parts["joint_target"])[0]
        parts = leap_task.observation_parts(obs["observation"])
        R = d.xmat[body].reshape(3, 3)
        b1, b2 = m.geom_bodyid[d.contact.geom1[:d.ncon]], m.geom_bodyid[d.contact.geom2[:d.ncon]]
        touch = bool((((b1 == body) & np.isin(b2, links)) | ((b2 == body) & np.isin(b1, links))).any())
        for key, value in (("object_pos", d.qpos[q:q + 3]), ("object_quat", d.qpos[q + 3:q + 7]),
                           ("object_vel", d.qvel[v:v + 3]), ("object_angvel", R @ d.qvel[v + 3:v + 6]),
                           ("joint_pos", parts["joint_pos"]), ("joint_target", parts["joint_target"]),
                           ("qpos", d.qpos), ("touch", touch)):
            out[key].append(np.array(value))
    return {k: np.stack(a) for k, a in out.items()}


def synth_leap(object_name: str, out_dir, frames: int = TRAIN_FRAMES, seed=0, size: int = 128,
               progress=None, software: SoftwareCamera | None = None) -> Path:
    """A LEAP Hand clip of `frames` frames from the MuJoCo twin (LeapHandMujocoEnv, 30 fps): the
    object starts at rest on the palm at a random yaw and a scripted motion (leap_motion, drawn
    with numpy seed `seed`) touches, pushes or rolls it. The clip starts LEAP_LEAD frames before a
    finger first touches the object; motions that move it less than LEAP_MIN_MOTION within the
    clip, drop it or leave the view are drawn again. A fixed camera looks at the palm from LEAP_EYE.
    states.npz adds joint_pos (joint positions at each frame) and joint_target (the targets from
    the frame to the next), (T, 16) float32 rad; hand_masks/ marks the hand. Returns `out_dir`.

    software: draw it through a software camera that looks like a real one instead
    (cgwm_env.data.camera_model: light, shadows, a wooden table, sensor drift and noise, depth)
    and write it as a recording: empty masks (`masks_empty`), background.png (and
    background_depth.npz) of the scene without the object and the hand at the first frame's
    pose (meta `background_joint_pos`), depth.npz, the camera's pose as a calibration gives it
    (off by the model's pose_error), and no object states. The truth (masks, hand masks, object
    states, the true camera, whether a finger touches the object) goes to truth/<name>.npz
    beside out_dir, for scoring only."""
    obj = get_object(object_name)
    frames = check_count(frames, "frames")
    size = check_size(size)
    rng = np.random.default_rng(seed)
    env = LeapHandMujocoEnv(object_name, normalized_actions=False)
    if software is None:
        model = scene_model(obj, size)  # the same scene, rendered from the fixed camera
    else:
        spec = scene_spec(obj, size)
        prepare_spec(spec, software, table_geoms=("floor",))
        model = spec.compile()
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
            kind, targets = leap_motion(rng)
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
                    and in_view(camera, clip["object_pos"], 0.05)):
                break
        else:
            raise RuntimeError(f"synth_leap: no motion moved {object_name!r} within the view in 50 tries")
        if software is not None:
            return _save_real_look(model, data, camera, clip, frames, out_dir, size, software, progress, {
                "scenario": "leap", "object": object_name, "seed": seed_meta(seed), "fps": FPS,
                "hand": {"joint_names": list(hand_mjcf.JOINT_NAMES), "motion": kind, "start_step": start,
                         "first_touch_frame": int(np.argmax(clip["touch"]))}})
        images, masks, hand_masks = _render_leap(model, data, renderer, clip["qpos"][:frames], progress)
        states = {"times": np.arange(frames) / FPS,
                  **{k: clip[k][:frames] for k in ("object_pos", "object_quat", "object_vel", "object_angvel")},
                  "joint_pos": clip["joint_pos"][:frames].astype(np.float32),
                  "joint_target": clip["joint_target"][1:].astype(np.float32)}
        friction = float(model.geom_friction[np.flatnonzero(model.geom_bodyid == model.body("object").id)[0], 0])
        physics = {"mass": obj.mass, "inertia": obj.inertia.tolist(), "com": obj.com.tolist(), "friction": friction,
                   "gravity": list(model.opt.gravity), "timestep": float(model.opt.timestep),
                   "substeps": LEAP_SUBSTEPS, "simulator": f"mujoco {mujoco.__version__}"}
        meta = {"scenario": "leap", "object": object_name, "seed": seed_meta(seed), "fps": FPS,
                "cameras": [camera_to_meta(camera)], "physics": physics,
                "hand": {"joint_names": list(hand_mjcf.JOINT_NAMES), "motion": kind, "start_step": start,
                         "first_touch_frame": int(np.argmax(clip["touch"]))}}
        path = save_dataset(out_dir, meta, images, masks, states, hand_masks)
        save_background(path, _leap_background(model, data, renderer, clip["qpos"][0]))
        return path
    finally:
        renderer.close()
        env.close()


def _save_real_look(model, data, camera, clip: dict, frames: int, out_dir, size: int, software: SoftwareCamera,
                    progress, meta: dict) -> Path:
    """Write a clip drawn through `software` as a recording would be (synth_leap's docstring),
    its truth to truth/<name>.npz beside it; returns the clip's folder."""
    obj_geoms, hand_geoms = _leap_segments(model)
    images, depths, masks, hand_masks = [], [], [], []
    with SoftwareRig(model, data, CAMERA, size, size, software) as rig:
        for q in clip["qpos"][:frames]:
            data.qpos[:] = q
            color, depth, seg = rig.frame()
            images.append(color)
            depths.append(depth)
            is_geom = seg[..., 1] == mujoco.mjtObj.mjOBJ_GEOM
            masks.append(is_geom & np.isin(seg[..., 0], obj_geoms))
            hand_masks.append(is_geom & np.isin(seg[..., 0], hand_geoms))
            if progress is not None:
                progress.update(1)
        joint = model.joint("object")
        data.qpos[:] = clip["qpos"][0]
        data.qpos[joint.qposadr[0]:joint.qposadr[0] + 3] = FAR
        background, background_depth = rig.still()
        calibrated = rig.calibrated_camera()
        true_camera = rig.color_camera
        depth_camera, T_color_depth = rig.depth_camera, rig.T_color_depth
    states = {"times": np.arange(frames) / FPS, "joint_pos": clip["joint_pos"][:frames].astype(np.float32),
              "joint_target": clip["joint_target"][1:].astype(np.float32)}
    meta = {**meta, "cameras": [camera_to_meta(calibrated)], "masks_empty": True,
            "background_joint_pos": clip["joint_pos"][0].astype(float).tolist()}
    if depth_camera is not None:
        meta["depth"] = DEPTH_FILE
    path = save_dataset(out_dir, meta, np.stack(images), np.zeros((frames, size, size), bool), states)
    save_background(path, background)
    if depth_camera is not None:
        save_depth(path / DEPTH_FILE, np.stack(depths), depth_camera, T_color_depth)
        save_depth(path / BACKGROUND_DEPTH_FILE, background_depth, depth_camera, T_color_depth)
    truth = Path(out_dir).parent / "truth"
    truth.mkdir(exist_ok=True)
    np.savez(truth / f"{Path(out_dir).name}.npz", masks=np.stack(masks), hand_masks=np.stack(hand_masks),
             T_cw=true_camera.T_cw.double().numpy(), touch=clip["touch"][:frames],
             **{k: clip[k][:frames] for k in ("object_pos", "object_quat", "object_vel", "object_angvel")})
    return path


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


def synth_leap_clips(object_name: str, out_dir, episodes: int = 1, seed: int = 0, size: int = 128) -> list[Path]:
    """`episodes` train/test pairs of LEAP Hand clips (synth_leap) under `out_dir`, named and seeded
    as cgwm_env.data.synth.synth names and seeds its clips; returns their folders."""
    return synth_clips(synth_leap, "leap", object_name, out_dir, episodes, seed, size)
