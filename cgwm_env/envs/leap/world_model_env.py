"""ContactGaussian-LeapHand-v1: on-palm reorientation with the LEAP Hand on the differentiable world model.

The task (goal-conditioned spaces, start and goal, reward, success, drop) is cgwm_env.envs.leap.task's,
shared with the MuJoCo twin. Each control step (1/30 s) applies the action (a change of the 16
joint targets) and runs the world model's physics for CONTROL_DT / model.dt steps
(simulator.control_step); images and depth come from the Gaussian renderer through the scene's
palm camera. One batched core serves the single environment (B = 1) and the natively batched
vector environment.

Planners use the world model directly: `env.unwrapped.model` (a cgwm_env.physics.model.Model), `.state`
(a batched State) and `.simulate(state, action)`, the pure control step (no env state changes).
"""

from __future__ import annotations

import functools
from pathlib import Path

import gymnasium as gym
import mujoco
import numpy as np
import torch

from cgwm_env.checks import check_count, check_flag
from cgwm_env.config import use_threads
from cgwm_env.envs.batched import BatchedVectorEnv, first_env
from cgwm_env.envs.leap import task
from cgwm_env.learn.world_model import WorldModel
from cgwm_env.physics import math3d
from cgwm_env.physics.contact import ContactSettings
from cgwm_env.physics.gaussians import SphereGaussians
from cgwm_env.physics.hand import forward_kinematics, hand_gaussians, hand_scene, link_points
from cgwm_env.physics.hand_mjcf import N_JOINTS, PALM_Z, SCENE_XML
from cgwm_env.physics.model import Model, State, box_model, check_state, is_finite
from cgwm_env.physics.simulator import control_step, prepare
from cgwm_env.render import render
from cgwm_env.render.camera import from_mujoco

BACKGROUND = (0.93, 0.93, 0.93)
SETTLE_STEPS = 10  # control steps (1/3 s) the object settles on the open hand at reset
DEFAULT_WORLD_MODEL = Path(__file__).resolve().parents[2] / "assets" / "world_models" / "cube"


def default_model() -> Model:
    """The bundled world model (assets/world_models/cube: the cube learned from LEAP clips) on the
    LEAP Hand (hand_scene)."""
    return WorldModel.load(DEFAULT_WORLD_MODEL).model(**hand_scene())


def handmade_cube_model() -> Model:
    """The hand-made cube, bundled as assets/world_models/cube_handmade (the default world model
    is the cube learned from LEAP clips): 5 cm, 100 g, mu 0.5, a shell of 488
    spheres of 2.5 mm and 560 of 0.7 mm along its edges (box_gaussians: without them the edges are
    rounded off, the fingers' boxes slip past them where MuJoCo's catch, and the world model
    predicts strokes turning the cube that jam in MuJoCo), physics
    at 480 Hz with "plain" contact gains K = 150 N/m and D = 0.3 N s/m per row. Effective-mass
    gains make a cube resting on the palm's many grid contacts rock and creep by millimetres per
    second; with these it rests still, 0.3 mm into the palm's spheres, and a thumb curling into it
    sinks at most 0.3 mm (K = 40 at 240 Hz, which also rests still, lets fingers through)."""
    return box_model(0.05, 0.1, 0.5, stiffness=150.0, damping=0.3, dt=1.0 / 480.0, ground_height=None,
                     contact=ContactSettings(gain_mode="plain"), edge_radius=0.0007)


@functools.cache
def palm_camera(size: int):
    """The scene's palm_cam as our Camera, size x size px."""
    m = mujoco.MjModel.from_xml_path(str(SCENE_XML))
    d = mujoco.MjData(m)
    mujoco.mj_forward(m, d)
    return from_mujoco(m, d, "palm_cam", size, size)


class LeapCore:
    """B environments: world-model state, goals, resets, control steps, observations and images."""

    def __init__(self, batch: int, model: Model | None, image_size: int, image_obs: bool = False,
                 compiled: bool = False, goal_settings: task.GoalSettings = task.GoalSettings(),
                 threads: int | None = None):
        use_threads(threads)
        batch = check_count(batch, "num_envs")
        if model is not None and not isinstance(model, Model):
            raise ValueError(f"model: expected a cgwm_env.physics.model.Model with a hand, e.g. "
                             f"WorldModel.load(folder).model(**hand_scene()), got {type(model).__name__} {model!r:.60}")
        self.model = model if model is not None else default_model()
        if self.model.hand is None:
            raise ValueError("model: expected a Model with a hand (hand=cgwm_env.physics.hand.HandModel())")
        self.substeps = round(task.CONTROL_DT / self.model.dt)
        if self.substeps < 1 or abs(self.substeps * self.model.dt - task.CONTROL_DT) > 1e-9:
            raise ValueError(f"model.dt: expected a divisor of the control step {task.CONTROL_DT:.6g} s, "
                             f"got {self.model.dt}")
        self.batch, self.image_size = batch, check_count(image_size, "image_size")
        self.image_obs, self.compiled = check_flag(image_obs, "image_obs"), check_flag(compiled, "compile")
        self.goal_settings = goal_settings
        self.prepared = prepare(self.model, batch)
        self.camera = palm_camera(self.image_size)
        self.hand_links, self.hand_look = hand_gaussians()
        self.background = BACKGROUND  # what image() draws over: an RGB triple or an (S, S, 3) image in [0, 1]
        home = torch.as_tensor(task.HOME_Q).expand(batch, -1)
        self.state = State.make(torch.zeros(batch, 3), hand=home.clone(), hand_target=home.clone())
        self.goal = np.tile(task.yaw_quat(0.0), (batch, 1))
        self.start = np.zeros((batch, 3), np.float32)
        self.streak = np.zeros(batch, int)  # control steps in a row within the threshold

    def observation_space(self) -> gym.spaces.Dict:
        return task.observation_space(self.image_size if self.image_obs else None)

    def reset(self, which: np.ndarray, rng: np.random.Generator) -> None:
        """New episodes where `which` (B,) is True: the open hand, the object upright at a random
        yaw, settled on the palm for SETTLE_STEPS control steps."""
        idx = np.flatnonzero(which)
        if len(idx) == 0:
            return
        episodes = [task.sample_episode(rng) for _ in idx]
        quat = torch.as_tensor(np.stack([task.yaw_quat(yaw) for yaw, _ in episodes]))
        home = torch.as_tensor(task.HOME_Q).expand(len(idx), -1)
        placed = State.make(self.resting_position(quat), quat=quat, hand=home, hand_target=home)
        placed = State(*(field.to(self.state.position.dtype) for field in placed))
        settled = self.settle(placed)
        rows = torch.as_tensor(idx)
        fields = {}
        for name, value in settled._asdict().items():
            fields[name] = getattr(self.state, name).clone()
            fields[name][rows] = value
        self.state = self.state._replace(**fields)
        self.goal[idx] = np.stack([goal for _, goal in episodes])
        self.start[idx] = settled.position.numpy()
        self.streak[idx] = 0

    def settle(self, state: State) -> State:
        """`state` (n environments) after SETTLE_STEPS control steps with the targets held: the
        object sinks into its contacts and comes to rest (placed touching, it would move 1.5 mm
        and 1.5 degrees over the first steps)."""
        prepared = prepare(self.model, state.position.shape[0])
        hold = torch.zeros_like(state.hand)
        with torch.no_grad():
            for _ in range(SETTLE_STEPS):
                state = control_step(self.model, prepared, state, hold, self.substeps)
        return state

    def upright_start(self, joints: torch.Tensor) -> State:
        """The playback's start (batch 1): the object upright at yaw 0 resting on the palm at
        OBJECT_XY, the hand at rest at `joints` (1, 16) rad, its targets there too."""
        quat = torch.as_tensor(task.yaw_quat(0.0))[None]
        return State.make(self.resting_position(quat), quat=quat, hand=joints, hand_target=joints)

    def resting_position(self, quat: torch.Tensor) -> torch.Tensor:
        """Positions (n, 3) m at which the object, turned by quat (n, 4), touches the palm at OBJECT_XY."""
        g = self.model.gaussians
        lowest = (math3d.rotate(quat[:, None, :], g.centers[None].detach())[..., 2] - g.radii.detach()).min(1).values
        return torch.cat((torch.as_tensor(task.OBJECT_XY).repeat(len(quat), 1), (PALM_Z - lowest)[:, None]), 1)

    def actions(self, action, batched: bool) -> torch.Tensor:
        """Checked joint-target changes (B, 16) rad of an action (goal_settings'); a ValueError
        names `action` otherwise."""
        shape = (self.batch, N_JOINTS) if batched else (N_JOINTS,)
        change = self.goal_settings.joint_changes(action, shape)
        return torch.as_tensor(change.reshape(self.batch, N_JOINTS)).to(self.state.position.dtype)

    def simulate(self, state: State, action: torch.Tensor) -> State:
        """The pure control step: `state` after joint-target changes `action` (B, 16) rad and CONTROL_DT s."""
        return control_step(self.model, self.prepared, state, action, self.substeps, self.compiled)

    def step(self, action: torch.Tensor) -> None:
        with torch.no_grad():
            self.state = self.simulate(self.state, action)
        self.streak = task.success_streak(self.streak, self.goal_settings.within(self.state.quat.double().numpy(),
                                                                                 self.goal))

    def outcome(self) -> tuple[np.ndarray, np.ndarray, dict]:
        """Reward (B,), dropped (B,) and the info dict of batched arrays (GoalSettings.info) of the
        current states."""
        quat, pos = self.state.quat.double().numpy(), self.state.position.double().numpy()
        drop = task.dropped(pos, self.start)
        return (self.goal_settings.reward(quat, self.goal), drop,
                self.goal_settings.info(quat, self.goal, self.streak, drop))

    def observation(self) -> dict:
        """The batched goal-conditioned observation (task.observation)."""
        s = self.state
        parts = {"joint_pos": s.hand, "joint_target": s.hand_target, "object_pos": s.position, "object_quat": s.quat,
                 "object_vel": s.velocity, "object_omega": s.omega}
        parts = {k: v.detach().numpy().astype(np.float32) for k, v in parts.items()}
        low, high = task.joint_limits()
        parts["joint_pos"] = np.clip(parts["joint_pos"], low, high)  # float32 rounding of values at a limit
        rgb = np.stack([self.image(i) for i in range(self.batch)]) if self.image_obs else None
        return task.observation(parts, self.goal, rgb)

    def scene_gaussians(self, i: int) -> SphereGaussians:
        """The hand and the object of environment i as one set of Gaussians in the world."""
        s, g, h = self.state, self.model.gaussians, self.hand_look
        with torch.no_grad():
            hand_centers = link_points(forward_kinematics(s.hand[i].float()), self.hand_links, h.centers)
            object_centers = g.transformed_centers(s.position[i], s.quat[i]).float()
        return SphereGaussians(torch.cat((hand_centers, object_centers)),
                               torch.cat((h.log_scales, g.log_scales.detach().float())),
                               torch.cat((h.opacity_logits, g.opacity_logits.detach().float())),
                               torch.cat((h.colors, g.colors.detach().float())))

    def image(self, i: int) -> np.ndarray:
        """(S, S, 3) uint8 view of environment i through the palm camera, drawn by the Gaussian renderer."""
        with torch.no_grad():
            rgb = render(self.scene_gaussians(i), self.camera, background=self.background).rgb
        return (rgb.clamp(0, 1) * 255).round().to(torch.uint8).numpy()

    def depth(self, i: int) -> np.ndarray:
        """(S, S) float32 depth (m, along the palm camera's axis) of environment i; 0 where nothing is drawn."""
        with torch.no_grad():
            return render(self.scene_gaussians(i), self.camera).depth.numpy().astype(np.float32)

    def render(self, mode: str | None, i: int) -> np.ndarray | None:
        """Environment i drawn for render_mode `mode`: image, depth or None."""
        return {"rgb_array": self.image, "depth_array": self.depth}[mode](i) if mode is not None else None


class PlannerAccess:
    """What planners read of an env on the world model: its Model, batched State and pure step."""

    core: LeapCore

    @property
    def model(self) -> Model:
        return self.core.model

    @property
    def state(self) -> State:
        return self.core.state

    def simulate(self, state: State, action: torch.Tensor) -> State:
        """The pure control step of the world model (LeapCore.simulate): `state` a State of this
        env's batch with the hand's 16 joints; `action` (B, 16) joint-target changes, rad, finite."""
        check_state(state)
        batch = self.core.batch
        if state.position.shape[0] != batch or state.hand.shape[1] != N_JOINTS:
            raise ValueError(f"state: expected a batch of {batch} with the hand's {N_JOINTS} joints, got position "
                             f"{tuple(state.position.shape)} and hand {tuple(state.hand.shape)}")
        if not isinstance(action, torch.Tensor) or action.shape != (batch, N_JOINTS):
            raise ValueError(f"action: expected a tensor ({batch}, {N_JOINTS}) of joint-target changes (rad), got "
                             f"{tuple(action.shape) if isinstance(action, torch.Tensor) else type(action).__name__}")
        if not torch.isfinite(action).all():
            raise ValueError("action: expected finite joint-target changes (rad), got NaN or inf")
        return self.core.simulate(state, action.to(state.position.dtype))


class LeapHandEnv(PlannerAccess, task.GoalEnvMethods, gym.Env):
    """One environment; see the module doc and docs/envs.md. kwargs: model (a Model with a hand,
    e.g. a learned world model; default the bundled cube), image_size (px), image_obs (add "rgb"
    to the observation), compile (run the physics through torch.compile: several times faster,
    after 20-60 s of compilation on the first step), reward_type, rotation_threshold (rad) and
    normalized_actions (task.GoalSettings), threads (torch's CPU threads for the process, set on
    creation; default 1 unless OMP_NUM_THREADS is set: cgwm_env.config.use_threads)."""

    metadata = {"render_modes": ["rgb_array", "depth_array"], "render_fps": round(1.0 / task.CONTROL_DT)}

    def __init__(self, render_mode: str | None = None, model: Model | None = None, image_size: int = 128,
                 image_obs: bool = False, compile: bool = False, reward_type: str = "dense",
                 rotation_threshold: float = task.SUCCESS_ANGLE, normalized_actions: bool = True,
                 threads: int | None = None):
        self.render_mode = task.check_render_mode(render_mode)
        self.goal_settings = task.GoalSettings(reward_type, rotation_threshold, normalized_actions)
        self.core = LeapCore(1, model, image_size, image_obs, compile, self.goal_settings, threads)
        self.observation_space = self.core.observation_space()
        self.action_space = self.goal_settings.action_space()

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.core.reset(np.ones(1, bool), self.np_random)
        return first_env(self.core.observation()), self._outcome()[2]

    def step(self, action):
        self.core.step(self.core.actions(action, batched=False))
        reward, dropped, info = self._outcome()
        return first_env(self.core.observation()), reward, dropped, False, info

    def _outcome(self) -> tuple[float, bool, dict]:
        """Reward, dropped and the info dict of the current state."""
        reward, dropped, info = self.core.outcome()
        return float(reward[0]), bool(dropped[0]), {k: v[0].item() for k, v in info.items()}

    def render(self):
        return self.core.render(self.render_mode, 0)


class LeapHandVectorEnv(PlannerAccess, BatchedVectorEnv):
    """num_envs environments stepped as one batch (gym.make_vec); next-step autoreset; kwargs as
    LeapHandEnv's. compute_reward(achieved, desired, info) is the single environment's."""

    metadata = {**BatchedVectorEnv.metadata, "render_modes": ["rgb_array", "depth_array"]}

    def __init__(self, num_envs: int = 1, render_mode: str | None = None, model: Model | None = None,
                 image_size: int = 128, image_obs: bool = False, max_episode_steps: int = task.MAX_EPISODE_STEPS,
                 compile: bool = False, reward_type: str = "dense", rotation_threshold: float = task.SUCCESS_ANGLE,
                 normalized_actions: bool = True, threads: int | None = None):
        settings = task.GoalSettings(reward_type, rotation_threshold, normalized_actions)
        core = LeapCore(num_envs, model, image_size, image_obs, compile, settings, threads)
        super().__init__(core, core.observation_space(), settings.action_space(), task.check_render_mode(render_mode),
                         max_episode_steps)

    def compute_reward(self, achieved_goal, desired_goal, info) -> np.ndarray:
        """The reward of achieved and desired goal quaternions (..., 4) (task.GoalSettings.reward)."""
        return self.core.goal_settings.reward(achieved_goal, desired_goal)

    def checked_actions(self, actions) -> torch.Tensor:
        return self.core.actions(actions, batched=True)

    def outcome(self):
        return self.core.outcome()

    def render(self):
        return tuple(self.core.render(self.render_mode, i) for i in range(self.num_envs)) if self.render_mode else None


class PredictionDiverged(ValueError):
    """A world model's prediction went non-finite (its contact gains unstable under this plan);
    frame: the first frame whose state is not finite."""

    def __init__(self, frame: int, frames: int):
        super().__init__(f"model: the predicted state went non-finite at frame {frame} of {frames} "
                         "(contact gains unstable under this plan)")
        self.frame = frame


def predict_frames(joint_targets, camera, frame_dt: float = task.CONTROL_DT, model: Model | None = None,
                   background=None, hand_colors=None) -> np.ndarray:
    """The frames (T, H, W, 3) uint8 the world model predicts for an open-loop plan of joint targets
    (T, 16) rad, one every frame_dt s, seen by `camera` (a cgwm_env.render.camera.Camera): the hand starts
    at rest at the first targets, the object upright at the task's start (yaw 0), and the targets
    step to the next row every frame_dt. model: a Model with a hand (default the bundled one).
    background: (H, W, 3) uint8 image drawn behind (e.g. the camera's view of the empty scene), or
    None for plain grey; hand_colors: (N, 3) colours in [0, 1] of the hand's Gaussians
    (hand.hand_gaussians order), or None for the MJCF's. Raises PredictionDiverged (a ValueError)
    when the model's state goes non-finite."""
    targets = torch.as_tensor(np.asarray(joint_targets, dtype=np.float32))
    if targets.ndim != 2 or targets.shape[1] != N_JOINTS or not torch.isfinite(targets).all():
        raise ValueError(f"joint_targets: expected finite (T, {N_JOINTS}) rad, got shape {tuple(targets.shape)}")
    core = LeapCore(1, model, camera.width, False)
    if background is not None:
        image = np.asarray(background)
        if image.shape != (camera.height, camera.width, 3) or image.dtype != np.uint8:
            raise ValueError(f"background: expected ({camera.height}, {camera.width}, 3) uint8, "
                             f"got {image.shape} {image.dtype}")
        core.background = torch.from_numpy(image.astype(np.float32) / 255.0)
    if hand_colors is not None:
        colors = torch.as_tensor(np.asarray(hand_colors, dtype=np.float32))
        if colors.shape != core.hand_look.colors.shape or not ((colors >= 0) & (colors <= 1)).all():
            raise ValueError(f"hand_colors: expected {tuple(core.hand_look.colors.shape)} colours in [0, 1], "
                             f"got shape {tuple(colors.shape)}")
        core.hand_look = SphereGaussians(core.hand_look.centers, core.hand_look.log_scales,
                                         core.hand_look.opacity_logits, colors)
    substeps = round(frame_dt / core.model.dt)
    if substeps < 1 or abs(substeps * core.model.dt - frame_dt) > 1e-9:
        raise ValueError(f"frame_dt: expected a multiple of the model's step {core.model.dt:.6g} s, got {frame_dt}")
    core.camera = camera
    core.state = core.upright_start(targets[:1])
    frames = [core.image(0)]
    with torch.no_grad():
        for k in range(1, len(targets)):
            change = targets[k:k + 1] - core.state.hand_target
            core.state = control_step(core.model, core.prepared, core.state, change, substeps)
            if not is_finite(core.state):
                raise PredictionDiverged(k, len(targets))
            frames.append(core.image(0))
    return np.stack(frames)
