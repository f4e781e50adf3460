"""Stage I (SG-GS) on a small MuJoCo multi-view set of the library cube."""

import dataclasses

import numpy as np
import pytest
import torch

from cgwm_env.cli import main
from cgwm_env.data.dataset import load_dataset
from cgwm_env.data.synth import synth_multiview
from cgwm_env.learn import stage1
from cgwm_env.physics.collision import SoftSDFSettings, soft_sdf, sphere_distance
from cgwm_env.physics.gaussians import SphereGaussians

HALF = 0.025  # the library cube: 5 cm, body frame at its centre
SETTINGS = stage1.Settings(grid=24, geometry_iterations=80, appearance_iterations=40, densify_every=30, batch=3)


@pytest.fixture(scope="module")
def cube_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("sggs")
    views = synth_multiview("cube", root / "views", n_views=20, size=48, seed=0)
    summary = stage1.run_init(views, root / "out" / "cube.npz", SETTINGS, holdout_every=5, mesh_resolution=48,
                            progress=False)
    return views, root / "out", summary


def _box_distance(points: np.ndarray) -> np.ndarray:
    """Signed distance of points (P, 3) to the cube's surface, m."""
    q = np.abs(points) - HALF
    return np.linalg.norm(np.maximum(q, 0.0), axis=1) + np.minimum(q.max(1), 0.0)


def test_fits_cube_masks_on_held_out_views(cube_run):
    views, out, summary = cube_run
    assert summary["views"] == 16 and summary["held_out"] == 4
    assert summary["iou"] >= 0.9
    assert summary["psnr"] > 20.0
    g = SphereGaussians.load_npz(out / "cube.npz")
    # The exact sphere union hugs the true surface.
    points = np.random.default_rng(0).uniform(-HALF, HALF, (2000, 3))
    axis = np.random.default_rng(1).integers(0, 3, 2000)
    points[np.arange(2000), axis] = HALF * np.sign(points[np.arange(2000), axis])
    dist = sphere_distance(g, torch.as_tensor(points, dtype=torch.float32), settings=None)
    assert float(dist.abs().mean()) < 2e-3


def test_geometry_stage_improves_the_hull(cube_run):
    views, _, _ = cube_run
    dataset = load_dataset(views)
    train = list(range(0, 20, 2))
    images, masks, cameras = stage1._views(dataset, train)
    hull = stage1.initialize(dataset, SETTINGS, train)
    fitted = stage1.fit_geometry(hull, masks, cameras, dataclasses.replace(SETTINGS, geometry_iterations=40))
    assert stage1.evaluate(fitted, dataset, train)["iou"] > stage1.evaluate(hull, dataset, train)["iou"] + 0.01
    # Appearance frozen: opacities as initialized, every colour one of the hull's.
    assert torch.equal(fitted.opacity_logits, hull.opacity_logits[:1].expand(len(fitted)))
    assert set(map(tuple, fitted.colors.tolist())) <= set(map(tuple, hull.colors.tolist()))


def test_saved_files_load_back_equal(cube_run):
    _, out, _ = cube_run
    from_npz = SphereGaussians.load_npz(out / "cube.npz")
    from_ply = SphereGaussians.load_ply(out / "cube.ply")
    assert len(from_npz) > 100 and len(from_npz) == len(from_ply)
    for a, b in zip(from_npz.tensors(), from_ply.tensors()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_mesh_lies_on_cube_surface(cube_run):
    _, out, _ = cube_run
    g = SphereGaussians.load_npz(out / "cube.npz")
    lines = (out / "cube.obj").read_text().splitlines()
    verts = np.array([[float(x) for x in line.split()[1:]] for line in lines if line.startswith("v ")])
    faces = np.array([[int(i) for i in line.split()[1:]] for line in lines if line.startswith("f ")])
    assert len(verts) > 500 and faces.min() == 1 and faces.max() == len(verts)
    # The vertices are on the soft SDF's zero level set (to a fraction of the 48-cell grid) ...
    phi = sphere_distance(g, torch.as_tensor(verts, dtype=torch.float32))
    assert float(phi.abs().mean()) < 3e-4
    # ... which lies a little outside the exact sphere union (LogSumExp and the clamp), near the cube.
    d = _box_distance(verts)
    assert 0.0 < d.mean() < 5e-3 and np.abs(d).max() < 8e-3
    # Outward faces: the mesh's signed volume is positive and close to the cube's.
    v0, v1, v2 = (verts[faces[:, k] - 1] for k in range(3))
    volume = np.einsum("ij,ij->i", v0, np.cross(v1, v2)).sum() / 6.0
    assert (2 * HALF) ** 3 < volume < (2 * HALF + 8e-3) ** 3


def test_bad_input_raises(tmp_path, cube_run):
    views, _, _ = cube_run
    with pytest.raises(ValueError, match="views_dir"):
        stage1.run_init(tmp_path / "missing", tmp_path / "g.npz", SETTINGS, progress=False)
    with pytest.raises(ValueError, match="out_file"):
        stage1.run_init(views, tmp_path / "g.ply", SETTINGS, progress=False)
    dataset = load_dataset(views)
    empty = dataclasses.replace(dataset, masks=torch.zeros_like(dataset.masks))
    with pytest.raises(ValueError, match="masks of views"):
        stage1.initialize(empty, SETTINGS)
    one_empty = dataset.masks.clone()
    one_empty[3] = 0.0
    with pytest.raises(ValueError, match=r"masks of views \[3\]"):
        stage1.fit(dataclasses.replace(dataset, masks=one_empty), SETTINGS)
    with pytest.raises(ValueError, match="views"):
        stage1.initialize(dataset, SETTINGS, views=[0, 99])
    with pytest.raises(ValueError, match="at least 2 views"):
        stage1.initialize(dataset, SETTINGS, views=[0])
    with pytest.raises(ValueError, match="layers"):
        stage1.Settings(layers=-1)


def test_sphere_distance_matches_soft_sdf_and_exact_distance():
    gen = torch.Generator().manual_seed(0)
    centers = torch.rand(300, 3, generator=gen) * 0.05
    radii = 0.002 + 0.002 * torch.rand(300, generator=gen)
    g = SphereGaussians.from_spheres(centers, radii)
    points = torch.rand(50, 3, generator=gen) * 0.06 - 0.005
    settings = SoftSDFSettings()
    full = soft_sdf(points, centers, radii, settings)[0]
    torch.testing.assert_close(sphere_distance(g, points, settings), full, rtol=1e-5, atol=1e-7)
    exact = (torch.cdist(points, centers) - radii).min(1).values
    torch.testing.assert_close(sphere_distance(g, points, settings=None), exact)


def test_densify_clones_small_splits_large_and_prunes():
    centers = torch.zeros(4, 3)
    log_scales = torch.log(torch.tensor([0.001, 0.002, 0.001, 0.01]))  # the last is too large
    g = SphereGaussians(centers, log_scales, torch.zeros(4), torch.rand(4, 3))
    grad = torch.tensor([1.0, 2.0, 0.0, 0.0])
    settings = stage1.Settings(densify_fraction=0.5)
    out = stage1.densify_and_prune(g, grad, 0.001, settings, torch.Generator().manual_seed(0))
    # Gaussian 0 is cloned (same scale), 1 split into two of scale / 1.6, 2 kept, 3 pruned.
    assert sorted(out.scales.tolist()) == pytest.approx([0.001, 0.001, 0.001, 0.002 / 1.6, 0.002 / 1.6])


def test_command_line_entry_writes_all_outputs(tmp_path, cube_run, capsys):
    views, _, _ = cube_run
    assert main(["init", "--data", str(views), "--gaussians", str(tmp_path / "g.npz"), "--grid", "12",
                 "--geometry-iterations", "4", "--appearance-iterations", "4", "--mesh-resolution", "24",
                 "--holdout-every", "5"]) == 0
    assert "16 views (4 held out)" in capsys.readouterr().out
    assert len(SphereGaussians.load_ply(tmp_path / "g.ply")) == len(SphereGaussians.load_npz(tmp_path / "g.npz"))
    assert (tmp_path / "g.obj").read_text().startswith("v ")
