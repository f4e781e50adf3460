"""The LEAP Hand on the world model: ContactGaussian-LeapHand-v1, its vector env, the hand in the
simulator (gradients, rest, agreement with the MuJoCo twin)."""

import dataclasses
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import cgwm_env  # noqa: F401  (registers the environments)
from cgwm_env.envs.leap import task
from cgwm_env.envs.leap.world_model_env import handmade_cube_model, default_model
from cgwm_env.physics.contact import ContactSettings
from cgwm_env.physics.hand import HandModel
from cgwm_env.physics.hand_mjcf import PALM_Z
from cgwm_env.physics.model import State
from cgwm_env.physics.simulator import control_step, prepare, step

LEAP, TWIN = "ContactGaussian-LeapHand-v1", "ContactGaussian-LeapHandMuJoCo-v1"
THUMB_CURL = np.zeros(16, np.float32)
THUMB_CURL[[13, 14, 15]] = 1.0  # normalised: ACTION_BOUND rad per control step
THUMB_CURL_RAD = THUMB_CURL * task.ACTION_BOUND


def parts(obs: dict) -> dict:
    return task.observation_parts(obs["observation"])


def test_env_passes_gymnasiums_checker_with_images():
    env = gym.make(LEAP, render_mode="rgb_array", image_size=32, image_obs=True)
    check_env(env.unwrapped, skip_render_check=False)
    obs, info = env.reset(seed=0)
    assert obs["rgb"].shape == (32, 32, 3) and obs["rgb"].dtype == np.uint8
    assert (obs["rgb"] < 200).any()  # hand and cube drawn over the light background
    assert set(info) == {"is_success", "within_threshold", "within_0.1_rad", "angle_error", "orientation_error",
                         "dropped"}


def test_bundled_cube_is_learned_and_the_hand_made_one_is_saved():
    """The default world model (assets/world_models/cube) is the one stage II learned from LEAP
    clips (issue 7: the planning model is learned); the hand-made cube it is compared with is
    bundled as cube_handmade and is handmade_cube_model()."""
    from cgwm_env.envs.leap.world_model_env import DEFAULT_WORLD_MODEL
    from cgwm_env.learn.world_model import WorldModel
    from cgwm_env.physics.hand import hand_scene

    learned = WorldModel.load(DEFAULT_WORLD_MODEL)
    assert learned.info["scenario"] == "leap" and learned.info["object"] == "cube"
    model = default_model()
    assert model.hand is not None and model.ground_height is None
    assert model.params.mu.item() > 0.3 and model.params.stiffness.item() > 1.0  # moved from mu 0.2
    hand_made = WorldModel.load(DEFAULT_WORLD_MODEL.parent / "cube_handmade").model(**hand_scene())
    reference = handmade_cube_model()
    torch.testing.assert_close(hand_made.gaussians.centers, reference.gaussians.centers)
    assert hand_made.params.mu.item() == pytest.approx(0.5) and hand_made.params.stiffness.item() == pytest.approx(150.0)


def test_seeding_is_deterministic_and_episodes_follow_the_task():
    a, b = gym.make(LEAP), gym.make(LEAP)
    obs_a, _ = a.reset(seed=7)
    obs_b, _ = b.reset(seed=7)
    for key in obs_a:
        np.testing.assert_array_equal(obs_a[key], obs_b[key])
    np.testing.assert_array_equal(parts(obs_a)["joint_target"], task.HOME_Q)
    np.testing.assert_allclose(parts(obs_a)["joint_pos"], task.HOME_Q, atol=0.03)  # sagging under gravity
    np.testing.assert_allclose(parts(obs_a)["object_pos"][:2], task.OBJECT_XY, atol=1e-3)  # settling slides it
    assert parts(obs_a)["object_pos"][2] == pytest.approx(PALM_Z + 0.025, abs=2e-3)  # the cube on the palm
    # The goal is the start turned 90 degrees about z (to within the settling's turn): error 0.5.
    assert task.orientation_error(obs_a["achieved_goal"], obs_a["desired_goal"]) == pytest.approx(0.5, abs=0.03)
    for _ in range(3):
        step_a, step_b = a.step(THUMB_CURL), b.step(THUMB_CURL)
        np.testing.assert_array_equal(step_a[0]["observation"], step_b[0]["observation"])


def test_bad_actions_raise_naming_action():
    env = gym.make(LEAP)
    env.reset(seed=0)
    nan = np.zeros(16, np.float32)
    nan[3] = np.nan
    big = np.zeros(16, np.float32)
    big[0] = 1.2
    for bad in (nan, np.zeros(15, np.float32), np.zeros((1, 16), np.float32), big):
        with pytest.raises(ValueError, match="action"):
            env.step(bad)


def test_vector_env_matches_single_envs_and_autoresets():
    venv = gym.make_vec(LEAP, num_envs=2, max_episode_steps=3)
    venv.reset(seed=3)
    single = gym.make(LEAP).unwrapped
    single.reset(seed=0)
    core, vcore = single.core, venv.unwrapped.core
    core.state = State(*(f[1:2].clone() for f in vcore.state))
    core.goal, core.start = vcore.goal[1:2].copy(), vcore.start[1:2].copy()
    actions = np.stack([np.zeros(16, np.float32), THUMB_CURL])
    for _ in range(3):
        obs, rewards, terminated, truncated, info = venv.step(actions)
        single_obs, single_reward, *_ = single.step(actions[1])
        for key in single_obs:
            np.testing.assert_allclose(obs[key][1], single_obs[key], atol=1e-6)
        assert rewards[1] == pytest.approx(single_reward)
    assert truncated.all() and not terminated.any() and info["is_success"].shape == (2,)
    obs, rewards, *_ = venv.step(actions)  # the step after the end resets
    np.testing.assert_array_equal(parts(obs)["joint_target"], np.tile(task.HOME_Q, (2, 1)))


def test_simulate_is_pure_and_is_the_env_step():
    env = gym.make(LEAP).unwrapped
    env.reset(seed=1)
    before = env.state
    after = env.simulate(before, torch.as_tensor(THUMB_CURL_RAD)[None])
    assert all(torch.equal(x, y) for x, y in zip(env.state, before))
    obs, *_ = env.step(THUMB_CURL)
    np.testing.assert_allclose(parts(obs)["joint_pos"], after.hand[0].numpy(), atol=1e-6)
    np.testing.assert_allclose(parts(obs)["object_vel"], after.velocity[0].numpy(), atol=1e-6)
    assert (parts(obs)["joint_target"] == np.clip(task.HOME_Q + THUMB_CURL_RAD, *task.joint_limits())).all()
    nan = before._replace(position=before.position + float("nan"))
    for state, action, what in ((nan, torch.zeros(1, 16), "state.position"), (before, torch.zeros(2, 16), "action"),
                                (before, torch.full((1, 16), float("nan")), "action"),
                                (before._replace(hand=before.hand[:, :3], hand_target=before.hand_target[:, :3]),
                                 torch.zeros(1, 16), "state"), (before, np.zeros((1, 16)), "action")):
        with pytest.raises(ValueError, match=what):
            env.simulate(state, action)


def test_compiled_physics_matches_eager():
    """compile=True runs the same physics through torch.compile (one compilation, about 20-60 s)."""
    eager, compiled = gym.make(LEAP), gym.make(LEAP, compile=True)
    eager.reset(seed=5)
    compiled.reset(seed=5)
    for _ in range(3):
        obs_e, *_ = eager.step(THUMB_CURL)
        obs_c, *_ = compiled.step(THUMB_CURL)
    for key in obs_e:
        np.testing.assert_allclose(obs_c[key], obs_e[key], atol=1e-5)
    assert compiled.unwrapped.core.compiled and not eager.unwrapped.core.compiled


def test_reset_is_settled_and_a_thumb_push_moves_the_cube():
    """The reset lets the object settle into its contacts (it sinks 1.3 mm on the learned cube's
    soft K): it then moves less than 0.01 mm and 0.05 degrees over 2 s without action."""
    env = gym.make(LEAP)
    obs, _ = env.reset(seed=2)
    start, start_quat = parts(obs)["object_pos"].copy(), obs["achieved_goal"].copy()
    for _ in range(60):  # 2 s without action
        obs, reward, terminated, *_ = env.step(np.zeros(16, np.float32))
    assert np.abs(parts(obs)["object_pos"] - start).max() < 1e-5 and not terminated
    assert task.angle_error(obs["achieved_goal"], start_quat) < math.radians(0.05)
    for _ in range(60):  # the thumb curls into the cube and shoves it along +y
        obs, *_ = env.step(THUMB_CURL)
    assert parts(obs)["object_pos"][1] - start[1] > 0.005
    assert parts(obs)["object_pos"][2] == pytest.approx(start[2], abs=1e-3)  # still on the palm


@pytest.mark.parametrize("name", ["cup", "lblock"])
def test_learned_bundles_load_and_rest_on_the_palm(name):
    """The other learned world models bundled for `cgwm bench mpc` (scripts/learn_world_model.sh;
    the default cube's are checked above, in the same reset and steps) load with
    learned, physical parameters, and their object rests on the open hand: settled by the reset
    (they sink 1.0-1.6 mm on their soft learned K), it stays within 0.01 mm for 2 s."""
    from cgwm_env.envs.leap.world_model_env import DEFAULT_WORLD_MODEL
    from cgwm_env.learn.world_model import WorldModel
    from cgwm_env.physics.hand import hand_scene

    model = WorldModel.load(DEFAULT_WORLD_MODEL.parent / name).model(**hand_scene())
    assert model.params.mu.item() > 0.3 and model.params.stiffness.item() > 1.0  # moved from mu 0.2
    env = gym.make(LEAP, model=model)
    obs, _ = env.reset(seed=2)
    settled = parts(obs)["object_pos"].copy()
    for _ in range(60):
        obs, _, terminated, *_ = env.step(np.zeros(16, np.float32))
    assert np.abs(parts(obs)["object_pos"] - settled).max() < 1e-5 and not terminated


def test_free_fingers_track_targets_like_the_mujoco_twin():
    """With nothing touched, the quasi-static joints (spring, damping, torque limit, gravity, dry
    friction) follow the same targets as MuJoCo's position actuators to within 0.1 rad over 1.5 s."""
    wm, twin = gym.make(LEAP), gym.make(TWIN)
    wm.reset(seed=4)
    twin.reset(seed=4)
    action = np.zeros(16, np.float32)
    action[[0, 2, 3, 8, 10, 11]] = 1.0  # curl index and ring fingers, away from the cube
    worst = 0.0
    for _ in range(45):
        obs_wm, *_ = wm.step(action)
        obs_twin, *_ = twin.step(action)
        worst = max(worst, np.abs(parts(obs_wm)["joint_pos"] - parts(obs_twin)["joint_pos"]).max())
    assert worst < 0.1
    assert parts(obs_wm)["joint_pos"][2] > 1.0  # the fingers did move


def test_hand_step_gradcheck():
    """One physics step with a fingertip pressing the cube, differentiated in float64 with respect
    to the object's pose and velocity, the joints and their targets, and theta."""
    model = dataclasses.replace(handmade_cube_model(),
                                contact=ContactSettings(gain_mode="plain", softplus_sharpness=300.0))
    model = dataclasses.replace(model, gaussians=model.gaussians.to(torch.float64), params=type(model.params)(
        *(t.double() for t in model.params.tensors())), hand=HandModel(max_contacts=16).to(torch.float64))
    # Curl the thumb on from a bent pose until it pushes the cube.
    bent = torch.zeros(1, 16, dtype=torch.float64)
    bent[0, [13, 14, 15]] = 1.2
    state = State.make(torch.tensor([[-0.055, 0.035, 0.0595]], dtype=torch.float64), hand=bent)
    prepared = prepare(model, 1)
    curl = torch.as_tensor(THUMB_CURL_RAD, dtype=torch.float64)[None]
    for _ in range(20):
        state = control_step(model, prepared, state, curl, 16)
    assert (state.position[0, 1] > 0.036).item()  # in contact: the cube has started to move
    # Targets of the other fingers ahead of them, so that no drive sits on the dry-friction kink.
    state = state._replace(hand_target=state.hand_target + 0.05 * (torch.arange(16) < 12))

    def one_step(position, velocity, hand_joints, hand_target, *theta):
        m = dataclasses.replace(model, params=type(model.params)(*theta))
        s = state._replace(position=position, velocity=velocity, hand=hand_joints, hand_target=hand_target)
        out = step(m, s, torch.zeros_like(hand_joints))
        return out.position, out.velocity, out.omega, out.hand

    inputs = [state.position, state.velocity, state.hand, state.hand_target, *model.params.tensors()]
    inputs = [t.detach().clone().requires_grad_() for t in inputs]
    assert torch.autograd.gradcheck(one_step, inputs, eps=1e-7, atol=1e-5, rtol=1e-3)


def test_model_without_a_hand_is_refused():
    with pytest.raises(ValueError, match="model"):
        gym.make(LEAP, model=dataclasses.replace(handmade_cube_model(), hand=None))
    with pytest.raises(ValueError, match="state.hand"):
        step(dataclasses.replace(handmade_cube_model(), hand=HandModel()), State.make(torch.zeros(1, 3)))


def test_predict_frames_draws_the_plan():
    """The world model's frames for an open-loop plan (what `cgwm play` compares recordings with)."""
    from cgwm_env.envs.leap.world_model_env import predict_frames
    from cgwm_env.render.camera import Camera, look_at

    cam = Camera.from_fovy(np.radians(45.0), 48, 36, look_at((0.2, -0.12, 0.25), (-0.03, 0.0, 0.03)))
    targets = np.zeros((4, 16), np.float32)
    targets[:, [13, 14, 15]] = np.linspace(0.0, 0.3, 4)[:, None]
    frames = predict_frames(targets, cam)
    assert frames.shape == (4, 36, 48, 3) and frames.dtype == np.uint8
    assert (frames[-1] != frames[0]).any()  # the thumb moved
    np.testing.assert_array_equal(predict_frames(targets, cam), frames)
    with pytest.raises(ValueError, match="joint_targets"):
        predict_frames(np.zeros((4, 15)), cam)
    with pytest.raises(ValueError, match="frame_dt"):
        predict_frames(targets, cam, frame_dt=0.001)


def test_predict_frames_names_a_diverging_model():
    """Contact gains far past the step's stability (K 1e7 N/m at 480 Hz) blow the resting cube
    away to non-finite states: a PredictionDiverged (a ValueError naming `model`) with its frame,
    not a NaN image or an error from deep inside the kinematics."""
    from cgwm_env.envs.leap.world_model_env import PredictionDiverged, predict_frames
    from cgwm_env.render.camera import Camera, look_at

    cam = Camera.from_fovy(np.radians(45.0), 16, 12, look_at((0.2, -0.12, 0.25), (-0.03, 0.0, 0.03)))
    model = dataclasses.replace(handmade_cube_model(), hand=HandModel(), ground_height=None)
    stiff = dataclasses.replace(model.params, log_stiffness=torch.tensor(math.log(1e7)))
    model = dataclasses.replace(model, params=stiff)
    with pytest.raises(PredictionDiverged, match="model: .*non-finite at frame") as err:
        predict_frames(np.zeros((30, 16), np.float32), cam, model=model)
    assert 1 <= err.value.frame < 30


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU here")
def test_the_hand_scene_runs_on_cuda_as_on_the_cpu():
    """The bundled cube on the hand, 2 s of a thumb push (60 control steps), float64 on both devices."""
    from cgwm_env.envs.leap.world_model_env import LeapCore

    start = LeapCore(1, default_model(), 8, False).upright_start(torch.as_tensor(task.HOME_Q)[None])
    ends = []
    for device in ("cpu", "cuda"):
        model = default_model().to(device, torch.float64)
        state = State(*(t.to(device, torch.float64) for t in start))
        prepared, action = prepare(model, 1), torch.as_tensor(THUMB_CURL_RAD, dtype=torch.float64, device=device)[None]
        for _ in range(60):
            state = control_step(model, prepared, state, action, 16)
        ends.append((state.position.cpu(), state.hand.cpu()))
    assert (ends[0][0] - start.position.double()).norm() > 0.003  # the thumb moved the cube
    for cpu, cuda in zip(*ends):  # m and rad; contacts amplify rounding: 19 um apart on an H200
        torch.testing.assert_close(cuda, cpu, atol=1e-4, rtol=0)
