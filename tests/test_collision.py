import pytest
import torch

from cgwm_env.physics.collision import (SoftSDFSettings, contact_frames, plane_sdf, soft_sdf, solid_grid, solid_sdf,
                                        support_spheres, surface_points)
from cgwm_env.physics.gaussians import box_gaussians


def test_soft_sdf_gradcheck():
    torch.manual_seed(0)
    settings = SoftSDFSettings(beta=300.0, gamma=400.0, delta=0.004)
    centers = (torch.rand(5, 3, dtype=torch.float64) - 0.5) * 0.04
    radii = torch.rand(5, dtype=torch.float64) * 0.01 + 0.005
    points = (torch.rand(2, 3, 3, dtype=torch.float64) - 0.5) * 0.08
    for inputs in ((points, centers, radii),):
        inputs = [t.clone().requires_grad_() for t in inputs]
        assert torch.autograd.gradcheck(lambda p, c, r: soft_sdf(p, c, r, settings), inputs)


def test_single_sphere_distance_normal_and_projection():
    settings = SoftSDFSettings()
    center = torch.tensor([[0.01, -0.02, 0.03]], dtype=torch.float64)
    radius = torch.tensor([0.02], dtype=torch.float64)
    direction = torch.tensor([[1.0, 2.0, -2.0]], dtype=torch.float64) / 3.0
    points = center + 0.03 * direction  # 1 cm outside the sphere
    phi, normals = soft_sdf(points, center, radius, settings)
    assert phi.item() == pytest.approx(0.01, abs=1e-6)
    torch.testing.assert_close(normals, direction)
    surface = surface_points(points, phi, normals)
    assert (surface - center).norm().item() == pytest.approx(0.02, abs=1e-6)


def test_soft_min_is_close_to_hard_min_and_clamps_penetration():
    settings = SoftSDFSettings(beta=2000.0, gamma=2000.0, delta=0.005)
    centers = torch.tensor([[0.0, 0.0, 0.0], [0.03, 0.0, 0.0], [0.0, 0.05, 0.0]])
    radii = torch.tensor([0.01, 0.015, 0.01])
    outside = torch.tensor([[-0.02, 0.0, 0.0], [0.0, 0.0, 0.025], [0.06, 0.01, 0.0]])
    hard = ((outside[:, None] - centers).norm(dim=-1) - radii).min(1).values
    phi, _ = soft_sdf(outside, centers, radii, settings)
    # LogSumExp lies below the hard min by at most log(N) / beta.
    assert (phi <= hard + 1e-6).all() and (phi >= hard - torch.log(torch.tensor(3.0)) / 2000 - 1e-4).all()
    deep, _ = soft_sdf(torch.tensor([[0.03, 0.0, 0.0]]), centers, radii, settings)
    assert deep.item() == pytest.approx(-0.005, abs=2e-4)  # the clamp reports -delta deep inside


def _zero_above(centers, radii, point, settings) -> float:
    """Height (m) above `point` (3,) where the clamped soft distance turns positive, to 0.01 mm."""
    heights = torch.arange(-0.002, 0.006, 1e-5, dtype=torch.float64)
    phi, _ = soft_sdf(point + heights[:, None] * heights.new_tensor([0.0, 0.0, 1.0]), centers, radii, settings)
    return float(heights[(phi > 0).nonzero()[0, 0]])


def test_a_sharper_logsumexp_keeps_a_dense_sphere_sets_surface_near_its_union():
    # Stage I's kind of geometry: 729 spheres of 2.5 mm on a 1.7 mm grid, so dozens lie within a
    # millimetre of a surface point and LogSumExp's soft minimum falls well below the nearest gap.
    axis = torch.arange(-0.0075, 0.0076, 0.0017, dtype=torch.float64)
    centers = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    radii = torch.full((len(centers),), 0.0025, dtype=torch.float64)
    top = centers.new_tensor([0.0, 0.0, float(centers[:, 2].max()) + 0.0025])  # on the union's top face
    soft = _zero_above(centers, radii, top, SoftSDFSettings(beta=2000.0))
    sharp = _zero_above(centers, radii, top, SoftSDFSettings(beta=10000.0))
    assert soft > 0.0015  # 1.7 mm out at the default beta (the clamp's own ~0.8 mm included)
    assert sharp < 0.001 and soft - sharp > 0.0008


def test_plane_distance():
    points = torch.tensor([[0.0, 0.0, 0.3], [1.0, 2.0, -0.1]])
    d = plane_sdf(points, torch.tensor([0.0, 0.0, 1.0]), 0.1)
    torch.testing.assert_close(d, torch.tensor([0.2, -0.2]))


def test_contact_frames_are_right_handed_orthonormal():
    normals = torch.nn.functional.normalize(torch.randn(100, 3), dim=-1)
    normals[0] = torch.tensor([1.0, 0.0, 0.0])
    normals[1] = torch.tensor([0.0, 0.0, -1.0])
    frames = contact_frames(normals)
    torch.testing.assert_close(frames @ frames.transpose(-1, -2), torch.eye(3).expand(100, 3, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.linalg.det(frames), torch.ones(100))
    torch.testing.assert_close(frames[:, 0], normals)


def test_bad_settings_and_empty_sphere_set_raise():
    with pytest.raises(ValueError, match="beta"):
        SoftSDFSettings(beta=-1.0)
    with pytest.raises(ValueError, match="centers"):
        soft_sdf(torch.zeros(1, 3), torch.zeros(0, 3), torch.zeros(0), SoftSDFSettings())


def test_support_spheres_are_the_ones_a_plane_can_touch():

    cube = box_gaussians(0.05, 10)
    corners = support_spheres(cube.centers, cube.radii)
    assert len(corners) == 8 and torch.allclose(cube.centers[corners].abs(), torch.tensor(0.0225))
    gen = torch.Generator().manual_seed(0)
    centers, radii = torch.randn(300, 3, generator=gen) * 0.03, torch.rand(300, generator=gen) * 0.01 + 0.001
    chosen = set(support_spheres(centers, radii).tolist())
    directions = torch.nn.functional.normalize(torch.randn(500, 3, generator=gen), dim=-1)
    lowest = (directions @ centers.T + radii).argmax(1)  # the sphere a plane with normal -u touches first
    assert set(lowest.tolist()) <= chosen and len(chosen) < 150


def test_edge_spheres_move_a_boxs_soft_edges_out_to_the_box():
    """box_gaussians' shell of 2.5 mm spheres rounds a 5 cm cube's edges off: 1 mm out from the
    middle of an edge the soft distance reads 2.3 mm (a finger touches late there); with 0.7 mm
    spheres along the edges it reads -0.2 mm (the soft minimum over the many small spheres lies
    about 1 mm outside them: a finger touches a little early), and the faces read as before."""
    import itertools
    import math


    plain, edged = box_gaussians(0.05, 10), box_gaussians(0.05, 10, edge_radius=0.0007)
    assert len(edged) == len(plain) + 560 and torch.equal(edged.centers[: len(plain)], plain.centers)
    torch.testing.assert_close(edged.radii[len(plain):], torch.full((560,), 0.0007))
    edges, faces = [], []
    for axis in range(3):
        for a, b in itertools.product((-1.0, 1.0), repeat=2):
            out = torch.tensor([a, b]) / math.sqrt(2)
            point = torch.zeros(3)
            point[[i for i in range(3) if i != axis]] = torch.tensor([a, b]) * 0.025 + 0.001 * out
            edges.append(point)
        for sign in (-1.0, 1.0):
            point = torch.zeros(3)
            point[axis] = sign * 0.026
            faces.append(point)
    edges, faces = torch.stack(edges), torch.stack(faces)
    settings = SoftSDFSettings()
    plain_edges = soft_sdf(edges, plain.centers, plain.radii, settings)[0]
    edged_edges = soft_sdf(edges, edged.centers, edged.radii, settings)[0]
    assert (plain_edges > 0.002).all()
    assert (edged_edges.abs() < 0.0005).all()
    torch.testing.assert_close(soft_sdf(faces, edged.centers, edged.radii, settings)[0],
                               soft_sdf(faces, plain.centers, plain.radii, settings)[0], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="edge_radius"):
        box_gaussians(0.05, 10, edge_radius=0.03)


def test_solid_distance_keeps_growing_inside_a_shell_of_spheres():
    """Inside a hollow shell the soft distance measures to the shell and turns back; the solid's
    distance (collision.solid_sdf) keeps falling to the centre with the face's outward normal."""
    g = box_gaussians(0.05, 10)
    grid = solid_grid(g)
    depth = torch.linspace(-0.01, 0.02, 31)  # m into the -y face, from 1 cm outside
    points = torch.stack([torch.full_like(depth, 0.004), depth - 0.025, torch.full_like(depth, -0.003)], -1)
    phi, normals = solid_sdf(points, g.centers, g.radii, grid, SoftSDFSettings())
    assert (phi.diff() < 0).all()
    torch.testing.assert_close(phi, -depth, atol=1.5e-3, rtol=0)
    assert (normals[:, 1] < -0.5).all() and (normals[depth > 0.003, 1] < -0.97).all()  # bumps tilt it at the shell
    soft, _ = soft_sdf(points, g.centers, g.radii, SoftSDFSettings())
    assert soft[-1] > soft[15]  # the shell's own distance turns back past the shell
    inside = grid.inside()
    assert inside.abs().max() < 0.025 + grid.spacing and len(inside) * grid.spacing**3 == pytest.approx(0.05**3, rel=0.1)


def test_solid_sdf_gradcheck():
    g = box_gaussians(0.02, 4).to(torch.float64)
    centers, radii = g.centers, g.radii
    grid = solid_grid(g)
    settings = SoftSDFSettings(beta=300.0)
    points = torch.tensor([[[0.003, -0.012, 0.001], [0.002, -0.004, 0.0005], [0.001, -0.0088, 0.002],
                            [0.02, 0.001, -0.003]]], dtype=torch.float64)  # outside, deep, blended, outside
    inputs = [t.clone().requires_grad_() for t in (points, centers, radii)]
    assert torch.autograd.gradcheck(lambda p, c, r: solid_sdf(p, c, r, grid, settings), inputs)
