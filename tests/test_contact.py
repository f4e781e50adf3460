import pytest
import torch

from cgwm_env.physics.contact import ContactSettings, cone_edges, contact_forces


def _rows(seed=0):
    g = torch.Generator().manual_seed(seed)
    batch, contacts, n_dirs = 2, 3, 4
    row_vel = (torch.rand(batch, n_dirs, contacts, generator=g, dtype=torch.float64) - 0.7) * 0.2
    phi = (torch.rand(batch, contacts, generator=g, dtype=torch.float64) - 0.5) * 0.002
    coupling_matrix = torch.rand(batch, contacts * n_dirs, contacts * n_dirs, generator=g, dtype=torch.float64)
    coupling_matrix = (coupling_matrix + coupling_matrix.transpose(1, 2)) * 5.0
    return row_vel, phi, coupling_matrix


@pytest.mark.parametrize("mode", ["effective_mass", "plain"])
def test_contact_forces_gradcheck(mode):
    row_vel, phi, a = _rows()
    settings = ContactSettings(gain_mode=mode, softplus_sharpness=50.0)
    gains = (torch.tensor([0.5, 0.7], dtype=torch.float64), torch.tensor([0.5, 0.3], dtype=torch.float64))
    if mode == "plain":
        gains = (gains[0] * 100, gains[1] * 3)

    def forces(row_vel, phi, a, k, d):
        diag = a.diagonal(dim1=1, dim2=2).reshape(row_vel.shape)
        coupling = lambda w: (a @ w.reshape(w.shape[0], -1, 1)).reshape(w.shape)  # noqa: E731
        return contact_forces(row_vel, phi, lambda: diag, coupling, k, d, 0.01, settings)

    inputs = [t.clone().requires_grad_() for t in (row_vel, phi, a, *gains)]
    assert torch.autograd.gradcheck(forces, inputs)


def test_cone_edges_keep_every_force_in_the_friction_cone():
    mu = torch.tensor([0.3, 1.2])
    for n_dirs in (4, 8):
        edges = cone_edges(mu, n_dirs)
        lam = torch.rand(2, 1000, n_dirs)
        frame_force = lam @ edges.transpose(1, 2)  # (normal, t1, t2) components
        tangential = frame_force[..., 1:].norm(dim=-1)
        assert (tangential <= mu[:, None] * frame_force[..., 0] + 1e-6).all()
        assert (frame_force[..., 0] >= 0).all()


def test_single_row_is_deadbeat_in_effective_mass_mode():
    # One row with inverse effective mass s: with kappa + delta = 1 the row's velocity after the
    # step is -kappa phi / h, whatever its velocity before.
    dt, inv_mass, kappa, delta = 0.002, 10.0, 0.6, 0.4
    settings = ContactSettings(softplus_sharpness=1e6)
    row_vel = torch.tensor([[[-0.3]]], dtype=torch.float64)
    phi = torch.tensor([[0.0001]], dtype=torch.float64)
    lam = contact_forces(row_vel, phi, lambda: torch.full_like(row_vel, inv_mass), lambda w: inv_mass * w,
                         torch.tensor([kappa], dtype=torch.float64), torch.tensor([delta], dtype=torch.float64),
                         dt, settings)
    after = row_vel + dt * inv_mass * lam
    assert after.item() == pytest.approx(-kappa * 0.0001 / dt, rel=1e-3)


def test_bad_contact_settings_raise():
    with pytest.raises(ValueError, match="n_dirs"):
        ContactSettings(n_dirs=3)
    with pytest.raises(ValueError, match="gain_mode"):
        ContactSettings(gain_mode="stiff")
