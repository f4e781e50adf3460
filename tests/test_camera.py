"""Tests of the pinhole camera: conventions, look_at, batching, MuJoCo conversion, errors."""

import math
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from cgwm_env.render.camera import Camera, from_mujoco, look_at  # noqa: E402


def test_look_at_axes_and_projection():
    eye, target = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.0, 0.0, 0.5])
    T = look_at(eye, target)
    R = T[:3, :3]
    torch.testing.assert_close(R @ R.T, torch.eye(3), atol=1e-6, rtol=0)
    assert torch.det(R) > 0
    cam = Camera.from_fovy(math.radians(60), 64, 48, T)
    torch.testing.assert_close(cam.position, eye)
    uv, z = cam.project(torch.stack((target, target + torch.tensor([0.0, 0.0, 0.1]))))
    torch.testing.assert_close(uv[0], torch.tensor([32.0, 24.0]))  # the target sits at the image centre
    torch.testing.assert_close(z[0], (eye - target).norm())
    assert uv[1, 1] < 24.0  # world up (+z) is up in the image: smaller v


def test_from_fovy_intrinsics():
    cam = Camera.from_fovy(math.radians(90), 200, 100, torch.eye(4))
    # fovy is vertical: the top edge of the image (v = 0) is 45 degrees above the axis.
    assert cam.fx == cam.fy == pytest.approx(50.0)
    torch.testing.assert_close(cam.K, torch.tensor([[50.0, 0.0, 100.0], [0.0, 50.0, 50.0], [0.0, 0.0, 1.0]]))
    uv, _ = cam.project(torch.tensor([[0.0, -1.0, 1.0]]))
    torch.testing.assert_close(uv, torch.tensor([[100.0, 0.0]]))


def test_batched_cameras():
    eyes = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 2.0]])
    T = look_at(eyes, torch.zeros(3, 3), up=torch.tensor([0.0, 1.0, 1.0]))
    cam = Camera(torch.tensor([100.0, 110.0, 120.0]), 100.0, 32.0, 24.0, 64, 48, T)
    assert cam.batch_shape == (3,) and cam.K.shape == (3, 3, 3)
    points = torch.tensor([[0.01, 0.02, 0.03]]).expand(3, 1, 3)
    uv, _ = cam.project(points)
    for i in range(3):
        uv_i, _ = cam[i].project(points[i])
        torch.testing.assert_close(uv[i], uv_i)
        assert cam[i].fx == cam.fx[i]


def test_bad_camera_arguments():
    with pytest.raises(ValueError, match="width"):
        Camera(1.0, 1.0, 0.0, 0.0, 0, 10, torch.eye(4))
    with pytest.raises(ValueError, match="height"):
        Camera(1.0, 1.0, 0.0, 0.0, 10, 2.5, torch.eye(4))
    with pytest.raises(ValueError, match="fx"):
        Camera(-1.0, 1.0, 0.0, 0.0, 10, 10, torch.eye(4))
    with pytest.raises(ValueError, match="cy"):
        Camera(1.0, 1.0, 0.0, float("nan"), 10, 10, torch.eye(4))
    with pytest.raises(ValueError, match="T_cw"):
        Camera(1.0, 1.0, 0.0, 0.0, 10, 10, torch.eye(3))
    with pytest.raises(ValueError, match="fovy"):
        Camera.from_fovy(0.0, 10, 10, torch.eye(4))
    with pytest.raises(ValueError, match="target"):
        look_at((1.0, 0.0, 0.0), (1.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="up"):
        look_at((0.0, 0.0, 1.0), (0.0, 0.0, 0.0))


MJCF = """
<mujoco>
  <worldbody>
    <site name="s" pos="0.03 0.02 0.0"/>
    <camera name="down" pos="0 0 1"/>
    <camera name="tilted" pos="0.4 -0.3 0.2" xyaxes="0.6 0.8 0 -0.2 0.15 0.9" fovy="60"/>
  </worldbody>
</mujoco>
"""


def test_from_mujoco_pose_and_intrinsics():
    model = mujoco.MjModel.from_xml_string(MJCF)
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    cam = from_mujoco(model, data, "down", 80, 60)
    # A MuJoCo camera at z = 1 with identity orientation looks down -z; its y (up) is world +y.
    assert cam.fy == pytest.approx(30.0 / math.tan(math.radians(22.5)))
    uv, z = cam.project(torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.1, 0.0], [0.1, 0.0, 0.0]]))
    torch.testing.assert_close(uv[0], torch.tensor([40.0, 30.0]))
    torch.testing.assert_close(z, torch.ones(3))
    assert uv[1, 1] < 30.0 and uv[2, 0] > 40.0  # world +y is up, +x is right
    tilted = from_mujoco(model, data, model.camera("tilted").id, 80, 60)
    torch.testing.assert_close(tilted.position, torch.tensor([0.4, -0.3, 0.2]))
    # The camera's -z axis (MuJoCo) is our +z: a point straight ahead projects to the centre.
    ahead = torch.as_tensor(data.cam_xpos[1] - 0.5 * data.cam_xmat[1].reshape(3, 3)[:, 2], dtype=torch.float32)
    uv, z = tilted.project(ahead[None])
    torch.testing.assert_close(uv[0], torch.tensor([40.0, 30.0]), atol=1e-4, rtol=0)
    assert z[0] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="camera"):
        from_mujoco(model, data, "missing", 80, 60)
    with pytest.raises(ValueError, match="camera"):
        from_mujoco(model, data, 7, 80, 60)
