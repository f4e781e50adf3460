import dataclasses

import gymnasium as gym
import mujoco
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import cgwm_env  # noqa: F401  (registers the environments)
from cgwm_env.data.scenes import box_on_plane_xml
from cgwm_env.envs.scenes import PUSHER_RADIUS, default_model
from cgwm_env.physics.model import State

FALL, PUSH = "ContactGaussian-FallRebound-v0", "ContactGaussian-PushSlide-v0"
NO_ACTION = np.zeros(0, np.float32)


@pytest.mark.parametrize("env_id", [FALL, PUSH])
def test_environments_pass_gymnasiums_checker(env_id):
    env = gym.make(env_id, render_mode="rgb_array", image_size=48)
    check_env(env.unwrapped, skip_render_check=False)
    env.reset(seed=0)
    image = env.render()
    assert image.shape == (48, 48, 3) and image.dtype == np.uint8
    assert (image < 200).any()  # the object is drawn over the light background


def test_fall_settles_on_the_ground():
    env = gym.make(FALL)
    obs, _ = env.reset(seed=1)
    assert obs["object_pos"][2] > 0.07
    for _ in range(45):
        obs, reward, terminated, truncated, _ = env.step(NO_ACTION)
    assert reward == 0.0 and not terminated
    assert obs["object_pos"][2] == pytest.approx(0.025, abs=1e-3)  # resting on a face
    assert np.linalg.norm(obs["object_vel"]) < 1e-2


def test_push_moves_the_cube_where_mujoco_moves_it_and_no_push_leaves_it():
    env = gym.make(PUSH)
    env.reset(seed=2)
    core = env.unwrapped.core
    start = np.array([0.0, 0.0, 0.025], np.float32)  # face on, the pusher 5 mm behind the -x face
    pusher = np.array([-0.025 - PUSHER_RADIUS - 0.005, 0.0, 0.025], np.float32)
    core.state = State.make(torch.as_tensor(start)[None], pusher=torch.as_tensor(pusher)[None])
    for _ in range(10):
        obs, *_ = env.step(np.zeros(3, np.float32))
    np.testing.assert_allclose(obs["object_pos"], start, atol=1e-4)

    m = mujoco.MjModel.from_xml_string(box_on_plane_xml(0.05, 0.1, float(core.model.params.mu), core.model.dt,
                                                        PUSHER_RADIUS))
    d = mujoco.MjData(m)
    d.qpos[:3], d.mocap_pos[0] = start, pusher
    for _ in range(15 * core.frame_skip):  # 0.5 s at 0.2 m/s: 10 cm of pusher travel
        d.mocap_pos[0, 0] += 0.2 * m.opt.timestep
        mujoco.mj_step(m, d)
    for _ in range(15):
        obs, *_ = env.step(np.array([0.2, 0.0, 0.0], np.float32))
    # 10 cm less the 5 mm gap, less the depth (damping v + mu g) / stiffness that the pusher (MuJoCo's
    # mocap body, ContactSettings.pusher) sinks into the box while it pushes at v
    params = core.model.params
    depth = (float(params.damping) * 0.2 + float(params.mu) * 9.81) / float(params.stiffness)
    assert obs["object_pos"][0] - start[0] == pytest.approx(0.095 - depth, abs=0.003)
    np.testing.assert_allclose(obs["object_pos"], d.qpos[:3], atol=0.004)  # 3.4 mm short of MuJoCo's
    assert obs["pusher_pos"][0] < obs["object_pos"][0]


def test_vector_env_matches_single_envs_and_autoresets():
    venv = gym.make_vec(PUSH, num_envs=3, max_episode_steps=4)
    obs, _ = venv.reset(seed=3)
    single = gym.make(PUSH).unwrapped
    single.reset(seed=0)
    single.core.state = type(single.core.state)(*(f[1:2].clone() for f in venv.unwrapped.core.state))
    actions = np.array([[0.1, 0, 0], [0.3, 0.05, 0], [0, 0, 0]], np.float32)
    for _ in range(4):
        obs, rewards, terminated, truncated, _ = venv.step(actions)
        single_obs, *_ = single.step(actions[1])
        np.testing.assert_allclose(obs["object_pos"][1], single_obs["object_pos"], atol=1e-5)
    assert truncated.all() and not terminated.any()
    obs, rewards, terminated, truncated, _ = venv.step(actions)  # the step after the end resets
    assert not truncated.any() and (obs["object_vel"] == 0).all()


def test_a_custom_world_model_is_used():
    model = default_model("push")
    heavy = dataclasses.replace(model.params, log_mass=model.params.log_mass + np.log(10.0))
    env = gym.make(PUSH, model=dataclasses.replace(model, params=heavy))
    assert torch.allclose(env.unwrapped.core.model.params.mass, torch.tensor(1.0))


def test_bad_actions_raise_naming_action():
    env = gym.make(PUSH)
    env.reset(seed=0)
    for bad in (np.array([np.nan, 0, 0], np.float32), np.zeros(2, np.float32), np.array([2.0, 0, 0], np.float32)):
        with pytest.raises(ValueError, match="action"):
            env.step(bad)
