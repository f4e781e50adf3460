"""The LEAP Hand reorientation task (cgwm_env.envs.leap.task), its MuJoCo twin and `cgwm synth --scenario leap`."""

import math
import shutil

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import cgwm_env  # noqa: F401  (registers the environments)
from cgwm_env.cli import main
from cgwm_env.data import synth
from cgwm_env.data.dataset import load_dataset
from cgwm_env.envs.leap import clips
from cgwm_env.envs.leap import task as leap_task
from cgwm_env.envs.leap.mujoco_env import LeapHandMujocoEnv
from cgwm_env.physics import hand, hand_mjcf

TWIN = "ContactGaussian-LeapHandMuJoCo-v1"
IDENTITY = np.array([1.0, 0.0, 0.0, 0.0])
Z90 = np.array([math.cos(math.pi / 4), 0.0, 0.0, math.sin(math.pi / 4)])
NO_ACTION = np.zeros(16, np.float32)


def parts(obs: dict) -> dict:
    return leap_task.observation_parts(obs["observation"])


def test_task_functions_on_known_quaternions():
    assert leap_task.orientation_error(IDENTITY, Z90) == pytest.approx(0.5)
    assert leap_task.orientation_error(Z90, -Z90) == pytest.approx(0.0, abs=1e-12)
    assert leap_task.orientation_error(IDENTITY, [0.0, 1.0, 0.0, 0.0]) == pytest.approx(1.0)  # 180 degrees
    batch = np.stack([IDENTITY, Z90, -IDENTITY])
    np.testing.assert_allclose(leap_task.orientation_error(batch, IDENTITY), [0.0, 0.5, 0.0], atol=1e-12)
    dense, sparse = leap_task.GoalSettings(), leap_task.GoalSettings("sparse", 0.1)
    np.testing.assert_allclose(dense.reward(batch, IDENTITY), [1.0, -0.5, 1.0], atol=1e-12)
    np.testing.assert_allclose(sparse.reward(batch, IDENTITY), [0.0, -1.0, 0.0], atol=1e-12)
    # 0.4 rad is within the task's 23.1 degrees (error 1 - cos^2(0.2) = 0.039 < 0.04), 0.41 rad is not
    assert leap_task.SUCCESS_ANGLE == pytest.approx(0.4027, abs=1e-4)
    turns = np.stack([leap_task.yaw_quat(0.4), leap_task.yaw_quat(0.41), leap_task.yaw_quat(0.09)])
    np.testing.assert_array_equal(dense.within(turns, IDENTITY), [True, False, True])
    np.testing.assert_array_equal(sparse.within(turns, IDENTITY), [False, False, True])
    info = dense.info(turns, IDENTITY, np.array([19, 20, 0]), np.zeros(3, bool))
    np.testing.assert_array_equal(info["is_success"], [False, True, False])
    np.testing.assert_array_equal(info["within_0.1_rad"], [False, False, True])
    np.testing.assert_allclose(info["angle_error"], [0.4, 0.41, 0.09], atol=1e-6)
    np.testing.assert_allclose(leap_task.yaw_quat(math.pi / 2), Z90, atol=1e-7)
    start = np.array([*leap_task.OBJECT_XY, 0.06])
    cases = np.array([start, start - [0, 0, 0.049], start - [0, 0, 0.051], start + [0.0, 0.079, 0.0],
                      start + [0.081, 0.0, 0.0]])
    np.testing.assert_array_equal(leap_task.dropped(cases, start), [False, False, True, False, True])
    with pytest.raises(ValueError, match="quat"):
        leap_task.orientation_error(np.zeros(3), IDENTITY)
    with pytest.raises(ValueError, match="goal"):
        dense.reward(IDENTITY, [np.nan, 0, 0, 1])
    with pytest.raises(ValueError, match="start_pos"):
        leap_task.dropped(start, start[:2])


def test_sample_episode_turns_the_goal_a_quarter():
    rng = np.random.default_rng(0)
    signs = []
    for _ in range(200):
        yaw0, goal = leap_task.sample_episode(rng)
        assert -math.pi / 2 <= yaw0 <= math.pi / 2 and goal.shape == (4,) and goal.dtype == np.float32
        turn = 2.0 * math.atan2(goal[3], goal[0]) - yaw0  # goal yaw - yaw0
        signs.append(np.sign(turn))
        assert abs(turn) == pytest.approx(math.pi / 2, abs=1e-5)
        assert leap_task.orientation_error(leap_task.yaw_quat(yaw0), goal) == pytest.approx(0.5, abs=1e-6)
    assert 60 < signs.count(1.0) < 140
    with pytest.raises(ValueError, match="rng"):
        leap_task.sample_episode(0)


def test_spaces_and_action_checks():
    space = leap_task.observation_space(None)
    assert set(space) == {"observation", "achieved_goal", "desired_goal"}
    assert space["observation"].shape == (leap_task.OBSERVATION_SIZE,) == (45,)
    low = parts({"observation": space["observation"].low})
    np.testing.assert_array_equal(low["joint_pos"], hand.LOWER.numpy())
    assert np.isfinite(space["observation"].low).all() and space["desired_goal"].shape == (4,)
    assert leap_task.observation_space(32)["rgb"].shape == (32, 32, 3)
    raw, normalized = leap_task.GoalSettings(normalized_actions=False), leap_task.GoalSettings()
    assert raw.action_space().high[0] == np.float32(0.05) and normalized.action_space().high[0] == 1.0
    ok = np.full(16, leap_task.ACTION_BOUND + 5e-7, np.float32)
    np.testing.assert_array_equal(raw.joint_changes(ok), ok)  # rounding is let through, not clamped
    np.testing.assert_allclose(normalized.joint_changes(np.full(16, -0.5, np.float32)), -0.025)
    np.testing.assert_allclose(normalized.env_action(np.full(16, 0.05)), 1.0)
    for settings, bad, what in ((raw, np.zeros(15), r"shape \(16,\)"), (raw, np.full(16, np.nan), "finite"),
                                (raw, np.full(16, 0.06), r"within \+-0.05"), (normalized, np.full(16, 1.1), r"within \+-1")):
        with pytest.raises(ValueError, match=f"action: .*{what}"):
            settings.joint_changes(bad)
    target = leap_task.next_target(hand.UPPER.numpy() - 0.01, np.full(16, 0.05, np.float32))
    np.testing.assert_array_equal(target, hand.UPPER.numpy())  # the joint range is the plant's
    for kwargs, what in (({"reward_type": "shaped"}, "reward_type"), ({"rotation_threshold": 0.0}, "rotation_threshold"),
                         ({"rotation_threshold": float("nan")}, "rotation_threshold"),
                         ({"normalized_actions": "yes"}, "normalized_actions")):
        with pytest.raises(ValueError, match=what):
            leap_task.GoalSettings(**kwargs)


def test_constants_match_the_scene():
    model = mujoco.MjModel.from_xml_path(str(hand_mjcf.SCENE_XML))
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    np.testing.assert_allclose(model.body("object").pos[:2], leap_task.OBJECT_XY, atol=1e-7)
    palm = model.geom("palm_face").id
    top = data.geom_xpos[palm, 2] + np.abs(data.geom_xmat[palm].reshape(3, 3)[2]) @ model.geom_size[palm]
    assert top == pytest.approx(hand_mjcf.PALM_Z, abs=1e-9)
    assert leap_task.MAX_EPISODE_STEPS == gym.spec(TWIN).max_episode_steps == 500


@pytest.fixture(scope="module")
def twin():
    env = gym.make(TWIN)
    yield env
    env.close()


def test_twin_passes_gymnasiums_checker():
    env = gym.make(TWIN, render_mode="rgb_array", image_size=48)
    check_env(env.unwrapped, skip_render_check=False)
    env.reset(seed=0)
    image = env.render()
    assert image.shape == (48, 48, 3) and image.dtype == np.uint8
    colourful = (image.max(-1).astype(int) - image.min(-1)) > 60  # the cube's parts; hand, floor and sky are grey
    assert colourful.sum() > 20
    env.close()
    seen = gym.make(TWIN, image_obs=True, image_size=48, object="duck", render_mode="rgb_array")
    check_env(seen.unwrapped)
    obs, _ = seen.reset(seed=0)
    np.testing.assert_array_equal(obs["rgb"], seen.render())
    seen.close()


def test_seeding_is_deterministic():
    actions = np.random.default_rng(1).uniform(-1.0, 1.0, (8, 16)).astype(np.float32)
    runs = []
    for seed in (3, 3, 4):
        env = gym.make(TWIN)
        obs, _ = env.reset(seed=seed)
        trace = [obs]
        for a in actions:
            trace.append(env.step(a)[0])
        runs.append({k: np.stack([o[k] for o in trace]) for k in obs})
    for key in runs[0]:
        np.testing.assert_array_equal(runs[0][key], runs[1][key])
    assert not np.allclose(runs[0]["desired_goal"], runs[2]["desired_goal"])


def test_bad_actions_and_arguments_raise(twin):
    twin.reset(seed=0)
    for bad in (np.full(16, np.nan, np.float32), np.zeros(15, np.float32), np.zeros((2, 16), np.float32),
                np.full(16, 1.07, np.float32)):
        with pytest.raises(ValueError, match="action"):
            twin.step(bad)
    for kwargs, name in (({"object": "teapot"}, "object"), ({"render_mode": "human"}, "render_mode"),
                         ({"image_size": 8}, "image_size"), ({"image_size": 2.5}, "image_size"),
                         ({"image_obs": 1}, "image_obs"), ({"image_obs": "yes"}, "image_obs"),
                         ({"reward_type": "shaped"}, "reward_type"), ({"rotation_threshold": -1}, "rotation_threshold"),
                         ({"normalized_actions": None}, "normalized_actions")):
        with pytest.raises(ValueError, match=name):
            LeapHandMujocoEnv(**kwargs)
    env = twin.unwrapped
    pose = dict(joint_pos=np.zeros(16), joint_target=np.zeros(16), object_pos=[-0.055, 0.035, 0.06],
                object_quat=[1, 0, 0, 0])
    for key, bad in (("joint_pos", np.full(16, 3.0)), ("joint_target", np.zeros(12)), ("object_pos", [0, 0, np.inf]),
                     ("object_quat", [1, 1, 0, 0])):
        with pytest.raises(ValueError, match=key):
            env.set_state(**{**pose, key: bad})


def test_joints_follow_their_targets(twin):
    obs, _ = twin.reset(seed=0)
    curl = NO_ACTION.copy()
    curl[2] = 1.0  # if_pip, the index finger's middle joint: 0.05 rad per step (normalised actions)
    for _ in range(10):
        obs, *_ = twin.step(curl)
    np.testing.assert_allclose(parts(obs)["joint_target"], np.eye(16)[2] * 0.5, atol=1e-6)
    assert 0.15 < parts(obs)["joint_pos"][2] < 0.5  # following, behind the target (speed ~1 rad/s)
    for _ in range(15):
        obs, *_ = twin.step(NO_ACTION)
    assert parts(obs)["joint_pos"][2] == pytest.approx(0.5, abs=0.03)
    assert np.abs(np.delete(parts(obs)["joint_pos"], 2)).max() < 0.05  # the others hold (gravity sags them a little)
    spread = NO_ACTION.copy()
    spread[1] = 1.0  # if_rot runs into its upper limit: the target stops there
    for _ in range(30):
        obs, *_ = twin.step(spread)
    assert parts(obs)["joint_target"][1] == hand.UPPER[1]
    assert twin.observation_space.contains(obs)


def test_cube_stays_on_the_palm_without_action(twin):
    obs, info = twin.reset(seed=2)
    start, quat = parts(obs)["object_pos"], obs["achieved_goal"]
    assert start[2] == pytest.approx(hand_mjcf.PALM_Z + 0.025, abs=5e-4)  # resting on the palm
    np.testing.assert_allclose(start[:2], leap_task.OBJECT_XY, atol=1e-4)
    yaw = 2.0 * math.atan2(quat[3], quat[0])
    assert info["orientation_error"] == pytest.approx(0.5, abs=1e-3)  # a quarter turn from the goal
    m, d = twin.unwrapped.mj_model, twin.unwrapped.mj_data
    cube, palm = m.body("object").id, m.body("palm").id
    for _ in range(60):  # 2 s
        obs, reward, terminated, truncated, info = twin.step(NO_ACTION)
        assert not terminated and not truncated
        touching = {int(m.geom_bodyid[g]) for c in d.contact[:d.ncon] for g in (c.geom1, c.geom2)}
        assert cube in touching and touching <= {cube, palm}  # it rests on the palm; no finger touches it at HOME_Q
    np.testing.assert_allclose(parts(obs)["object_pos"], start, atol=1e-3)
    assert abs(2.0 * math.atan2(obs["achieved_goal"][3], obs["achieved_goal"][0]) - yaw) < math.radians(0.5)
    assert np.abs(parts(obs)["object_vel"]).max() < 1e-3 and np.abs(parts(obs)["object_omega"]).max() < 1e-2
    assert reward == pytest.approx(-info["orientation_error"]) and not info["is_success"]


def test_set_state_success_and_drop(twin):
    obs, _ = twin.reset(seed=0)
    env = twin.unwrapped
    start = parts(obs)["object_pos"].astype(np.float64)
    obs = env.set_state(parts(obs)["joint_pos"], parts(obs)["joint_target"], start, obs["desired_goal"])
    np.testing.assert_allclose(obs["achieved_goal"], obs["desired_goal"], atol=1e-6)
    info = {"is_success": False}
    for _ in range(leap_task.SUCCESS_HOLD):  # success: at the goal for SUCCESS_HOLD steps in a row
        assert not info["is_success"]
        obs, reward, terminated, _, info = twin.step(NO_ACTION)
        assert reward > 0.9 and not terminated and info["within_threshold"]
        assert reward == env.compute_reward(obs["achieved_goal"], obs["desired_goal"], info)
    assert info["is_success"]
    env.set_state(parts(obs)["joint_pos"], parts(obs)["joint_target"], start + [0.0, 0.1, 0.0],
                  obs["achieved_goal"])  # off the palm
    obs, _, terminated, _, info = twin.step(NO_ACTION)
    assert terminated and info["dropped"] and env.compute_terminated(obs["achieved_goal"], obs["desired_goal"], info)


def test_vector_env_steps_copies():
    envs = gym.make_vec(TWIN, num_envs=2)
    obs, _ = envs.reset(seed=0)
    assert obs["observation"].shape == (2, 45) and not np.allclose(obs["desired_goal"][0], obs["desired_goal"][1])
    obs, reward, terminated, truncated, info = envs.step(np.zeros((2, 16), np.float32))
    assert reward.shape == (2,) and info["orientation_error"].shape == (2,)
    envs.close()


@pytest.fixture(scope="module")
def leap_sets(tmp_path_factory):
    out = tmp_path_factory.mktemp("leap")
    assert main(["synth", "--scenario", "leap", "--object", "cube", "--out", str(out), "--size", "32"]) == 0
    return out


def test_synth_leap_writes_hand_trajectories(leap_sets):
    train, test = load_dataset(leap_sets / "train_000"), load_dataset(leap_sets / "test_000")
    assert (len(train), len(test)) == (synth.TRAIN_FRAMES, synth.TEST_FRAMES)
    for data in (train, test):
        s, T = data.states, len(data)
        assert data.meta["scenario"] == "leap" and data.meta["hand"]["joint_names"] == list(hand_mjcf.JOINT_NAMES)
        assert s["joint_pos"].shape == s["joint_target"].shape == (T, 16) and s["joint_pos"].dtype == np.float32
        assert np.abs(np.diff(s["joint_target"], axis=0)).max() <= leap_task.ACTION_BOUND + 1e-6
        assert np.abs(s["joint_pos"] - s["joint_pos"][0]).max() > 0.01  # the hand moves
        assert data.hand_masks.shape == data.masks.shape and (data.hand_masks.sum((1, 2)) > 20).all()
        assert (data.masks.sum((1, 2)) > 10).all() and not (data.masks * data.hand_masks).any()
        q = s["object_quat"]
        moved = np.linalg.norm(s["object_pos"] - s["object_pos"][0], axis=1).max()
        turned = 2.0 * np.arccos(np.clip(np.abs(q @ q[0]), 0.0, 1.0)).max()
        assert moved >= clips.LEAP_MIN_MOTION[0] or turned >= clips.LEAP_MIN_MOTION[1]
    assert not np.allclose(train.states["joint_target"][-1], test.states["joint_target"][-1])


def _break(src, dst, edit):
    shutil.copytree(src, dst)
    edit(dst)
    return dst


def _short_targets(path):
    with np.load(path / "states.npz", allow_pickle=False) as npz:
        states = dict(npz)
    states["joint_target"] = states["joint_target"][:, :15]
    np.savez(path / "states.npz", **states)


def test_broken_leap_dataset_names_the_problem(leap_sets, tmp_path):
    src = leap_sets / "train_000"
    with pytest.raises(ValueError, match=r"joint_target: expected shape \(15, 16\)"):
        load_dataset(_break(src, tmp_path / "a", _short_targets))
    with pytest.raises(ValueError, match=r"hand_masks/00004\.png: missing frame 4"):
        load_dataset(_break(src, tmp_path / "b", lambda p: (p / "hand_masks" / "00004.png").unlink()))
