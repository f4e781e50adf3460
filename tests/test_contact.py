import math

import pytest
import torch

from cgwm_env.physics.contact import ContactSettings, contact_forces, contact_rows, project_to_cone


def _contacts(seed=0, batch=2, contacts=3):
    """Row velocities (B, 3, C), applied velocities, gaps (B, C) and the factors (G, G W) of the inverse
    mass matrix of a random rigid body (B, 3C, 6) each, float64."""
    g = torch.Generator().manual_seed(seed)
    row_vel = (torch.rand(batch, 3, contacts, generator=g, dtype=torch.float64) - 0.6) * 0.2
    applied = torch.full((batch, 3, contacts), 0.0, dtype=torch.float64)
    applied[:, 0] = -9.81 / 500
    phi = (torch.rand(batch, contacts, generator=g, dtype=torch.float64) - 0.7) * 1e-4
    directions = torch.randn(batch, 3 * contacts, 6, generator=g, dtype=torch.float64)
    return row_vel, applied, phi, directions, directions * 5.0


def test_contact_forces_gradcheck():
    row_vel, applied, phi, directions, weighted = _contacts()
    settings = ContactSettings(softplus_sharpness=50.0, activity_width=1e-3)

    def forces(row_vel, phi, directions, k, d, mu):
        return contact_forces(row_vel, applied, phi, lambda: (directions, directions * 5.0), k, d, mu, 0.002, settings)

    inputs = [t.clone().requires_grad_() for t in
              (row_vel, phi, directions, torch.tensor([2500.0, 900.0], dtype=torch.float64),
               torch.tensor([100.0, 40.0], dtype=torch.float64), torch.tensor([0.5, 0.8], dtype=torch.float64))]
    assert torch.autograd.gradcheck(forces, inputs)


def test_plain_rows_gradcheck():
    g = torch.Generator().manual_seed(1)
    row_vel = (torch.rand(2, 4, 3, generator=g, dtype=torch.float64) - 0.7) * 0.2
    phi = (torch.rand(2, 3, generator=g, dtype=torch.float64) - 0.5) * 0.002
    settings = ContactSettings(gain_mode="plain", softplus_sharpness=50.0)

    def forces(row_vel, phi, k, d):
        return contact_forces(row_vel, torch.zeros_like(row_vel), phi, None, k, d, None, 0.01, settings)

    inputs = [t.clone().requires_grad_() for t in
              (row_vel, phi, torch.tensor([50.0, 70.0], dtype=torch.float64), torch.tensor([1.5, 0.9], dtype=torch.float64))]
    assert torch.autograd.gradcheck(forces, inputs)


def test_every_force_stays_in_the_friction_cone():
    row_vel, applied, phi, directions, weighted = _contacts(seed=3, batch=8, contacts=5)
    mu = torch.tensor([0.1, 0.3, 0.5, 0.8, 1.0, 1.2, 0.2, 0.6], dtype=torch.float64)
    f = contact_forces(row_vel, applied, phi, lambda: (directions, weighted), torch.full((8,), 2500.0, dtype=torch.float64),
                       torch.full((8,), 100.0, dtype=torch.float64), mu, 0.002, ContactSettings())
    assert (f[:, 0] >= 0).all()
    # the pyramid |f1| + |f2| <= mu f_n (n_d = 4, edges along t1 and t2)
    assert (f[:, 1].abs() + f[:, 2].abs() <= mu[:, None] * f[:, 0] * (1 + 1e-9) + 1e-12).all()


def test_projection_onto_the_cone_polygon():
    radius = torch.tensor([[1.0]], dtype=torch.float64)
    inside = torch.tensor([[[0.3], [0.2]]], dtype=torch.float64)
    assert torch.equal(project_to_cone(inside, radius, 4), inside)
    # beyond the pyramid's side |f1| + |f2| = 1, the nearest point on that side
    outside = torch.tensor([[[1.0], [1.0]]], dtype=torch.float64)
    torch.testing.assert_close(project_to_cone(outside, radius, 4), torch.tensor([[[0.5], [0.5]]], dtype=torch.float64))
    # beyond a vertex, the vertex
    far = torch.tensor([[[3.0], [0.1]]], dtype=torch.float64)
    torch.testing.assert_close(project_to_cone(far, radius, 4), torch.tensor([[[1.0], [0.0]]], dtype=torch.float64))
    # many edges approach the disc
    direction = torch.tensor([[[math.cos(0.3)], [math.sin(0.3)]]], dtype=torch.float64)
    assert project_to_cone(5 * direction, radius, 64).norm(dim=1).item() == pytest.approx(1.0, abs=2e-3)


def test_plain_rows_are_the_dual_cone_edges():
    mu = torch.tensor([0.3, 1.2])
    edges = contact_rows(mu, ContactSettings(gain_mode="plain", n_dirs=8))
    lam = torch.rand(2, 1000, 8)
    frame_force = lam @ edges.transpose(1, 2)  # (normal, t1, t2) components
    assert (frame_force[..., 1:].norm(dim=-1) <= mu[:, None] * frame_force[..., 0] + 1e-6).all()
    assert torch.equal(contact_rows(mu, ContactSettings()), torch.eye(3).expand(2, 3, 3))


def test_bad_contact_settings_raise():
    with pytest.raises(ValueError, match="n_dirs"):
        ContactSettings(n_dirs=3)
    with pytest.raises(ValueError, match="gain_mode"):
        ContactSettings(gain_mode="stiff")
    with pytest.raises(ValueError, match="iterations"):
        ContactSettings(iterations=0)
