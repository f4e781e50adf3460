"""The pre-grasp from the object's geometry (controllers.grasp), for every library object."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import cgwm_env  # noqa: F401  (registers the environments)
from cgwm_env.data.objects import OBJECTS
from cgwm_env.envs.leap import task
from cgwm_env.envs.leap.world_model_env import DEFAULT_WORLD_MODEL
from cgwm_env.learn.world_model import WorldModel
from cgwm_env.physics.gaussians import SphereGaussians
from cgwm_env.physics.hand_mjcf import PALM_Z
from controllers import grasp
from controllers.tasks import state_from_observation


TWIN = "ContactGaussian-LeapHandMuJoCo-v1"


def parts(obs: dict) -> dict:
    """The named parts of a goal observation's flat `observation`."""
    return task.observation_parts(obs["observation"])


def surface_spheres(name: str, n: int = 600, radius: float = 1e-3) -> SphereGaussians:
    """Spheres of `radius` m on the library object's surface (body frame): its shape as a world
    model's Gaussians give it, without learning one."""
    centres = torch.tensor(OBJECTS[name].sample_surface(n), dtype=torch.float32)
    return SphereGaussians(centres, torch.full((n,), math.log(radius / 2)), torch.full((n,), 5.0),
                           torch.full((n, 3), 0.5))


def test_the_cage_puts_each_pad_on_its_slot_clear_of_the_learned_cube():
    twin = gym.make(TWIN, normalized_actions=False)
    obs, _ = twin.reset(seed=0)
    twin.close()
    state = state_from_observation(obs)
    gaussians = WorldModel.load(DEFAULT_WORLD_MODEL).gaussians
    cage = grasp.cage(gaussians, state.position[0], state.quat[0])
    joints = cage.waypoints[-1]
    assert len(cage.waypoints) == grasp.DESCENT_WAYPOINTS + 1
    for w in cage.waypoints:
        assert (w >= grasp.hand.LOWER.double() - 1e-9).all() and (w <= grasp.hand.UPPER.double() + 1e-9).all()
    # the cube (5 cm) reaches 3.5 cm from its axis at any yaw; each pad lies between its face and the clear circle
    foot = cage.footprint
    assert foot.radius == pytest.approx(0.025 * math.sqrt(2), abs=3e-3)
    assert cage.clear_radius == pytest.approx(grasp.clear_radius(foot))
    assert ((cage.radii > 0.025) & (cage.radii <= cage.clear_radius + grasp.MAX_EXTRA_RADIUS)).all()
    targets = grasp.slot_points(foot.axis, cage.radii, foot.centre_z)
    _, miss = grasp.solve_pads(targets, joints, joints)
    assert miss.max() < grasp.REACH_TOLERANCE
    centres, radii = grasp._world_spheres(gaussians, state.position[0], state.quat[0])
    gap = grasp.finger_clearance(joints, centres, radii)
    assert (gap > 0.5 * grasp.CLEARANCE).all() and (gap < 3 * grasp.CLEARANCE).all()  # near, not touching
    # the thumb's distal joints stay open until the last waypoint
    assert all((w[grasp.THUMB_BASE[1]:] == 0).all() for w in cage.waypoints[:-1])


@pytest.mark.parametrize("name", sorted(OBJECTS))
def test_moving_into_the_cage_leaves_every_library_object_where_it_lay(name):
    """In the MuJoCo twin, from each object's reset pose (seed 3: turned -75 degrees), the hand
    moves through the cage's waypoints at the action bound: the object moves no more than it does
    when the hand stays open for as long (the duck settles by itself: 2 mm, 6 degrees)."""
    twin = gym.make(TWIN, object=name, normalized_actions=False)
    obs, _ = twin.reset(seed=3)
    start_pos, start_quat = parts(obs)["object_pos"].copy(), obs["achieved_goal"].copy()
    state = state_from_observation(obs)
    cage = grasp.cage(surface_spheres(name), state.position[0], state.quat[0])
    steps = 0
    for w in cage.waypoints:
        while np.abs(step := w.numpy() - parts(obs)["joint_target"]).max() > 1e-4:
            obs, *_ = twin.step(np.clip(step, -task.ACTION_BOUND, task.ACTION_BOUND).astype(np.float32))
            steps += 1
    np.testing.assert_allclose(parts(obs)["joint_target"], cage.waypoints[-1].numpy(), atol=1e-4)
    caged_pos, caged_quat = parts(obs)["object_pos"], obs["achieved_goal"]
    obs, _ = twin.reset(seed=3)
    for _ in range(steps):
        obs, *_ = twin.step(np.zeros(16, np.float32))
    twin.close()
    assert 20 < steps < 200
    assert np.linalg.norm(caged_pos - parts(obs)["object_pos"]) < 1e-3
    assert task.angle_error(caged_quat, obs["achieved_goal"]) < math.radians(1.0)
    assert np.linalg.norm(caged_pos - start_pos) < 3e-3 and task.angle_error(caged_quat, start_quat) < math.radians(7)


def test_an_object_too_big_for_the_hand_is_refused_with_its_size():
    spheres = surface_spheres("cube")
    big = SphereGaussians(spheres.centers * 2.5, spheres.log_scales, spheres.opacity_logits, spheres.colors)
    on_palm = (*task.OBJECT_XY, PALM_Z + 2.5 * 0.025)  # resting on the palm
    with pytest.raises(ValueError, match=r"object: does not fit the LEAP Hand's grasp: it reaches 8\.\d cm"):
        grasp.cage(big, on_palm, (1.0, 0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="clearance"):
        grasp.cage(spheres, (0.0, 0.0, 0.1), (1.0, 0.0, 0.0, 0.0), clearance=-0.01)
    with pytest.raises(ValueError, match="position, quat"):
        grasp.cage(spheres, (0.0, math.nan, 0.1), (1.0, 0.0, 0.0, 0.0))
