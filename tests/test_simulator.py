import dataclasses

import mujoco

import pytest
import torch
from helpers import MASS, SIDE, cube_model, with_mu

from cgwm_env.physics import math3d
from cgwm_env.data.scenes import box_on_plane_xml
from cgwm_env.physics.contact import ContactSettings
from cgwm_env.physics.gaussians import SphereGaussians, box_gaussians
from cgwm_env.physics.model import PhysicalParams, State, solid_box_inertia
from cgwm_env.physics.simulator import rollout, step

HALF = SIDE / 2


def test_step_gradcheck_through_state_params_and_spheres():
    """One step with ground and pusher contacts, differentiated in float64 with respect to the
    state, theta = (mass, inertia, mu, stiffness, damping) and the spheres' centres and radii."""
    base = cube_model(per_edge=2, dtype=torch.float64, pusher_points=torch.zeros(1, 3, dtype=torch.float64),
                      pusher_radii=torch.tensor([0.01], dtype=torch.float64),
                      contact=ContactSettings(softplus_sharpness=300.0))
    tilt = math3d.quat_from_axis_angle(torch.tensor([1.0, 0.3, 0.0]), torch.tensor(0.2)).double()
    state = State.make(torch.tensor([[0.001, 0.0, 0.0265]], dtype=torch.float64), quat=tilt,
                       velocity=[0.2, 0.0, -0.3], omega=[1.0, -2.0, 0.5],
                       pusher=torch.tensor([-HALF - 0.0105, 0.002, 0.026], dtype=torch.float64))
    action = torch.tensor([[0.1, 0.0, 0.0]], dtype=torch.float64)

    def one_step(position, quat, velocity, omega, pusher, action, *theta_and_geometry):
        params = PhysicalParams(*theta_and_geometry[:5])
        centers, log_scales = theta_and_geometry[5:]
        g = dataclasses.replace(base.gaussians, centers=centers, log_scales=log_scales)
        model = dataclasses.replace(base, params=params, gaussians=g)
        return tuple(step(model, State.make(position, quat, velocity, omega, pusher), action))[:5]

    inputs = [*state[:5], action, *base.params.tensors(), base.gaussians.centers, base.gaussians.log_scales]
    inputs = [t.detach().clone().requires_grad_() for t in inputs]
    out = one_step(*inputs)
    assert out[2][0, 2] > state.velocity[0, 2]  # contact pushed the falling cube up
    assert torch.autograd.gradcheck(one_step, inputs, eps=1e-7, atol=1e-5, rtol=1e-3)


def test_free_fall_matches_the_discrete_closed_form():
    model = cube_model(ground_height=None)
    x0, v0, n = torch.tensor([0.1, -0.2, 1.0]), torch.tensor([0.3, 0.0, 2.0]), 400
    traj = rollout(model, State.make(x0[None], velocity=v0[None]), steps=n)
    h, g = model.dt, torch.tensor(model.gravity)
    k = torch.arange(n + 1, dtype=torch.float64)[:, None]
    # Semi-implicit Euler: v_k = v0 + k h g, x_k = x0 + k h v0 + h^2 g k (k + 1) / 2.
    expected_x = x0.double() + k * h * v0.double() + h * h * g.double() * k * (k + 1) / 2
    torch.testing.assert_close(traj.position[0].double(), expected_x, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(traj.velocity[0, -1], v0 + n * h * g, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(traj.quat[0, -1], torch.tensor([1.0, 0, 0, 0]))


def test_cube_rests_on_the_ground_for_five_seconds():
    model = cube_model()
    start = State.make([[0.0, 0.0, HALF]])
    traj = rollout(model, start, steps=round(5.0 / model.dt))
    drift = (traj.position[0] - start.position).norm(dim=-1).max()
    turn = math3d.quat_angle(traj.quat[0], start.quat).max()
    assert drift < 1e-3 and turn < 0.01


def test_cube_on_an_uneven_support_rests_still():
    """Sub-mm bumps (as stage I's spheres have) leave a cube on a few uneven contacts: it settles and
    does not creep (per-row gains once made it creep mm/s; the sweeps leave under 0.1 mm/s)."""
    g = box_gaussians(SIDE, 10)
    bumps = 5e-4 * torch.rand(len(g), generator=torch.Generator().manual_seed(0))  # radii up to 0.5 mm larger
    g = SphereGaussians(g.centers, g.log_scales + torch.log1p(bumps / g.radii), g.opacity_logits, g.colors)
    model = dataclasses.replace(cube_model(), gaussians=g)
    traj = rollout(model, State.make([[0.0, 0.0, float(-(g.centers[:, 2] - g.radii).min())]]),
                   steps=round(1.0 / model.dt))
    settled = round(0.25 / model.dt)
    drift = (traj.position[0, settled:, :2] - traj.position[0, settled, :2]).norm(dim=-1).max()
    turn = math3d.quat_angle(traj.quat[0, settled:], traj.quat[0, settled]).max()
    assert drift < 0.75 * 1e-4 and turn < 1e-3


def _slide_distance(model, speed=0.5, seconds=1.0):
    traj = rollout(model, State.make([[0.0, 0.0, HALF]], velocity=[speed, 0.0, 0.0]), steps=round(seconds / model.dt))
    return traj


def test_friction_grows_with_mu():
    model = cube_model()
    distances = [_slide_distance(with_mu(model, mu)).position[0, -1, 0].item() for mu in (0.1, 0.3, 0.6)]
    assert distances[0] > distances[1] > distances[2] > 0
    # Coulomb's v^2 / (2 mu g) at mu = 0.3, within the model's slip effects.
    assert distances[1] == pytest.approx(0.25 / (2 * 0.3 * 9.81), rel=0.15)


def test_sliding_cube_stops_and_stays_stopped():
    model = cube_model()
    steps_2s = round(2.0 / model.dt)
    traj = _slide_distance(model, seconds=3.0)
    x = traj.position[0, :, 0]
    assert x[-steps_2s] > 0.02  # it slid
    assert (x[-1] - x[-steps_2s]).abs() < 1e-4  # and did not creep over the last 2 s
    assert traj.velocity[0, -steps_2s:].norm(dim=-1).max() < 2e-3


def test_corner_drop_penetrates_as_mujoco_does_and_gains_no_energy():
    # The default gains are MuJoCo's default contact (solref 0.02 s, critically damped): a corner
    # landing at 1.4 m/s sinks in by centimetres for a few milliseconds in both.
    model = cube_model()
    # A body diagonal pointing down, tipped 3 degrees off so the cube does not balance on it.
    corner_down = math3d.quat_mul(math3d.quat_from_axis_angle(torch.tensor([0.0, 1.0, 0.0]), torch.tensor(0.05)),
                                  math3d.quat_from_axis_angle(torch.tensor([1.0, -1.0, 0.0]), torch.tensor(0.9553166)))
    corners = torch.tensor([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * HALF
    release = 0.10 - math3d.rotate(corner_down, corners)[:, 2].min().item()
    traj = rollout(model, State.make([[0.0, 0.0, release]], quat=corner_down), steps=round(2.0 / model.dt))
    world = traj.position[0, :, None, :] + math3d.rotate(traj.quat[0, :, None, :], corners)
    assert world[0, :, 2].sort().values[1] > 0.12  # one corner points down, the others well above
    m = mujoco.MjModel.from_xml_string(box_on_plane_xml(SIDE, MASS, 0.5, model.dt))
    d = mujoco.MjData(m)
    d.qpos[:] = [0.0, 0.0, release, *corner_down.tolist()]
    lowest = 0.0
    for _ in range(round(0.2 / model.dt)):
        mujoco.mj_step(m, d)
        lowest = min(lowest, float(d.contact.dist.min()) if d.ncon else 0.0)
    assert world[..., 2].min() > 1.5 * lowest
    assert traj.position[0, :, 2].max() <= release + 1e-6
    assert traj.position[0, -1, 2] == pytest.approx(HALF, abs=2e-3)  # it ends on a face


def test_driven_pusher_pushes_the_cube_along():
    model = cube_model(pusher_points=torch.zeros(1, 3), pusher_radii=torch.tensor([0.01]),
                       contact=ContactSettings(pusher="driven"))
    start = State.make([[0.0, 0.0, HALF]], pusher=[-HALF - 0.015, 0.0, HALF])
    speed, seconds = 0.1, 1.0
    steps = round(seconds / model.dt)
    traj = rollout(model, start, torch.tensor([speed, 0.0, 0.0]).expand(1, steps, 3))
    travel = speed * seconds - 0.005  # the pusher's travel after it touches
    assert traj.position[0, -1, 0] == pytest.approx(travel, abs=0.004)
    gap = traj.position[0, :, 0] - HALF - 0.01 - traj.pusher[0, :, 0]
    assert gap.min() > -0.004  # the pusher's sphere stays outside the cube (within the soft SDF)
    assert traj.position[0, -1, 1].abs() < 0.002 and traj.position[0, -1, 2] == pytest.approx(HALF, abs=1e-3)


def test_batch_rows_match_single_environments():
    model = cube_model()
    tilt = math3d.quat_from_axis_angle(torch.tensor([0.0, 1.0, 0.0]), torch.tensor(0.3))
    states = [State.make([[0.0, 0.0, 0.05]], velocity=[0.2, 0.0, -1.0]),
              State.make([[0.1, 0.0, 0.03]], quat=tilt, omega=[0.0, 3.0, 0.0])]
    batched = State(*(torch.cat(parts) for parts in zip(*states)))
    traj = rollout(model, batched, steps=50)
    for i, s in enumerate(states):
        single = rollout(model, s, steps=50)
        torch.testing.assert_close(traj.position[i], single.position[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(traj.quat[i], single.quat[0], atol=1e-5, rtol=1e-5)


def test_hull_ground_contacts_match_all_spheres():
    # The hull's corner spheres carry a resting face as the 100 face spheres do; how a tipping
    # cube slips on its edge differs (the contact distribution is not unique), by millimetres.
    tilt = math3d.quat_from_axis_angle(torch.tensor([1.0, 1.0, 0.0]), torch.tensor(0.4))
    starts = [State.make([[0.0, 0.0, HALF]], velocity=[0.3, 0.0, 0.0]), State.make([[0.0, 0.0, 0.08]], quat=tilt)]
    for start, tolerance in zip(starts, (2e-3, 6e-3)):
        hull, every = (rollout(cube_model(ground_contacts=m), start, steps=500) for m in ("hull", "all"))
        assert (hull.position[0, -1] - every.position[0, -1]).norm() < tolerance
        assert hull.position[0, -1, 2] == pytest.approx(HALF, abs=1e-4)
        assert math3d.quat_angle(hull.quat[0, -1], every.quat[0, -1]) < 0.01


def test_plain_gain_mode_holds_a_resting_cube():
    # The paper's plain form with per-row gains K = kappa m / (n h^2), D = delta m / (n h) for the
    # n rows of the resting face (100 contacts x 4 rows here).
    model = cube_model(ground_contacts="all")
    n_rows, h = 100 * 4, model.dt
    params = PhysicalParams.from_values(MASS, solid_box_inertia(MASS, SIDE), 0.5,
                                        0.5 * MASS / (n_rows * h * h), 0.5 * MASS / (n_rows * h))
    model = dataclasses.replace(model, params=params, contact=ContactSettings(gain_mode="plain"))
    traj = rollout(model, State.make([[0.0, 0.0, HALF]]), steps=round(1.0 / h))
    assert (traj.position[0, :, 2] - HALF).abs().max() < 1e-3


def test_bad_inputs_raise_naming_the_argument():
    model = cube_model()
    good = State.make([[0.0, 0.0, 0.1]])
    with pytest.raises(ValueError, match="state.position"):
        step(model, good._replace(position=torch.tensor([[0.0, float("nan"), 0.1]])))
    with pytest.raises(ValueError, match="state.velocity"):
        step(model, good._replace(velocity=torch.zeros(2, 3)))
    with pytest.raises(ValueError, match="state.quat"):
        step(model, good._replace(quat=torch.tensor([[2.0, 0.0, 0.0, 0.0]])))
    with pytest.raises(ValueError, match="action"):
        step(model, good, torch.tensor([[float("nan"), 0.0, 0.0]]))
    with pytest.raises(ValueError, match="actions"):
        rollout(model, good, torch.zeros(1, 5, 2))
    with pytest.raises(ValueError, match="mass"):
        PhysicalParams.from_values(-0.1, [1e-4, 1e-4, 1e-4], 0.5, 0.5, 0.5)
    with pytest.raises(ValueError, match="inertia"):
        PhysicalParams.from_values(0.1, [1e-4, -1e-4, 1e-4], 0.5, 0.5, 0.5)
    with pytest.raises(ValueError, match="mu"):
        PhysicalParams.from_values(0.1, [1e-4, 1e-4, 1e-4], -0.5, 0.5, 0.5)
    with pytest.raises(ValueError, match="gaussians"):
        dataclasses.replace(model, gaussians=SphereGaussians.from_spheres(torch.zeros(0, 3), torch.zeros(0)))
    with pytest.raises(ValueError, match="dt"):
        dataclasses.replace(model, dt=0.0)


def test_parameters_map_back_to_their_values():
    inertia = torch.tensor([[2.0, 0.3, 0.0], [0.3, 1.0, 0.1], [0.0, 0.1, 1.5]]) * 1e-4
    p = PhysicalParams.from_values(0.2, inertia, 0.4, 0.6, 0.3)
    torch.testing.assert_close(p.inertia, inertia)
    for name, value in (("mass", 0.2), ("mu", 0.4), ("stiffness", 0.6), ("damping", 0.3)):
        assert getattr(p, name).item() == pytest.approx(value, rel=1e-5)
    g = box_gaussians([0.04, 0.02, 0.06], per_edge=6)
    assert (g.centers.abs() + g.radii[:, None] <= torch.tensor([0.02, 0.01, 0.03]) + 1e-7).all()


def _tilted_sliding_cubes(batch: int, dtype) -> State:
    angle = torch.linspace(0.0, 0.4, batch, dtype=dtype)
    quat = torch.stack((torch.cos(angle / 2), torch.sin(angle / 2), 0 * angle, 0 * angle), 1)
    position = torch.tensor([[0.0, 0.0, 0.04]], dtype=dtype).repeat(batch, 1)
    velocity = torch.stack((torch.linspace(0.0, 0.6, batch, dtype=dtype), 0 * angle, 0 * angle), 1)
    return State.make(position, quat=quat, velocity=velocity)


def test_model_to_casts_every_tensor_and_simulates_the_same():
    model = cube_model().to(dtype=torch.float64)
    assert all(t.dtype == torch.float64 for t in (*model.gaussians.tensors(), *model.params.tensors()))
    a = rollout(model, _tilted_sliding_cubes(4, torch.float64), steps=50)
    b = rollout(cube_model(dtype=torch.float64), _tilted_sliding_cubes(4, torch.float64), steps=50)
    torch.testing.assert_close(a.position, b.position)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU here")
def test_a_batch_runs_on_cuda_as_on_the_cpu():
    """64 cubes dropped tilted and sliding, 240 steps in float64 on both devices, and the gradient
    of where they end up with respect to mu."""
    ends, grads = [], []
    for device in ("cpu", "cuda"):
        model = cube_model(dtype=torch.float64).to(device)
        mu_raw = model.params.mu_raw.clone().requires_grad_()
        model = dataclasses.replace(model, params=dataclasses.replace(model.params, mu_raw=mu_raw))
        traj = rollout(model, State(*(t.to(device) for t in _tilted_sliding_cubes(64, torch.float64))), steps=240)
        end = traj.position[:, -1]
        (grad,) = torch.autograd.grad(end[:, 0].sum(), mu_raw)
        ends.append(end.detach().cpu())
        grads.append(grad.cpu())
    assert (ends[0][:, 0].max() - ends[0][:, 0].min()) > 0.02  # they slid different distances
    torch.testing.assert_close(ends[1], ends[0], atol=1e-9, rtol=0)
    torch.testing.assert_close(grads[1], grads[0], atol=1e-9, rtol=1e-6)


def _face_push(speed: float, mode: str | None) -> float:
    """A 5 cm, 0.1 kg cube (mu 0.4) pushed face-on by a 1 cm sphere at `speed` m/s for 4 frames of 1/30 s,
    then left for 10: the cube's final travel, m, in MuJoCo with a mocap pusher (mode None) or here."""
    dt, frames, moving = 1.0 / 480, 14, 4
    if mode is None:
        m = mujoco.MjModel.from_xml_string(box_on_plane_xml(SIDE, MASS, 0.4, dt, pusher_radius=0.01))
        d = mujoco.MjData(m)
        d.qpos[:3] = [0.0, 0.0, HALF]
        d.mocap_pos[0] = [0.0, -HALF - 0.011, HALF]
        for t in range(frames * 16):
            if t < moving * 16:
                d.mocap_pos[0, 1] += speed * dt
            mujoco.mj_step(m, d)
        return float(d.qpos[1])
    model = cube_model(0.4, dt=dt, pusher_points=torch.zeros(1, 3), pusher_radii=torch.tensor([0.01]),
                       contact=ContactSettings(pusher=mode))
    push = torch.tensor([0.0, speed, 0.0])
    actions = torch.stack([push if t < moving * 16 else 0 * push for t in range(frames * 16)])[None]
    start = State.make([[0.0, 0.0, HALF]], pusher=[0.0, -HALF - 0.011, HALF])
    return float(rollout(model, start, actions).position[0, -1, 1])


@pytest.mark.parametrize("speed", [0.1, 0.3])
def test_mocap_pusher_sinks_in_and_pushes_as_far_as_mujocos(speed):
    """MuJoCo's mocap pusher has no velocity in the contact's damper: it sinks about
    (damping v + mu g) / stiffness into the cube (13 mm at 0.3 m/s, past its own 1 cm radius, which
    a shell of spheres' soft distance cannot follow: the solid grid does) and the cube lags it."""
    reference = _face_push(speed, None)
    assert _face_push(speed, "mocap") == pytest.approx(reference, rel=0.1)
    if speed > 0.2:  # a driven pusher's contact sees the relative velocity: it pushes farther
        assert _face_push(speed, "driven") > 1.15 * reference
