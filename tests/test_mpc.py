"""Gradient-based MPC (controllers.mpc) and the reorientation task (controllers.tasks)."""

import dataclasses
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import cgwm_env  # noqa: F401  (registers the environments)
from cgwm_env.config import config_file, settings_from_yaml
from cgwm_env.envs.leap import task
from cgwm_env.physics.model import State
from controllers.mpc import MPCSettings, ReorientationMPC, load_settings, planning_model
from controllers.tasks import state_from_observation

WORLD, TWIN = "ContactGaussian-LeapHand-v1", "ContactGaussian-LeapHandMuJoCo-v1"
RAD = {"normalized_actions": False}  # the envs take the planner's joint-target changes (rad) as they are

# The planner without its pre-grasp, regrasp, settling and lead bound: what the unit tests single out.
BARE = dataclasses.replace(MPCSettings(), pregrasp=False, regrasp_after=0, settle_error=0.0, settle_weight=1.0,
                           max_lead=0.0, iterations=2, step_size=0.02, release_steps=15)


@pytest.fixture(scope="module")
def world():
    env = gym.make(WORLD, **RAD).unwrapped
    env.reset(seed=0)
    return env


def test_the_shipped_config_file_shows_the_defaults_and_an_override_is_checked(tmp_path):
    """configs/mpc.yaml lists every key at MPCSettings' default (the planner `cgwm demo` runs); a
    file of overrides changes those keys only, and an unknown key is named."""
    assert settings_from_yaml(MPCSettings, config_file("mpc.yaml")) == MPCSettings()
    override = tmp_path / "override.yaml"
    override.write_text("horizon: 4\nbetas: [0.5, 0.8]\n")
    settings, source = load_settings(override)
    assert settings == dataclasses.replace(MPCSettings(), horizon=4, betas=(0.5, 0.8)) and source == str(override)
    assert load_settings() == (MPCSettings(), "MPCSettings defaults")
    override.write_text("horizon: 3\nlearning_rate: 0.1\n")
    with pytest.raises(ValueError, match="learning_rate: unknown setting in .*override.yaml"):
        load_settings(override)
    with pytest.raises(ValueError, match="horizon"):
        MPCSettings(horizon=0)


def test_planning_model_bounds_plain_gains_and_keeps_a_resting_cube_still(world):
    """The coarse copy (physics at 1/60 s) keeps the learned cube resting on the open hand within
    1 cm over 1 s (0.1 s is a plan's horizon); which of the ~36 palm contacts the broad phase keeps
    moves it by millimetres, the full model keeps it within 0.1 mm (test_leap). At plan_dt 1/30 s
    the cube drifted 9 mm to metres; with the learned K scaled by (dt / plan_dt)^2 / 2 instead of
    bounded it sank through the palm (12 cm)."""
    settings = MPCSettings()
    coarse, substeps = planning_model(world.model, settings)
    assert substeps * coarse.dt == pytest.approx(task.CONTROL_DT)
    from cgwm_env.physics.simulator import control_step, prepare

    state, prepared = world.state, prepare(coarse, 1)
    with torch.no_grad():
        for _ in range(30):  # 1 s
            state = control_step(coarse, prepared, state, torch.zeros(1, 16), substeps)
    assert (state.position - world.state.position).norm() < 1e-2


def test_planning_model_bounds_the_summed_contact_gains(world):
    """K' = min(K, stiffness_limit m / (rows plan_dt^2)) and D' = min(damping_scale D dt / plan_dt,
    damping_limit m / (rows plan_dt)) over the rows of max_contacts contacts: a gain under its
    bound is kept, a tenfold one is cut to the bound."""
    settings = MPCSettings()
    rows = settings.max_contacts * world.model.contact.n_dirs
    mass = float(world.model.params.mass)
    stiffness_bound = settings.stiffness_limit * mass / (settings.plan_dt ** 2 * rows)
    damping_bound = settings.damping_limit * mass / (settings.plan_dt * rows)
    scaled = settings.damping_scale * world.model.dt / settings.plan_dt * float(world.model.params.damping)
    params = world.model.params
    soft = dataclasses.replace(params, log_stiffness=torch.tensor(math.log(0.5 * stiffness_bound)))
    coarse, _ = planning_model(dataclasses.replace(world.model, params=soft), settings)
    assert scaled < damping_bound and float(coarse.params.damping) == pytest.approx(scaled, rel=1e-5)
    assert float(coarse.params.stiffness) == pytest.approx(0.5 * stiffness_bound, rel=1e-5)
    heavy = dataclasses.replace(params, log_stiffness=torch.tensor(math.log(10 * stiffness_bound)),
                                log_damping=params.log_damping + math.log(10.0))
    coarse, _ = planning_model(dataclasses.replace(world.model, params=heavy), settings)
    assert 10 * scaled > damping_bound and float(coarse.params.damping) == pytest.approx(damping_bound, rel=1e-5)
    assert float(coarse.params.stiffness) == pytest.approx(stiffness_bound, rel=1e-5)
    for name in ("damping_limit", "stiffness_limit"):
        with pytest.raises(ValueError, match=name):
            MPCSettings(**{name: 0.0})


def test_plan_respects_the_action_bound(world):
    bound = 0.01
    planner = ReorientationMPC(world.model, dataclasses.replace(BARE, step_size=0.5, horizon=2,
                                                                 iterations=2), action_bound=bound)
    goal = task.yaw_quat(2.0)
    actions = torch.stack([planner.plan(world.state, goal) for _ in range(3)])
    assert actions.shape == (3, 16) and torch.isfinite(actions).all()
    assert actions.abs().max() <= bound + 1e-7
    assert (actions.abs() > 0.99 * bound).any()  # the large steps hit the bound: it is enforced, not idle
    assert planner.plan_actions.abs().max() <= bound + 1e-7
    assert len(planner.solve_times) == 3


def test_plan_keeps_the_targets_within_max_lead_of_the_joints(world):
    """A command leaves no joint's target farther than max_lead from its measured position: a
    target 0.08 rad ahead of its joint comes back to 0.05 (within one action bound), the others
    stay within 0.05 whatever the plan wants."""
    max_lead, bound = 0.05, 0.05
    settings = dataclasses.replace(BARE, step_size=0.5, horizon=2, iterations=2, max_lead=max_lead)
    planner = ReorientationMPC(world.model, settings, action_bound=bound)
    ahead = world.state.hand_target.clone()
    ahead[0, 0] = world.state.hand[0, 0] + 0.08
    state = world.state._replace(hand_target=ahead)
    action = planner.plan(state, task.yaw_quat(2.0))
    lead = ahead[0] + action - state.hand[0]
    assert lead.abs().max() <= max_lead + 1e-6
    assert float(lead[0]) == pytest.approx(max_lead, abs=1e-6) and action.abs().max() <= bound + 1e-7
    unbounded = ReorientationMPC(world.model, dataclasses.replace(settings, max_lead=0.0), action_bound=bound)
    assert (ahead[0] + unbounded.plan(state, task.yaw_quat(2.0)) - state.hand[0]).abs().max() > max_lead + 1e-3
    with pytest.raises(ValueError, match="max_lead"):
        MPCSettings(max_lead=-0.1)


def test_nan_state_and_impossible_goals_raise_before_planning(world):
    planner = ReorientationMPC(world.model, dataclasses.replace(BARE, horizon=1, iterations=1))
    goal = task.yaw_quat(1.0)
    bad = world.state._replace(position=torch.tensor([[math.nan, 0.0, 0.05]]))
    with pytest.raises(ValueError, match="position"):
        planner.plan(bad, goal)
    bad = world.state._replace(hand=torch.full((1, 16), math.nan))
    with pytest.raises(ValueError, match="hand"):
        planner.plan(bad, goal)
    with pytest.raises(ValueError, match="goal"):
        planner.plan(world.state, [1.0, 1.0, 0.0, 0.0])  # not a unit quaternion
    with pytest.raises(ValueError, match="goal"):
        planner.plan(world.state, [1.0, 0.0, 0.0])  # wrong shape
    with pytest.raises(ValueError, match="goal"):
        planner.plan(world.state, [math.nan, 0.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="hold_position"):
        planner.plan(world.state, goal, hold_position=[0.0, math.inf, 0.0])
    assert planner.solve_times == [] and planner.plan_actions.abs().max() == 0  # nothing was planned
    with pytest.raises(ValueError, match="model"):
        ReorientationMPC(dataclasses.replace(world.model, hand=None))


def test_success_needs_twenty_consecutive_steps_below_threshold():
    streak = 0
    for _ in range(19):
        streak = task.success_streak(streak, True)
        assert not task.is_success(streak)
    streak = task.success_streak(streak, False)  # a step outside the threshold starts the count again
    for _ in range(20):
        assert not task.is_success(streak)
        streak = task.success_streak(streak, True)
    assert task.is_success(streak)
    np.testing.assert_array_equal(task.success_streak([3, 3], [True, False]), [4, 0])  # batched
    assert task.angle_error(task.yaw_quat(0.3), task.yaw_quat(0.0)) == pytest.approx(0.3, abs=1e-6)


def test_state_from_observation_differences_the_object_pose():
    omega = np.array([0.0, 0.0, 1.5])  # rad/s about +z

    def observation(pos, quat) -> dict:
        parts = {"joint_pos": np.full((1, 16), 0.1), "joint_target": np.full((1, 16), 0.2), "object_pos": [pos],
                 "object_quat": [quat], "object_vel": np.zeros((1, 3)), "object_omega": np.zeros((1, 3))}
        return {k: v[0] for k, v in task.observation(parts, [task.yaw_quat(1.0)]).items()}

    first = observation([0.0, 0.0, 0.06], task.yaw_quat(0.2))
    second = observation([0.003, 0.0, 0.06], task.yaw_quat(0.2 + omega[2] * task.CONTROL_DT))
    state = state_from_observation(second, first)
    assert isinstance(state, State)
    np.testing.assert_allclose(state.velocity[0].numpy(), [0.09, 0.0, 0.0], atol=1e-4)
    np.testing.assert_allclose(state.omega[0].numpy(), omega, atol=1e-3)
    assert state.hand_target[0, 0] == pytest.approx(0.2)
    assert state_from_observation(second).omega.abs().max() == 0


def test_short_reorientation_in_the_world_model_succeeds():
    """The easy case: the goal is the start yaw turned by +40 degrees (error 0.117 at the start;
    below 0.04 needs 17 degrees of turning) on seed 0, in the world model itself (no model
    mismatch), from the open hand (no pre-grasp), within 100 control steps (3.3 s) including the
    20 steps held. The cube slides about 4 cm on the palm while it turns (measured), so the test
    asks only that it stays on the palm."""
    env = gym.make(WORLD, **RAD).unwrapped
    obs, _ = env.reset(seed=0)
    start = task.observation_parts(obs["observation"])["object_pos"].copy()
    yaw0 = 2 * math.atan2(float(obs["achieved_goal"][3]), float(obs["achieved_goal"][0]))
    goal = task.yaw_quat(yaw0 + math.radians(40.0))
    assert task.orientation_error(obs["achieved_goal"], goal) > 0.1
    planner = ReorientationMPC(env.model, dataclasses.replace(MPCSettings(), pregrasp=False))
    streak = 0
    for _ in range(100):
        action = planner.plan(env.state, goal, start)
        obs, *_ = env.step(action.numpy())
        streak = task.success_streak(streak, env.goal_settings.within(obs["achieved_goal"], goal))
        if task.is_success(streak):
            break
    assert task.is_success(streak)
    assert not task.dropped(task.observation_parts(obs["observation"])["object_pos"], start)


def test_pregrasp_moves_the_targets_through_the_cage_at_the_bound_before_planning(world):
    """The first plan computes the cage around the object (controllers.grasp); until its last
    waypoint is reached each step moves the targets towards the next waypoint at the action bound,
    without planning; reset() forgets the cage."""
    planner = ReorientationMPC(world.model, dataclasses.replace(BARE, pregrasp=True, horizon=1, iterations=1))
    state, goal, steps = world.state, task.yaw_quat(1.0), []
    for _ in range(300):
        action = planner.plan(state, goal)
        if not planner.waypoints:  # the cage reached: this call planned
            break
        steps.append(action)
        state = state._replace(hand_target=state.hand_target + action)
    cage = planner.cage
    assert cage is not None and len(planner.cage_times) == 1 and len(steps) > 10
    torch.testing.assert_close(state.hand_target[0], cage.waypoints[-1].float(), atol=1e-4, rtol=0)
    # each step goes at the bound in its largest joint, except the last of each waypoint
    largest = torch.stack(steps).abs().max(1).values
    assert (largest <= task.ACTION_BOUND + 1e-6).all()
    assert (largest > task.ACTION_BOUND - 1e-6).sum() >= len(steps) - len(cage.waypoints)
    assert len(planner.solve_times) == 1  # moving into the cage is not planning: only the last call planned
    planner.reset()
    assert planner.cage is None and not planner.waypoints


def test_a_regrasp_cage_out_of_reach_falls_back_to_the_first_one(world, monkeypatch):
    """An object whose first cage the pads cannot reach is refused; where they cannot reach the
    regrasp's cage (the pads at the clear radius), the hand goes back to the first cage."""
    import controllers.mpc

    planner = ReorientationMPC(world.model, dataclasses.replace(BARE, pregrasp=True))
    planner.plan(world.state, task.yaw_quat(1.0))
    first, reachable = planner.cage, controllers.mpc.cage

    def out_of_reach(*args, any_yaw=False):
        if any_yaw:
            raise ValueError("object: does not fit the LEAP Hand's grasp")
        return reachable(*args)

    monkeypatch.setattr(controllers.mpc, "cage", out_of_reach)
    planner._cage_around(world.state)  # as after a release
    assert planner.recage is first and len(planner.waypoints) == 2  # beside the object, then the cage
    planner.reset()
    monkeypatch.setattr(controllers.mpc, "cage", lambda *args: out_of_reach(*args, any_yaw=True))
    with pytest.raises(ValueError, match="does not fit"):
        planner.plan(world.state, task.yaw_quat(1.0))


@pytest.mark.parametrize("seed", [3, 12])  # start yaws -75 and -45 degrees (a corner towards a finger)
def test_pregrasp_cages_the_learned_cube_in_mujoco_without_moving_it(world, seed):
    planner = ReorientationMPC(world.model, MPCSettings())
    twin = gym.make(TWIN, **RAD)
    obs, _ = twin.reset(seed=seed)
    start_pos, start_quat = task.observation_parts(obs["observation"])["object_pos"].copy(), obs["achieved_goal"].copy()
    for steps in range(200):
        action = planner.plan(state_from_observation(obs), obs["desired_goal"])
        if not planner.waypoints:  # reached: this call planned
            break
        obs, *_ = twin.step(action.numpy())
    parts = task.observation_parts(obs["observation"])
    assert 0 < steps < 200 and len(planner.solve_times) == 1
    np.testing.assert_allclose(parts["joint_target"], planner.cage.waypoints[-1], atol=1e-4)
    assert np.linalg.norm(parts["object_pos"] - start_pos) < 2e-3
    assert task.angle_error(obs["achieved_goal"], start_quat) < math.radians(2.0)
    twin.close()


def test_a_stall_releases_the_pads_without_turning_the_cube_back_then_cages_again():
    """In the world model: after the pre-grasp and regrasp_after planned steps with no progress
    counted (regrasp_progress 1), the planner releases (at most release_steps planned steps, the
    orientation held: the cube is not turned back), then moves through the waypoints of the cage
    about the cube's start axis with the pads clear of it at any yaw."""
    env = gym.make(WORLD, **RAD).unwrapped
    obs, _ = env.reset(seed=12)
    goal, hold = obs["desired_goal"], task.observation_parts(obs["observation"])["object_pos"].copy()
    settings = dataclasses.replace(MPCSettings(), regrasp_after=25, regrasp_progress=1.0)
    planner = ReorientationMPC(env.model, settings)
    yaws, phases, cages = [], [], []
    while not ("release" in phases and phases[-1] == "approach") and len(phases) < 400:
        action = planner.plan(env.state, goal, hold)
        cages.append(planner.cage)
        phases.append("approach" if planner.waypoints else "plan" if not planner.regrasps else "release")
        obs, *_ = env.step(action.numpy())
        yaws.append(2 * math.atan2(float(obs["achieved_goal"][3]), float(obs["achieved_goal"][0])))
    assert planner.regrasps == 1
    assert phases.count("release") <= settings.release_steps and phases[-1] == "approach"
    assert phases.count("plan") == settings.regrasp_after  # the stall is counted over planned steps
    start, end = phases.index("release"), len(phases) - 1 - phases[::-1].index("release")
    caged = phases.index("plan") - 1  # the last step into the first cage
    turned = yaws[start - 1] - yaws[caged]  # the stroke's turn before the release
    assert abs(turned) > math.radians(10)
    # the release keeps the stroke's turn (it may go on a little: 8 degrees here, towards the goal)
    assert (yaws[end] - yaws[start - 1]) * math.copysign(1.0, turned) > -math.radians(3)
    assert not task.dropped(task.observation_parts(obs["observation"])["object_pos"], hold)
    assert planner.waypoints and len(planner.cage_times) == 2 and cages[-1] is cages[caged]
    recage = planner.recage
    assert len(planner.waypoints) <= 2 and torch.equal(planner.waypoints[-1], recage.waypoints[-1].float())
    assert recage is not cages[caged] and (recage.radii >= recage.clear_radius - 1e-9).all()
    assert (cages[caged].radii < recage.clear_radius).any()  # the first cage fits the cube as it stood


def test_world_model_plan_is_a_playable_trajectory(world):
    """controllers.tasks.world_model_plan: the open hand first, then one row per control step
    within the action bound and the joint range, the pre-grasp's cage at the start."""
    from controllers.tasks import world_model_plan

    settings = MPCSettings()
    planner = ReorientationMPC(world.model, settings)
    plan = world_model_plan(world.model, planner, 120)
    assert plan.shape == (121, 16) and np.isfinite(plan).all()
    np.testing.assert_allclose(plan[0], task.HOME_Q)
    assert np.abs(np.diff(plan, axis=0)).max() <= task.ACTION_BOUND + 1e-6
    lower, upper = task.joint_limits()
    assert (plan >= lower - 1e-6).all() and (plan <= upper + 1e-6).all()
    caged = 120 - len(planner.solve_times)  # the steps into the cage, at the bound, are not planned
    np.testing.assert_allclose(plan[caged], planner.cage.waypoints[-1], atol=1e-5)
    assert 10 < caged < 120
    with pytest.raises(ValueError, match="steps"):
        world_model_plan(world.model, planner, 0)


def test_compiled_planner_plans_as_the_eager_one(world):
    """compile=True runs the rollout and cost through torch.compile (one graph for planning and
    releasing; about a minute to compile on a cold cache): the same joint-target changes up to
    float rounding, while planning and after a stall, while releasing."""
    # a stall at the second plan; a clearance of 0.5 m keeps the pads releasing from then on
    settings = dataclasses.replace(BARE, horizon=2, iterations=1, step_size=0.02, regrasp_after=1,
                                   cage_clearance=0.5, release_steps=5)
    eager, compiled = ReorientationMPC(world.model, settings), ReorientationMPC(world.model, settings, compile=True)
    assert compiled.compiled and not eager.compiled
    goal = task.yaw_quat(1.0)
    for _ in range(3):
        expected, got = eager.plan(world.state, goal), compiled.plan(world.state, goal)
        assert expected.abs().max() > 1e-3  # a real plan, not an idle one
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    assert eager.regrasps == compiled.regrasps == 1 and compiled._release_from is not None
    # the compiling first plan is timed apart from the solves
    assert compiled.compile_seconds is not None and len(compiled.solve_times) == len(eager.solve_times) - 1


def test_settling_raises_the_orientation_weight_only_near_the_goal():
    """Below settle_error the orientation term weighs settle_weight times more; far from the goal
    the plan is the one without settling. From the pre-grasp's cage, where the pads touch the cube
    and the orientation term has a gradient."""
    env = gym.make(WORLD, **RAD).unwrapped
    env.reset(seed=0)
    config = MPCSettings()
    cage = ReorientationMPC(env.model, config)
    while True:
        action = cage.plan(env.state, task.yaw_quat(0.0))
        if not cage.waypoints:
            break
        env.step(action.numpy())
    plain = dataclasses.replace(config, pregrasp=False, settle_error=0.0)
    settling = dataclasses.replace(plain, settle_error=0.1, settle_weight=30.0)
    yaw0 = 2 * math.atan2(float(env.state.quat[0, 3]), float(env.state.quat[0, 0]))
    for turn, same in ((math.radians(90.0), True), (math.radians(15.0), False)):
        goal = task.yaw_quat(yaw0 + turn)
        assert (task.orientation_error(env.state.quat[0].numpy(), goal) < 0.1) != same
        a = ReorientationMPC(env.model, plain).plan(env.state, goal)
        b = ReorientationMPC(env.model, settling).plan(env.state, goal)
        assert bool((a - b).abs().max() > 1e-3) != same


def test_bench_workers_run_the_same_episodes_as_one_process():
    """`cgwm bench mpc --workers 2` runs the episodes in two spawned processes: the same outcomes, in
    seed order, as running them here."""
    from cgwm_env.bench.mpc import WORLD_MODELS, _episodes
    from controllers.mpc import load_settings

    settings = load_settings()[0]
    args = (WORLD_MODELS / "cube", "cube", settings, False, 1, [5, 3], 130)
    here, _ = _episodes(*args, workers=1)
    spawned, _ = _episodes(*args, workers=2)
    assert [r.seed for r in spawned] == [5, 3]
    for a, b in zip(here, spawned):
        assert (a.success, a.steps, a.regrasps) == (b.success, b.steps, b.regrasps)
        assert a.final_angle_deg == pytest.approx(b.final_angle_deg, abs=1e-6)
        assert len(b.solve_times) == len(a.solve_times) > 0  # the planned steps after the pre-grasp


def test_bench_names_a_bad_worker_count_or_object_before_running():
    from cgwm_env.bench.mpc import run

    with pytest.raises(ValueError, match="workers"):
        run(workers=0)
    with pytest.raises(ValueError, match="objects: 'teapot'"):
        run(objects=["cube", "teapot"])


def test_bench_objects_take_a_users_bundle_folder(tmp_path):
    """--objects takes a world-model folder a user made (here a copy of the bundled cube): planned
    for the library object its info names; a folder that is no bundle is named."""
    import shutil

    from cgwm_env.bench.mpc import WORLD_MODELS, chosen_bundles

    mine = tmp_path / "model"
    shutil.copytree(WORLD_MODELS / "cube", mine)
    assert chosen_bundles([str(mine), "cube_handmade"]) == [("cube", mine), ("cube", WORLD_MODELS / "cube_handmade")]
    assert chosen_bundles(["cube"]) == [("cube", WORLD_MODELS / "cube"), ("cube", WORLD_MODELS / "cube_handmade")]
    with pytest.raises(ValueError, match="objects: .*empty.* is neither"):
        chosen_bundles([str(tmp_path / "empty")])


def test_bench_cli_reads_its_settings_from_config(tmp_path, capsys):
    """`cgwm bench mpc --config FILE` plans with FILE's settings: an unknown key there is named
    before any episode runs (without --config it would have run the default settings)."""
    from cgwm_env.cli import main

    bad = tmp_path / "mpc.yaml"
    bad.write_text("stiffness_limit: 0.3\ngain_scale: 0.5\n")
    assert main(["bench", "mpc", "--config", str(bad), "--trials", "1", "--objects", "cube",
                 "--out", str(tmp_path / "out.json")]) == 2
    assert "gain_scale" in capsys.readouterr().err and not (tmp_path / "out.json").exists()
