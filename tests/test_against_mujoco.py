"""Our simulator against MuJoCo on the same box (5 cm, 100 g): drops settle to the same poses, and
a friction coefficient fitted by gradient descent to MuJoCo's slide reproduces its stopping distance."""

import math

import mujoco
import numpy as np
import pytest
import torch
from helpers import MASS, SIDE, cube_model, with_mu

from cgwm_env.data.scenes import box_on_plane_xml
from cgwm_env.physics import math3d
from cgwm_env.physics.model import State
from cgwm_env.physics.simulator import rollout


def mujoco_final(qpos0, qvel0, seconds, timestep, mu=0.5):
    """MuJoCo's trajectory of the box's free joint, (steps, 7)."""
    m = mujoco.MjModel.from_xml_string(box_on_plane_xml(SIDE, MASS, mu, timestep))
    d = mujoco.MjData(m)
    d.qpos[:], d.qvel[:] = qpos0, qvel0
    out = []
    for _ in range(round(seconds / timestep)):
        mujoco.mj_step(m, d)
        out.append(d.qpos.copy())
    return np.array(out)


@pytest.mark.parametrize("tilt_deg", [0.0, 10.0])
def test_drop_settles_where_mujoco_settles(tilt_deg):
    model = cube_model()
    quat = math3d.quat_from_axis_angle(torch.tensor([1.0, 0.0, 0.0]), torch.tensor(math.radians(tilt_deg)))
    corners = torch.tensor([[0.0, sy, sz] for sy in (-1, 1) for sz in (-1, 1)]) * SIDE / 2
    height = 0.10 - math3d.rotate(quat, corners)[:, 2].min().item()  # lowest point 10 cm up
    qpos0 = np.array([0.0, 0.0, height, *quat.tolist()])
    truth = mujoco_final(qpos0, np.zeros(6), 2.0, model.dt)[-1]
    spread = mujoco_final(qpos0, np.zeros(6), 2.0, model.dt / 2)[-1]
    ours = rollout(model, State.make(qpos0[None, :3].tolist(), quat=quat), steps=round(2.0 / model.dt))
    pos_err = np.linalg.norm(ours.position[0, -1].numpy() - truth[:3])
    ang_err = math3d.quat_angle(ours.quat[0, -1], torch.tensor(truth[3:], dtype=torch.float32)).item()
    ref_pos = np.linalg.norm(spread[:3] - truth[:3])
    print(f"tilt {tilt_deg} deg: ours vs MuJoCo {pos_err * 1e3:.2f} mm, {ang_err:.4f} rad; "
          f"MuJoCo vs MuJoCo at dt/2 {ref_pos * 1e3:.3f} mm")
    assert pos_err < 5e-3 and ang_err < 0.05


def test_mu_fitted_to_a_mujoco_slide_matches_its_stopping_distance():
    speed, seconds, mu_true = 0.5, 0.3, 0.5
    model = cube_model()
    steps = round(seconds / model.dt)
    truth = mujoco_final([0, 0, SIDE / 2, 1, 0, 0, 0], [speed, 0, 0, 0, 0, 0], seconds, model.dt, mu=mu_true)
    target_x = torch.tensor(truth[:, 0], dtype=torch.float32)
    start = State.make([[0.0, 0.0, SIDE / 2]], velocity=[speed, 0.0, 0.0])

    mu_raw = torch.log(torch.expm1(torch.tensor(0.2))).requires_grad_()  # start far off
    optimizer = torch.optim.LBFGS([mu_raw], lr=1.0, max_iter=12, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        traj = rollout(with_mu(model, torch.nn.functional.softplus(mu_raw)), start, steps=steps)
        loss = ((traj.position[0, 1:, 0] - target_x) ** 2).mean() * 1e6  # mm^2
        loss.backward()
        return loss

    optimizer.step(closure)
    mu_fit = torch.nn.functional.softplus(mu_raw).item()
    with torch.no_grad():
        ours = rollout(with_mu(model, mu_fit), start, steps=round(1.0 / model.dt)).position[0, -1, 0].item()
    print(f"mu fitted {mu_fit:.3f} (MuJoCo's {mu_true}); stopping distance {ours * 1e3:.2f} mm vs "
          f"MuJoCo {truth[-1, 0] * 1e3:.2f} mm")
    assert ours == pytest.approx(truth[-1, 0], rel=0.10)
    assert 0.3 < mu_fit < 0.8
