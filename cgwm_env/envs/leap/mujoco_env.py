"""The MuJoCo twin of the LEAP Hand reorientation task (cgwm_env.envs.leap.task): the "real" plant
that the world model's ContactGaussian-LeapHand-v1 is compared against.

The scene is assets/leap_hand/palm_up_scene.xml with a library object (cgwm_env.data.objects) in
place of its cube, physics at TIMESTEP with SUBSTEPS steps per control step (30 Hz). The 16
position actuators' ctrl is the joint target: each step sets ctrl = clip(ctrl + action) to the joint
range and runs the substeps. Images come from the scene's palm_cam, drawn by MuJoCo's renderer with
shadows off and an ambient-only headlight (flat part colours, as the Gaussians' colours assume).
"""

from __future__ import annotations

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium.vector import SyncVectorEnv
from gymnasium.wrappers import TimeLimit

from cgwm_env.checks import check_count, check_flag
from cgwm_env.data.objects import ObjectSpec, get_object
from cgwm_env.envs.leap import task as leap_task
from cgwm_env.physics import hand_mjcf

TIMESTEP = 1.0 / 300.0  # s, MuJoCo's physics step
SUBSTEPS = round(leap_task.CONTROL_DT / TIMESTEP)  # physics steps per control step (10)
CAMERA = "palm_cam"
REST_SECONDS = 1.0  # s of damped settling that find the object's resting pose on the palm
REST_DAMPING = 1e-3  # N m s/rad on the object's rotation while it settles (a rocking duck would not stop)
SETTLE_STEPS = SUBSTEPS  # physics steps after placing the object at reset


def scene_model(obj: ObjectSpec, image_size: int = 128) -> mujoco.MjModel:
    """The palm-up scene with `obj` (body and free joint "object", geoms "object_{i}", the XML
    cube's friction) in place of its cube, timestep TIMESTEP, flat lighting, shadows off and an
    offscreen buffer of at least image_size px."""
    model = scene_spec(obj, image_size).compile()
    if model.nu != hand_mjcf.N_JOINTS or (model.actuator_trnid[:, 0] != np.arange(hand_mjcf.N_JOINTS)).any():
        raise RuntimeError("the scene's actuators are not the hand's 16 joints in sim order")
    return model


def scene_spec(obj: ObjectSpec, image_size: int = 128) -> mujoco.MjSpec:
    """scene_model's scene as an uncompiled MjSpec (its body "object" at the origin)."""
    spec = mujoco.MjSpec.from_file(str(hand_mjcf.SCENE_XML))
    friction = np.array(spec.geom("object").friction)
    spec.delete(spec.body("object"))
    body = spec.worldbody.add_body(name="object")
    body.add_freejoint(name="object")
    for i, g in enumerate(obj.geoms):
        size = np.zeros(3)
        size[:len(g.size)] = g.size
        body.add_geom(name=f"object_{i}", type=getattr(mujoco.mjtGeom, f"mjGEOM_{g.type.upper()}"), size=size,
                      pos=g.pos, quat=g.quat, rgba=g.rgba, density=obj.density, friction=friction)
    spec.option.timestep = TIMESTEP
    spec.visual.headlight.ambient = (1.0, 1.0, 1.0)
    spec.visual.headlight.diffuse = (0.0, 0.0, 0.0)
    spec.visual.headlight.specular = (0.0, 0.0, 0.0)
    for light in spec.lights:
        light.active = False
    spec.visual.global_.offwidth = max(spec.visual.global_.offwidth, image_size)
    spec.visual.global_.offheight = max(spec.visual.global_.offheight, image_size)
    return spec


class LeapHandMujocoEnv(leap_task.GoalEnvMethods, gym.Env):
    """The reorientation task in MuJoCo (ContactGaussian-LeapHandMuJoCo-v1).

    kwargs: object (a name in cgwm_env.data.objects.OBJECTS), render_mode (None, "rgb_array" or
    "depth_array"), image_size (px, square images of palm_cam), image_obs (add "rgb" to the
    observation), reward_type, rotation_threshold (rad) and normalized_actions
    (leap_task.GoalSettings). Observation, action, reward and termination are the task's
    (cgwm_env.envs.leap.task); joint_pos is clipped to the joint range (MuJoCo's soft limits
    overshoot it by a few mrad). `mj_model`, `mj_data` and `set_state` are there for planners and tests.
    """

    metadata = {"render_modes": ["rgb_array", "depth_array"], "render_fps": round(1.0 / leap_task.CONTROL_DT)}

    def __init__(self, object: str = "cube", render_mode: str | None = None, image_size: int = 128,
                 image_obs: bool = False, reward_type: str = "dense",
                 rotation_threshold: float = leap_task.SUCCESS_ANGLE, normalized_actions: bool = True):
        if not isinstance(object, str):
            raise ValueError(f"object: expected an object name (str), got {object!r}")
        self.render_mode = leap_task.check_render_mode(render_mode)
        if check_count(image_size, "image_size", 16) > 2048:
            raise ValueError(f"image_size: expected an integer in [16, 2048] px, got {image_size!r}")
        self.image_obs = check_flag(image_obs, "image_obs")
        self.goal_settings = leap_task.GoalSettings(reward_type, rotation_threshold, normalized_actions)
        self.object_spec = get_object(object)
        self.image_size = int(image_size)
        self.mj_model = scene_model(self.object_spec, self.image_size)
        self.mj_data = mujoco.MjData(self.mj_model)
        m = self.mj_model
        self._hand_q = np.array([m.joint(n).qposadr[0] for n in hand_mjcf.JOINT_NAMES])
        joint = m.joint("object")
        self._obj_q = slice(int(joint.qposadr[0]), int(joint.qposadr[0]) + 7)
        self._obj_v = slice(int(joint.dofadr[0]), int(joint.dofadr[0]) + 6)
        self._obj_body = m.body("object").id
        self.observation_space = leap_task.observation_space(self.image_size if self.image_obs else None)
        self.action_space = self.goal_settings.action_space()
        self._lower, self._upper = leap_task.joint_limits()
        self._renderer = None  # made on first use (and again after close)
        self._rest_z, self._rest_quat = self._find_rest_pose()
        self._target = leap_task.HOME_Q.copy()
        self._goal = np.array([1.0, 0.0, 0.0, 0.0], np.float32)
        self._start_pos = np.zeros(3)
        self._streak = 0  # control steps in a row within the threshold

    def _find_rest_pose(self) -> tuple[float, np.ndarray]:
        """Height (m) and quaternion (4,) of the object at rest on the palm at OBJECT_XY, yaw 0:
        dropped from 1 mm above the palm upright, settled for REST_SECONDS with damped rotation."""
        m, d = self.mj_model, self.mj_data
        lowest = self.object_spec.sample_surface(4000, seed=0)[:, 2].min()
        self._place(leap_task.HOME_Q, leap_task.HOME_Q, (*leap_task.OBJECT_XY, hand_mjcf.PALM_Z + 0.001 - lowest),
                    (1.0, 0.0, 0.0, 0.0))
        spin = slice(self._obj_v.start + 3, self._obj_v.stop)
        m.dof_damping[spin] = REST_DAMPING
        try:
            mujoco.mj_step(m, d, nstep=round(REST_SECONDS / TIMESTEP))
        finally:
            m.dof_damping[spin] = 0.0
        speed = np.abs(d.qvel[self._obj_v]).max()
        if speed > 0.01:
            raise RuntimeError(f"object {self.object_spec.name!r} did not come to rest on the palm ({speed:.3g})")
        quat = d.qpos[self._obj_q][3:]
        return float(d.qpos[self._obj_q][2]), quat / np.linalg.norm(quat)

    def _place(self, joint_pos, joint_target, object_pos, object_quat) -> None:
        """Reset MuJoCo's data to this state at rest (all velocities zero) and forward it."""
        m, d = self.mj_model, self.mj_data
        mujoco.mj_resetData(m, d)
        d.qpos[self._hand_q] = joint_pos
        d.qpos[self._obj_q] = (*object_pos, *object_quat)
        d.ctrl[:] = joint_target
        mujoco.mj_forward(m, d)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        yaw0, self._goal = leap_task.sample_episode(self.np_random)
        quat = np.zeros(4)
        mujoco.mju_mulQuat(quat, leap_task.yaw_quat(yaw0).astype(np.float64), self._rest_quat)
        self._target = leap_task.HOME_Q.copy()
        self._place(self._target, self._target, (*leap_task.OBJECT_XY, self._rest_z), quat)
        mujoco.mj_step(self.mj_model, self.mj_data, nstep=SETTLE_STEPS)
        self._start_pos = self.mj_data.qpos[self._obj_q][:3].copy()
        self._streak = 0
        return self._observation(), self._info()

    def step(self, action):
        change = self.goal_settings.joint_changes(action)
        self._target = leap_task.next_target(self._target, change)
        d = self.mj_data
        d.ctrl[:] = self._target
        bad = d.warning[mujoco.mjtWarning.mjWARN_BADQACC].number
        mujoco.mj_step(self.mj_model, d, nstep=SUBSTEPS)
        if d.warning[mujoco.mjtWarning.mjWARN_BADQACC].number != bad:
            raise RuntimeError("MuJoCo went unstable (bad accelerations) and reset its state")
        quat = self._object_quat()
        self._streak = int(leap_task.success_streak(self._streak, self.goal_settings.within(quat, self._goal)))
        info = self._info()
        reward = float(self.goal_settings.reward(quat, self._goal))
        return self._observation(), reward, info["dropped"], False, info

    def set_state(self, joint_pos, joint_target, object_pos, object_quat) -> dict:
        """Put the hand and the object in this state at rest and return the observation: joint_pos,
        joint_target (16,) rad within the joint range; object_pos (3,) m; object_quat (4,) unit
        (w, x, y, z). All velocities become zero; the goal and the episode's start are kept, the
        success streak starts again."""
        joint_pos = self._joints(joint_pos, "joint_pos")
        joint_target = self._joints(joint_target, "joint_target")
        object_pos = np.asarray(object_pos, np.float64)
        if object_pos.shape != (3,) or not np.isfinite(object_pos).all():
            raise ValueError(f"object_pos: expected 3 finite numbers (m), got {object_pos.tolist()}")
        object_quat = np.asarray(object_quat, np.float64)
        if not (object_quat.shape == (4,) and np.isfinite(object_quat).all()
                and abs(np.linalg.norm(object_quat) - 1.0) < 1e-3):
            raise ValueError(f"object_quat: expected a unit quaternion (w, x, y, z), got {object_quat.tolist()}")
        self._target = joint_target.astype(np.float32)
        self._place(joint_pos, self._target, object_pos, object_quat / np.linalg.norm(object_quat))
        self._streak = 0
        return self._observation()

    def _joints(self, x, name: str) -> np.ndarray:
        a = np.asarray(x, np.float64)
        if a.shape != (hand_mjcf.N_JOINTS,) or not np.isfinite(a).all():
            raise ValueError(f"{name}: expected {hand_mjcf.N_JOINTS} finite joint angles (rad), got shape {a.shape}")
        outside = (a < self._lower - 1e-6) | (a > self._upper + 1e-6)
        if outside.any():
            j = int(np.argmax(outside))
            raise ValueError(f"{name}: joint {hand_mjcf.JOINT_NAMES[j]} = {a[j]:.6g} rad is outside its range "
                             f"[{self._lower[j]:.6g}, {self._upper[j]:.6g}]")
        return np.clip(a, self._lower, self._upper)

    def render(self):
        return None if self.render_mode is None else self._image(depth=self.render_mode == "depth_array")

    def close(self):
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def _image(self, depth: bool = False) -> np.ndarray:
        """palm_cam's (S, S, 3) uint8 image, or with `depth` its (S, S) float32 depth in m."""
        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.mj_model, self.image_size, self.image_size)
        self._renderer.update_scene(self.mj_data, camera=CAMERA)
        if not depth:
            return self._renderer.render().copy()
        self._renderer.enable_depth_rendering()
        try:
            return self._renderer.render().astype(np.float32)
        finally:
            self._renderer.disable_depth_rendering()

    def _object_quat(self) -> np.ndarray:
        quat = self.mj_data.qpos[self._obj_q][3:]
        return (quat / np.linalg.norm(quat)).astype(np.float32)

    def _observation(self) -> dict:
        """The goal-conditioned observation (leap_task.observation); the object's angular velocity
        turned from MuJoCo's body frame into the world's."""
        d = self.mj_data
        velocity = d.qvel[self._obj_v]
        parts = {"joint_pos": np.clip(d.qpos[self._hand_q], self._lower, self._upper),
                 "joint_target": self._target, "object_pos": d.qpos[self._obj_q][:3],
                 "object_quat": self._object_quat(), "object_vel": velocity[:3],
                 "object_omega": d.xmat[self._obj_body].reshape(3, 3) @ velocity[3:]}
        obs = leap_task.observation({k: np.asarray(v, np.float32)[None] for k, v in parts.items()}, self._goal[None],
                                    self._image()[None] if self.image_obs else None)
        return {k: v[0] for k, v in obs.items()}

    def _info(self) -> dict:
        quat = self._object_quat()
        drop = leap_task.dropped(self.mj_data.qpos[self._obj_q][:3].astype(np.float32), self._start_pos)
        info = self.goal_settings.info(quat, self._goal, self._streak, drop)
        return {k: v.item() for k, v in info.items()}


def make_vector_env(num_envs: int = 1, max_episode_steps: int = leap_task.MAX_EPISODE_STEPS, **kwargs):
    """gym.make_vec's twin: num_envs copies (kwargs as LeapHandMujocoEnv's), each under a TimeLimit
    of max_episode_steps, stepped one after another (gymnasium's SyncVectorEnv)."""
    num_envs = check_count(num_envs, "num_envs")
    max_episode_steps = check_count(max_episode_steps, "max_episode_steps")

    def make() -> gym.Env:
        return TimeLimit(LeapHandMujocoEnv(**kwargs), max_episode_steps)

    return SyncVectorEnv([make] * num_envs)
