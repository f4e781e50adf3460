"""The paper's two test scenes as Gymnasium environments on the differentiable world model:
fall-and-rebound (no control) and push-slide-settle (the action is the pusher's velocity).

Each control step runs `frame_skip` physics steps of the model (30 Hz by default). The scenes are
for prediction, as in the paper, so the reward is 0; an episode ends when the object leaves the
table (falls 0.5 m below the ground) or after `max_episode_steps`. One batched core serves the
single environment (B = 1) and the natively batched vector environment.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch

from cgwm_env.checks import check_choice, check_count
from cgwm_env.config import use_threads
from cgwm_env.envs.batched import BatchedVectorEnv, first_env
from cgwm_env.physics import math3d
from cgwm_env.physics.gaussians import SphereGaussians
from cgwm_env.physics.model import Model, State, box_model
from cgwm_env.physics.simulator import prepare, step_prepared
from cgwm_env.render import render
from cgwm_env.render.camera import Camera, look_at

SCENARIOS = ("fall", "push")
PUSHER_RADIUS = 0.01  # m
MAX_PUSH_SPEED = 0.5  # m/s, the bound of the push action


def default_model(scenario: str) -> Model:
    """The scenes' default world model: a hand-made 5 cm, 100 g cube of 488 spheres (box_model,
    mu 0.5), physics at 480 Hz; pass model= for a learned one (WorldModel.load(...).model())."""
    kwargs = dict(dt=1.0 / 480.0)
    if scenario == "push":
        kwargs.update(pusher_points=torch.zeros(1, 3), pusher_radii=torch.tensor([PUSHER_RADIUS]))
    return box_model(0.05, 0.1, 0.5, **kwargs)


class SceneCore:
    """B environments of one scene: state, resets, steps, observations and images."""

    def __init__(self, scenario: str, batch: int, model: Model | None, frame_skip: int, image_size: int,
                 threads: int | None = None):
        use_threads(threads)
        check_choice(scenario, "scenario", SCENARIOS)
        self.batch, self.frame_skip = check_count(batch, "num_envs"), check_count(frame_skip, "frame_skip")
        image_size = check_count(image_size, "image_size")
        if model is not None and not isinstance(model, Model):
            raise ValueError(f"model: expected a cgwm_env.physics.model.Model, e.g. WorldModel.load(folder).model(), "
                             f"got {type(model).__name__} {model!r:.60}")
        self.scenario = scenario
        self.model = model if model is not None else default_model(scenario)
        if scenario == "push" and self.model.pusher_points.shape[0] == 0:
            raise ValueError("model: the push scene needs a model with pusher_points")
        self.prepared = prepare(self.model, self.batch)
        self.camera = Camera.from_fovy(math.radians(45.0), image_size, image_size,
                                       look_at((0.3, -0.3, 0.25), (0.0, 0.0, 0.03)))
        self.half_height = float((self.model.gaussians.centers[:, 2].abs() + self.model.gaussians.radii).max())
        self.state = State.make(torch.zeros(self.batch, 3))

    @property
    def control_dt(self) -> float:
        return self.frame_skip * self.model.dt

    def reset(self, which: np.ndarray, rng: np.random.Generator) -> None:
        """Draw new initial states for the environments where `which` (B,) is True."""
        n = int(which.sum())
        if n == 0:
            return
        quat = torch.as_tensor(rng.normal(size=(n, 4)), dtype=torch.float32)
        quat = math3d.quat_normalize(quat)
        if self.scenario == "fall":
            position = torch.as_tensor(np.c_[rng.uniform(-0.02, 0.02, (n, 2)), rng.uniform(0.08, 0.15, n)],
                                       dtype=torch.float32)
            velocity = torch.as_tensor(rng.uniform(-0.3, 0.3, (n, 3)), dtype=torch.float32)
            omega = torch.as_tensor(rng.uniform(-3.0, 3.0, (n, 3)), dtype=torch.float32)
            pusher = torch.tensor([0.0, 0.0, 10.0]).expand(n, 3)
        else:  # resting upright with a random yaw, the pusher 5 mm behind it along -x
            yaw = torch.as_tensor(rng.uniform(-math.pi, math.pi, n), dtype=torch.float32)
            quat = math3d.quat_from_axis_angle(torch.tensor([0.0, 0.0, 1.0]).expand(n, 3), yaw)
            position = torch.tensor([0.0, 0.0, 0.0]).expand(n, 3).clone()
            position[:, 2] = self._rest_height(quat)
            velocity = omega = torch.zeros(n, 3)
            reach = self._reach_along_minus_x(position, quat)
            pusher = torch.stack((reach - PUSHER_RADIUS - 0.005, torch.zeros(n), position[:, 2]), dim=1)
        idx = torch.as_tensor(np.flatnonzero(which))
        fields = {}
        for name, new in dict(position=position, quat=quat, velocity=velocity, omega=omega, pusher=pusher).items():
            fields[name] = getattr(self.state, name).clone()
            fields[name][idx] = new
        self.state = self.state._replace(**fields)

    def step(self, action: torch.Tensor) -> None:
        """Advance frame_skip physics steps; action: pusher velocity (B, 3) m/s (zeros for fall)."""
        with torch.no_grad():
            for _ in range(self.frame_skip):
                self.state = step_prepared(self.model, self.prepared, self.state, action)

    def fell(self) -> np.ndarray:
        """(B,) True where the object left the table."""
        return (self.state.position[:, 2] < -0.5).numpy()

    def observation(self) -> dict:
        s = self.state
        obs = {"object_pos": s.position, "object_quat": s.quat, "object_vel": s.velocity, "object_omega": s.omega}
        if self.scenario == "push":
            obs["pusher_pos"] = s.pusher
        return {k: v.numpy().astype(np.float32) for k, v in obs.items()}

    def image(self, i: int) -> np.ndarray:
        """(H, W, 3) uint8 view of environment i drawn by the Gaussian renderer."""
        s = self.state
        g = self.model.gaussians
        centers = g.transformed_centers(s.position[i], s.quat[i])
        parts = [SphereGaussians(centers.detach(), g.log_scales.detach(), g.opacity_logits.detach(), g.colors.detach())]
        if self.scenario == "push":
            parts.append(SphereGaussians.from_spheres(s.pusher[i:i + 1], torch.tensor([PUSHER_RADIUS]),
                                                      colors=torch.tensor([[0.2, 0.2, 0.2]])))
        scene = SphereGaussians(*(torch.cat(t) for t in zip(*(p.tensors() for p in parts))))
        with torch.no_grad():
            rgb = render(scene, self.camera, background=(0.93, 0.93, 0.93)).rgb
        return (rgb.clamp(0, 1) * 255).round().to(torch.uint8).numpy()

    def _rest_height(self, quat: torch.Tensor) -> torch.Tensor:
        g = self.model.gaussians
        heights = (math3d.rotate(quat[:, None, :], g.centers[None])[..., 2]) - g.radii
        return -heights.min(dim=1).values

    def _reach_along_minus_x(self, position: torch.Tensor, quat: torch.Tensor) -> torch.Tensor:
        g = self.model.gaussians
        xs = position[:, None, 0] + math3d.rotate(quat[:, None, :], g.centers[None])[..., 0] - g.radii
        return xs.min(dim=1).values

    def observation_space(self) -> gym.spaces.Dict:
        def box(n):
            return gym.spaces.Box(-np.inf, np.inf, (n,), np.float32)

        spaces = {"object_pos": box(3), "object_quat": box(4), "object_vel": box(3), "object_omega": box(3)}
        if self.scenario == "push":
            spaces["pusher_pos"] = box(3)
        return gym.spaces.Dict(spaces)

    def action_space(self) -> gym.spaces.Box:
        n = 3 if self.scenario == "push" else 0
        return gym.spaces.Box(-MAX_PUSH_SPEED, MAX_PUSH_SPEED, (n,), np.float32)

    def actions(self, action, shape: tuple) -> torch.Tensor:
        """Checked actions as pusher velocities (B, 3); a ValueError names `action` otherwise."""
        a = np.asarray(action, dtype=np.float32)
        if a.shape != shape:
            raise ValueError(f"action: expected shape {shape}, got {a.shape}")
        if not np.isfinite(a).all():
            raise ValueError("action: expected finite pusher velocities (m/s), got NaN or inf")
        if np.abs(a).max(initial=0.0) > MAX_PUSH_SPEED + 1e-6:
            raise ValueError(f"action: expected pusher speeds within +-{MAX_PUSH_SPEED} m/s per axis, got {a.tolist()}")
        if self.scenario == "fall":
            return torch.zeros(self.batch, 3)
        return torch.as_tensor(a).reshape(self.batch, 3)


class SceneEnv(gym.Env):
    """One environment of a scene; see the module doc. kwargs: model (a Model to use instead of
    the bundled cube), frame_skip (physics steps per control step), image_size (px), threads (torch's
    CPU threads for the process, set on creation; default 1 unless OMP_NUM_THREADS is set:
    cgwm_env.config.use_threads)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, scenario: str, render_mode: str | None = None, model: Model | None = None,
                 frame_skip: int = 16, image_size: int = 128, threads: int | None = None):
        check_choice(render_mode, "render_mode", (None, "rgb_array"))
        self.core = SceneCore(scenario, 1, model, frame_skip, image_size, threads)
        self.render_mode = render_mode
        self.observation_space = self.core.observation_space()
        self.action_space = self.core.action_space()
        self.metadata = {**self.metadata, "render_fps": round(1.0 / self.core.control_dt)}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.core.reset(np.ones(1, bool), self.np_random)
        return first_env(self.core.observation()), {}

    def step(self, action):
        self.core.step(self.core.actions(action, self.action_space.shape))
        terminated = bool(self.core.fell()[0])
        return first_env(self.core.observation()), 0.0, terminated, False, {}

    def render(self):
        return self.core.image(0) if self.render_mode == "rgb_array" else None


class SceneVectorEnv(BatchedVectorEnv):
    """num_envs environments of a scene stepped as one batch (gym.make_vec); next-step autoreset."""

    def __init__(self, scenario: str, num_envs: int = 1, render_mode: str | None = None, model: Model | None = None,
                 frame_skip: int = 16, image_size: int = 128, max_episode_steps: int = 60,
                 threads: int | None = None):
        core = SceneCore(scenario, num_envs, model, frame_skip, image_size, threads)
        super().__init__(core, core.observation_space(), core.action_space(),
                         check_choice(render_mode, "render_mode", (None, "rgb_array")), max_episode_steps)

    def checked_actions(self, actions) -> torch.Tensor:
        return self.core.actions(actions, self.action_space.shape)

    def outcome(self):
        return np.zeros(self.num_envs), self.core.fell(), {}
