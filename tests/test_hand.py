"""Tests of the LEAP Hand model: pytorch-kinematics against MuJoCo, limits, motor order, Jacobians,
query points, the palm-up scene in MuJoCo, input errors."""

import math

import mujoco
import numpy as np
import pytest
import torch

from cgwm_env.physics import hand, hand_mjcf


def _random_q(n: int, dtype=torch.float64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(n, 16, generator=g, dtype=dtype)
    return hand.LOWER.to(dtype) + u * (hand.UPPER - hand.LOWER).to(dtype)


@pytest.fixture(scope="module")
def hand_model():
    return mujoco.MjModel.from_xml_path(str(hand_mjcf.HAND_XML))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fk_matches_mujoco(hand_model, dtype):
    q = _random_q(16, dtype)
    T = hand.forward_kinematics(q)
    assert T.shape == (16, len(hand_mjcf.LINK_NAMES), 4, 4) and T.dtype == dtype
    data = mujoco.MjData(hand_model)
    for b in range(len(q)):
        data.qpos[:] = q[b].double().numpy()
        mujoco.mj_kinematics(hand_model, data)
        pos, mat = data.xpos[1:], data.xmat[1:].reshape(-1, 3, 3)
        np.testing.assert_allclose(T[b, :, :3, 3].double().numpy(), pos, atol=1e-5, rtol=0)
        np.testing.assert_allclose(T[b, :, :3, :3].double().numpy(), mat, atol=1e-5, rtol=0)
        quat = np.stack([_mat2quat(m) for m in T[b, :, :3, :3].double().numpy()])
        sign = np.sign((quat * data.xquat[1:]).sum(-1, keepdims=True))
        np.testing.assert_allclose(quat * sign, data.xquat[1:], atol=1e-5, rtol=0)


def _mat2quat(m: np.ndarray) -> np.ndarray:
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, m.reshape(-1))
    return quat


def test_names_and_limits_match_mjcf(hand_model):
    assert hand_mjcf.JOINT_NAMES == tuple(hand_model.joint(j).name for j in range(hand_model.njnt))
    assert hand_mjcf.JOINT_NAMES[:4] == ("if_mcp", "if_rot", "if_pip", "if_dip")
    assert hand_mjcf.LINK_NAMES == tuple(hand_model.body(b).name for b in range(1, hand_model.nbody))
    np.testing.assert_array_equal(hand.LOWER.numpy(), hand_model.jnt_range[:, 0].astype(np.float32))
    np.testing.assert_array_equal(hand.UPPER.numpy(), hand_model.jnt_range[:, 1].astype(np.float32))
    assert hand.LOWER[0] == pytest.approx(-0.314) and hand.UPPER[15] == pytest.approx(1.88)
    # One position actuator per joint, same order, ctrlrange = joint range, a torque limit.
    assert hand_model.nu == 16
    np.testing.assert_array_equal(hand_model.actuator_trnid[:, 0], np.arange(16))
    np.testing.assert_allclose(hand_model.actuator_ctrlrange, hand_model.jnt_range)
    assert (hand_model.actuator_forcelimited == 1).all()


def test_motor_mapping():
    q = _random_q(5, torch.float32)
    m = hand.sim_to_motor(q)
    torch.testing.assert_close(hand.motor_to_sim(m), q)
    torch.testing.assert_close(hand.sim_to_motor(torch.zeros(16)), torch.full((16,), math.pi))  # sim zero = motor pi
    # if_mcp (sim 0) is motor 1 (forward), if_rot (sim 1) is motor 0 (side); the thumb keeps its order.
    one = torch.zeros(16)
    one[0] = 0.5
    assert hand.sim_to_motor(one)[1] == pytest.approx(math.pi + 0.5)
    assert sorted(hand_mjcf.MOTOR_OF_JOINT) == list(range(16))
    assert hand_mjcf.MOTOR_OF_JOINT[12:] == (12, 13, 14, 15)


def test_leading_batch_dimensions():
    q = _random_q(6, torch.float32)
    T = hand.forward_kinematics(q.reshape(2, 3, 16))
    torch.testing.assert_close(T.reshape(6, -1, 4, 4), hand.forward_kinematics(q))
    assert hand.query_points_world(q[0]).shape == (len(hand.query_points()[0]), 3)
    assert hand.sim_to_motor(q.reshape(3, 2, 16)).shape == (3, 2, 16)


def test_jacobian_matches_finite_differences():
    q = _random_q(3, torch.float64, seed=1)
    link, points, _, _ = hand.query_points(torch.float64)
    x, J = hand.point_jacobian(q, link, points)
    torch.testing.assert_close(x, hand.query_points_world(q))
    eps = 1e-6
    fd = torch.stack([(hand.query_points_world(q + eps * e) - hand.query_points_world(q - eps * e)) / (2 * eps)
                      for e in torch.eye(16, dtype=torch.float64)], dim=-1)
    torch.testing.assert_close(J, fd, atol=1e-7, rtol=1e-6)
    # Autograd through FK agrees with the Jacobian (to the chain's float32-rounded body offsets).
    qg = q.clone().requires_grad_()
    hand.query_points_world(qg)[..., 2].sum().backward()
    torch.testing.assert_close(qg.grad, J[..., 2, :].sum(-2), atol=1e-6, rtol=1e-6)


def test_query_points_layout():
    link, points, radii, normals = hand.query_points()
    assert link.shape == radii.shape == points.shape[:1] and points.shape[1] == 3 and normals.shape == points.shape
    assert points.dtype == radii.dtype == torch.float32 and (radii > 0).all()
    names = [hand_mjcf.LINK_NAMES[i] for i in link.tolist()]
    pads = 4 * hand.PAD_POINTS
    assert {n[:2] for n in names[:pads]} == {"if", "mf", "rf", "th"} and all(n.endswith("_ds") for n in names[:pads])
    for finger in ("if_ds", "mf_ds", "rf_ds", "th_ds"):
        assert names.count(finger) >= hand.PAD_POINTS
    assert names.count("palm") > 50
    # In the flat pose the palm-face spheres touch the plane z = 0.0345 (the palm's top) from below.
    world = hand.query_points_world(torch.zeros(16))
    top = world[link == 0, 2] + radii[link == 0]
    assert top.max() == pytest.approx(0.0345, abs=1e-6)
    assert (top > 0.0345 - 1e-6).sum() > 40
    # The palm grid's contacts take the palm face's normal, +z in the hand frame; the others none.
    face = normals.norm(dim=1) > 0
    assert (link[face] == 0).all() and face.sum() > 50 and (normals[~face] == 0).all()
    R_palm = hand.forward_kinematics(torch.zeros(16))[0, :3, :3]
    up = normals[face] @ R_palm.T
    assert up[top[face[link == 0]] > 0.0345 - 1e-6].allclose(torch.tensor([0.0, 0.0, 1.0]))


def test_finger_box_covers_follow_the_boxes_surface():
    """The spheres covering a finger's box (radius r <= COVER_RADIUS, centres on the box shrunk by
    r, at most r apart) stay inside it, come within (sqrt 3 - 1) r of every point of its surface
    (its corners), and within (sqrt 1.5 - 1) r of its faces away from the edges. (A thick box
    covered by a few spheres as large as its half thickness rounds its edges off by 5-8 mm: MuJoCo's
    thumb then met a cube 2.5 mm before ours did; with spheres 2 r apart a cube's edge pressed on a
    face sank up to r between them, and the planner's strokes turned a cube MuJoCo's fingers jammed.)"""
    model = hand_mjcf.mjcf()
    rng = np.random.default_rng(0)
    boxes = [g for g in range(model.ngeom) if model.geom_type[g] == mujoco.mjtGeom.mjGEOM_BOX
             and model.geom_bodyid[g] > 1 and model.geom_size[g].min() >= hand.THIN]
    assert len(boxes) == 9  # proximal and middle links of three fingers, three links of the thumb
    for g in boxes:
        half = model.geom_size[g]
        centres, r = hand._box_cover(half)
        assert r <= hand.COVER_RADIUS + 1e-12
        assert (np.abs(centres) + r <= half + 1e-9).all()  # inside the box
        surface = rng.uniform(-1, 1, (2000, 3))
        axis = rng.integers(3, size=len(surface))
        surface[np.arange(len(surface)), axis] = np.sign(surface[np.arange(len(surface)), axis])
        surface[:8] = np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1])).reshape(3, -1).T  # the corners
        surface *= half
        gap = (np.linalg.norm(surface[:, None] - centres[None], axis=-1) - r).min(1)
        assert gap.max() <= (math.sqrt(3) - 1) * r + 1e-9
        on_face = (np.abs(surface) <= half - r).sum(1) == 2  # r or more from every edge
        assert on_face.sum() > 100 and gap[on_face].max() <= (math.sqrt(1.5) - 1) * r + 1e-9


def test_scene_cube_rests_and_actuators_hold_pose():
    model = mujoco.MjModel.from_xml_path(str(hand_mjcf.SCENE_XML))
    data = mujoco.MjData(model)
    assert model.vis.quality.shadowsize == 0 and model.camera("palm_cam").mode == mujoco.mjtCamLight.mjCAMLIGHT_FIXED
    obj = model.body("object").id
    start = model.body_pos[obj].copy()
    target = np.zeros(16)
    # Curl the middle finger and spread index and ring, away from the cube. The torque limit and
    # joint damping cap the speed near 1 rad/s, so the steps are small enough to settle in 1 s.
    target[[4, 6, 7]] = (0.4, 0.5, 0.3)
    target[[1, 9]] = (0.3, -0.3)
    data.ctrl[:] = target
    lowest = np.inf
    for _ in range(round(1.0 / model.opt.timestep)):
        mujoco.mj_step(model, data)
        lowest = min(lowest, data.xpos[obj, 2])
    palm_top, half = 0.0345, 0.025
    assert lowest > palm_top + half - 2e-3  # still on the palm, not fallen off
    assert np.linalg.norm(data.xpos[obj, :2] - start[:2]) < 5e-3
    assert np.abs(data.qpos[:16] - target).max() < math.radians(3)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="q"):
        hand.forward_kinematics(torch.full((2, 16), float("nan")))
    with pytest.raises(ValueError, match="q"):
        hand.forward_kinematics(torch.zeros(2, 15))
    with pytest.raises(ValueError, match="q"):
        hand.query_points_world(torch.zeros(()))
    with pytest.raises(ValueError, match="q"):
        hand.sim_to_motor(torch.zeros(3, 17))
    with pytest.raises(ValueError, match="m"):
        hand.motor_to_sim(torch.tensor([float("inf")] * 16))
