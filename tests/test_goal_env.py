"""The LEAP envs as Gymnasium-Robotics' goal-conditioned environments (cgwm_env.envs.leap.task):
HER trains on them without a wrapper, Stable-Baselines3's checker finds nothing but image-space
remarks, depth renders, the old ids say where to go, and bad arguments name themselves."""

import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch

import cgwm_env  # noqa: F401  (registers the environments)
from cgwm_env.envs.leap import task

LEAP, TWIN = "ContactGaussian-LeapHand-v1", "ContactGaussian-LeapHandMuJoCo-v1"


@pytest.mark.parametrize("env_id", [LEAP, TWIN])
def test_stable_baselines_checker_has_only_image_remarks(env_id):
    from stable_baselines3.common.env_checker import check_env

    for kwargs, allowed in (({}, ()), ({"image_obs": True, "image_size": 32, "render_mode": "rgb_array"},
                                       ("minimal resolution for an image",))):
        env = gym.make(env_id, **kwargs)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check_env(env.unwrapped, skip_render_check=False)
        remarks = [str(w.message) for w in caught if not any(a in str(w.message) for a in allowed)]
        assert remarks == [], remarks
        env.close()


@pytest.mark.parametrize("env_id", [LEAP, TWIN])
def test_compute_reward_is_the_step_reward_and_batched(env_id):
    for reward_type in task.REWARD_TYPES:
        env = gym.make(env_id, reward_type=reward_type, rotation_threshold=0.3)
        obs, _ = env.reset(seed=1)
        obs, reward, _, _, info = env.step(env.action_space.sample())
        assert reward == env.unwrapped.compute_reward(obs["achieved_goal"], obs["desired_goal"], info)
        # HER's call: a batch of goals, one info per row
        achieved = np.stack([obs["achieved_goal"], obs["desired_goal"], task.yaw_quat(0.2)])
        desired = np.stack([obs["desired_goal"]] * 2 + [task.yaw_quat(0.0)])
        rewards = env.unwrapped.compute_reward(achieved, desired, [info] * 3)
        assert rewards.shape == (3,)
        if reward_type == "sparse":  # HandManipulate's: 0 at the goal, -1 away from it
            np.testing.assert_array_equal(rewards, [-1.0, 0.0, 0.0])  # 0.2 rad is within 0.3
        else:
            np.testing.assert_allclose(rewards[1:], [1.0, 1.0 - math.sin(0.1) ** 2])
        assert info["angle_error"] > 0.3 and not info["within_threshold"] and not info["within_0.1_rad"]
        assert not env.unwrapped.compute_terminated(achieved, desired, [info] * 3).any()
        assert not env.unwrapped.compute_truncated(achieved, desired, [info] * 3).any()
        env.close()


def test_her_trains_on_the_world_model_env_without_a_wrapper():
    """SAC with HER's replay buffer, straight on gym.make's env: a couple of short episodes, the
    relabelled rewards being the env's compute_reward of the substituted goals."""
    from stable_baselines3 import SAC, HerReplayBuffer

    torch.manual_seed(0)
    env = gym.make(LEAP, reward_type="sparse", max_episode_steps=30)
    model = SAC("MultiInputPolicy", env, replay_buffer_class=HerReplayBuffer,
                replay_buffer_kwargs={"n_sampled_goal": 4, "goal_selection_strategy": "future"},
                learning_starts=60, batch_size=32, policy_kwargs={"net_arch": [32, 32]}, seed=0, device="cpu")
    model.learn(total_timesteps=90)
    assert model.num_timesteps == 90 and model.replay_buffer.size() > 0
    batch = model.replay_buffer.sample(64)
    expected = env.unwrapped.compute_reward(batch.next_observations["achieved_goal"].numpy(),
                                            batch.observations["desired_goal"].numpy(), None)
    np.testing.assert_array_equal(batch.rewards[:, 0].numpy(), expected)
    assert (expected == 0).any() and (expected == -1).any()  # relabelled goals were reached, true ones not


@pytest.mark.parametrize("env_id", [LEAP, TWIN])
def test_depth_array_renders_metres_from_the_palm_camera(env_id):
    env = gym.make(env_id, render_mode="depth_array", image_size=48)
    env.reset(seed=0)
    depth = env.render()
    assert depth.shape == (48, 48) and depth.dtype == np.float32
    near = depth[depth > 0].min()
    # palm_cam looks down at the palm; the cube's top is 5 cm above the palm, nearer than the palm
    assert 0.1 < near < 0.5 and (depth > near + 0.04).any()
    assert env.metadata["render_modes"] == ["rgb_array", "depth_array"]
    env.close()


def test_twin_observes_the_objects_velocities_in_the_world_frame():
    """A cube thrown spinning above the palm (free flight for a control step; a cube's inertia is
    isotropic, so its world-frame spin stays constant): MuJoCo's body-frame spin about the cube's
    x axis, the cube turned 90 degrees about z, is observed as the same spin about the world's y."""
    env = gym.make(TWIN)
    obs, _ = env.reset(seed=0)
    twin = env.unwrapped
    start = task.observation_parts(obs["observation"])
    twin.set_state(task.HOME_Q, task.HOME_Q, start["object_pos"] + [0.0, 0.0, 0.05], task.yaw_quat(math.pi / 2))
    dof = twin.mj_model.joint("object").dofadr[0]
    twin.mj_data.qvel[dof:dof + 6] = [0.1, 0.0, 0.0, 2.0, 0.0, 0.0]  # m/s in the world, rad/s in the body
    obs, *_ = env.step(np.zeros(16, np.float32))
    now = task.observation_parts(obs["observation"])
    np.testing.assert_allclose(now["object_omega"], [0.0, 2.0, 0.0], atol=1e-4)
    np.testing.assert_allclose(now["object_vel"], [0.1, 0.0, -9.81 * task.CONTROL_DT], atol=1e-3)
    assert env.observation_space.contains(obs)


def test_old_ids_point_to_v1():
    for old in ("ContactGaussian-LeapHand-v0", "ContactGaussian-LeapHandMuJoCo-v0"):
        with pytest.raises(gym.error.DeprecatedEnv, match=old.replace("-v0", "-v1")):
            gym.make(old)


@pytest.mark.parametrize("env_id, kwargs, name", [
    (LEAP, {"model": "cube"}, "model"),
    (LEAP, {"image_obs": "yes"}, "image_obs"),
    (LEAP, {"image_size": 2.5}, "image_size"),
    (LEAP, {"compile": "no"}, "compile"),
    (LEAP, {"render_mode": "rgb"}, "render_mode"),
    (LEAP, {"reward_type": "binary"}, "reward_type"),
    (LEAP, {"rotation_threshold": 4.0}, "rotation_threshold"),
    (TWIN, {"rotation_threshold": "0.1"}, "rotation_threshold"),
    (TWIN, {"object": "nosuch"}, "object"),
    ("ContactGaussian-PushSlide-v0", {"frame_skip": 2.5}, "frame_skip"),
    ("ContactGaussian-PushSlide-v0", {"model": "cube"}, "model"),
    ("ContactGaussian-FallRebound-v0", {"image_size": 0}, "image_size"),
    ("ContactGaussian-FallRebound-v0", {"render_mode": "depth_array"}, "render_mode"),
])
def test_bad_env_arguments_name_themselves(env_id, kwargs, name):
    with pytest.raises(ValueError, match=f"^{name}: expected"):
        gym.make(env_id, **kwargs)


@pytest.mark.parametrize("env_id", [LEAP, TWIN, "ContactGaussian-FallRebound-v0"])
def test_bad_vector_counts_name_themselves(env_id):
    for bad in (-2, 0, 2.5):
        with pytest.raises(ValueError, match="^num_envs: expected an integer >= 1"):
            gym.make_vec(env_id, num_envs=bad)
    with pytest.raises(ValueError, match="^max_episode_steps"):
        gym.make_vec(env_id, num_envs=1, max_episode_steps=0)
