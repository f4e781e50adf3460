"""Stage I, sphere-geometry Gaussian splatting (SG-GS; paper section III-C and appendix A).

Multi-view images, masks and calibrated cameras -> SphereGaussians that both render and collide:

1. a dense visual hull: a voxel grid carved by every view's mask; the voxels of the hull's outer
   `layers` become Gaussians (centre = voxel centre, scale from the voxel spacing, colour from
   the views facing the voxel);
2. the geometry stage: centres and isotropic scales fitted so that the rendered alpha matches
   the masks (L1), opacity and colour frozen; densify (clone or split where the positional
   gradient is large) and prune (vanishing or too large), every Gaussian staying a sphere;
3. the appearance stage: opacity and colour fitted with (1 - lambda) L1 + lambda D-SSIM,
   geometry frozen; Gaussians left nearly transparent are pruned at the end.

While fitting, the images are composited through their masks over a random colour per step, so
the fit sees only the object and a transparent Gaussian cannot pass for background. Held-out
views are scored against the images as captured, the renders drawn over the dataset's
background image.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cgwm_env.data.dataset import load_dataset
from cgwm_env.physics import math3d
from cgwm_env.progress import bar as progress_bar
from cgwm_env.progress import say
from cgwm_env.progress import summary as summary_line
from cgwm_env.physics.collision import SoftSDFSettings, solid_grid, sphere_distance
from cgwm_env.physics.gaussians import SphereGaussians
from cgwm_env.render import render
from cgwm_env.render.metrics import d_ssim, psnr


@dataclass(frozen=True)
class Settings:
    """grid: hull voxels along the longest side of the object's box; layers: voxel layers under
    the hull's surface kept as Gaussians (0: the whole hull); scale: initial Gaussian scale in
    voxel spacings; opacity: the opacity kept through the geometry stage; batch: views per step;
    lr_center: centre step in initial scales; densify_every: geometry steps between densify and
    prune; densify_fraction: the share of Gaussians with the largest positional gradient cloned
    (small ones) or split (large ones); max_gaussians: cap on densification; lambda_dssim: the
    D-SSIM weight; min_opacity: opacities below it are pruned after the appearance stage."""

    grid: int = 60
    layers: int = 1
    scale: float = 0.5
    opacity: float = 0.9
    geometry_iterations: int = 300
    appearance_iterations: int = 300
    batch: int = 4
    lr_center: float = 0.2
    lr_log_scale: float = 0.01
    lr_opacity: float = 0.05
    lr_color: float = 0.02
    densify_every: int = 100
    densify_fraction: float = 0.05
    max_gaussians: int = 30000
    lambda_dssim: float = 0.2
    min_opacity: float = 0.05
    seed: int = 0

    def __post_init__(self):
        for name, least in (("grid", 2), ("batch", 1), ("densify_every", 1), ("max_gaussians", 1), ("layers", 0),
                            ("geometry_iterations", 0), ("appearance_iterations", 0), ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name}: expected an int >= {least}, got {value!r}")
        for name in ("scale", "lr_center", "lr_log_scale", "lr_opacity", "lr_color"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: expected a positive number, got {getattr(self, name)}")
        for name in ("opacity", "densify_fraction", "lambda_dssim", "min_opacity"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name}: expected a number in [0, 1), got {getattr(self, name)}")


def initialize(dataset, settings: Settings = Settings(), views=None) -> SphereGaussians:
    """Gaussians on the outer `settings.layers` voxel layers of the visual hull of `views`
    (indices into the dataset; default all), coloured from the views facing them."""
    images, masks, cameras = _views(dataset, views)
    if len(cameras) < 2:
        raise ValueError(f"views: expected at least 2 views for a visual hull, got {len(cameras)}")
    occupied, origin, spacing = visual_hull(masks, cameras, settings.grid)
    keep = occupied
    if settings.layers > 0:
        inner = occupied.clone()
        for _ in range(settings.layers):  # erode by the 26-neighbourhood, outside counted as empty
            inner = -F.max_pool3d(-inner[None, None].float(), 3, 1, 1)[0, 0] > 0.5
        keep = occupied & ~inner
    index = keep.nonzero()
    centers = origin + (index.to(origin.dtype) + 0.5) * spacing
    # Outward normals: towards the empty voxels around each kept one.
    empty = F.pad((~occupied).float()[None, None], (1, 1, 1, 1, 1, 1), value=1.0)[0, 0]
    normals = torch.zeros_like(centers)
    for offset in torch.cartesian_prod(*[torch.tensor([-1, 0, 1])] * 3):
        if offset.abs().sum() > 0:
            hit = empty[tuple((index + 1 + offset).T)]
            direction = offset.to(centers.dtype)
            normals += hit[:, None] * direction / direction.norm()
    normals = normals / normals.norm(dim=1, keepdim=True).clamp(min=1e-9)
    colors = _colors(centers, normals, images, masks, cameras)
    log_scale = math.log(settings.scale * spacing)
    logit = math.log(settings.opacity / (1.0 - settings.opacity))
    n = len(centers)
    return SphereGaussians(centers, torch.full((n,), log_scale), torch.full((n,), logit), colors)


def visual_hull(masks: torch.Tensor, cameras: list, grid: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Voxels whose centres fall inside every view's mask: occupancy (X, Y, Z) bool, the grid's
    corner `origin` (3,) m and its `spacing` m, with `grid` voxels along the box's longest side."""
    center, radius = _bounding_sphere(masks, cameras)
    for _ in range(4):  # a coarse carve finds the object's box; grow the sphere if it was too small
        lo, coarse = center - radius, 32
        step = 2.0 * radius / coarse
        inside = _carve(_grid_points(lo, step, (coarse,) * 3), masks, cameras).view(coarse, coarse, coarse)
        if not inside.any():
            raise ValueError("masks: the views' masks have no point in common; check the masks and cameras")
        index = inside.nonzero()
        if index.min() > 0 and index.max() < coarse - 1:
            break
        radius = 2.0 * radius
    box_lo = lo + (index.min(0).values - 1) * step
    box_hi = lo + (index.max(0).values + 2) * step
    spacing = float((box_hi - box_lo).max()) / grid
    shape = tuple(int(n) for n in torch.ceil((box_hi - box_lo) / spacing))
    occupied = _carve(_grid_points(box_lo, spacing, shape), masks, cameras).view(shape)
    return occupied, box_lo, spacing


def fit_geometry(gaussians: SphereGaussians, masks, cameras, settings: Settings = Settings(),
                 bar=None) -> SphereGaussians:
    """Centres and log-scales fitted so the rendered alpha matches `masks` (T, H, W) (L1), with
    densify and prune every `settings.densify_every` steps; opacity and colour stay as given."""
    gen = torch.Generator().manual_seed(settings.seed)
    s0 = float(gaussians.scales.median())
    g = gaussians
    params = opt = grad_sum = None
    iters = settings.geometry_iterations
    for it in range(iters):
        if opt is None:
            params = [g.centers.detach().clone().requires_grad_(), g.log_scales.detach().clone().requires_grad_()]
            opt = torch.optim.Adam([{"params": params[:1]}, {"params": params[1:]}])
            grad_sum = torch.zeros(len(g))
        decay = 0.1 ** (it / max(iters, 1))
        opt.param_groups[0]["lr"] = settings.lr_center * s0 * decay
        opt.param_groups[1]["lr"] = settings.lr_log_scale * decay
        current = SphereGaussians(params[0], params[1], g.opacity_logits, g.colors)
        loss = 0.0
        for v in _batch(len(cameras), settings.batch, gen):
            loss = loss + (render(current, cameras[v]).alpha - masks[v]).abs().mean() / settings.batch
        opt.zero_grad()
        loss.backward()
        grad_sum += params[0].grad.norm(dim=1)
        opt.step()
        g = SphereGaussians(params[0].detach(), params[1].detach(), g.opacity_logits, g.colors)
        if (it + 1) % settings.densify_every == 0 and it + 1 < 0.8 * iters:
            g = densify_and_prune(g, grad_sum, s0, settings, gen)
            opt = None
        if bar is not None:
            bar.update()
            bar.set_postfix(stage="geometry", loss=f"{loss.item():.4f}", gaussians=len(g))
    return g


def densify_and_prune(g: SphereGaussians, grad: torch.Tensor, s0: float, settings: Settings, gen) -> SphereGaussians:
    """Clone (scale <= 1.5 s0: a copy placed at a sample of the Gaussian) or split (larger: two
    samples with the scale / 1.6) the `densify_fraction` of Gaussians with the largest
    accumulated positional gradient `grad` (N,), within `max_gaussians`; then prune Gaussians
    whose scale has vanished (< s0 / 10) or grown too large (> 4 s0). All stay spheres."""
    room = max(settings.max_gaussians - len(g), 0)
    k = min(int(settings.densify_fraction * len(g)), room, int((grad > 0).sum()))
    pick = torch.topk(grad, k).indices
    big = g.scales[pick] > 1.5 * s0
    clone, split = pick[~big], pick[big]
    sample = lambda i: g.centers[i] + g.scales[i, None] * torch.randn(len(i), 3, generator=gen)  # noqa: E731
    centers, log_scales = g.centers.clone(), g.log_scales.clone()
    new_centers = torch.cat((sample(clone), sample(split)))
    centers[split] = sample(split)
    log_scales[split] -= math.log(1.6)
    new = torch.cat((clone, split))
    centers = torch.cat((centers, new_centers))
    log_scales = torch.cat((log_scales, log_scales[new]))
    logits = torch.cat((g.opacity_logits, g.opacity_logits[new]))
    colors = torch.cat((g.colors, g.colors[new]))
    scales = log_scales.exp()
    keep = (scales > 0.1 * s0) & (scales < 4.0 * s0)
    return SphereGaussians(centers[keep], log_scales[keep], logits[keep], colors[keep])


def fit_appearance(gaussians: SphereGaussians, images, masks, cameras, settings: Settings = Settings(),
                   bar=None) -> SphereGaussians:
    """Opacity logits and colours fitted to `images` (T, H, W, 3) composited over a random colour
    through `masks` (T, H, W) with (1 - lambda) L1 + lambda D-SSIM; centres and scales stay as
    given. Gaussians whose opacity ends below `settings.min_opacity` are pruned."""
    gen = torch.Generator().manual_seed(settings.seed + 1)
    g = gaussians
    logits = g.opacity_logits.detach().clone().requires_grad_()
    colors = g.colors.detach().clone().requires_grad_()
    opt = torch.optim.Adam([{"params": [logits], "lr": settings.lr_opacity},
                            {"params": [colors], "lr": settings.lr_color}])
    lam = settings.lambda_dssim
    for _ in range(settings.appearance_iterations):
        views = _batch(len(cameras), settings.batch, gen)
        bg = torch.rand(3, generator=gen)
        current = SphereGaussians(g.centers, g.log_scales, logits, colors)
        pred = torch.stack([render(current, cameras[v], background=bg).rgb for v in views])
        m = masks[views][..., None]
        target = images[views] * m + bg * (1.0 - m)
        loss = (1.0 - lam) * (pred - target).abs().mean() + lam * d_ssim(pred, target).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            colors.clamp_(0.0, 1.0)
        if bar is not None:
            bar.update()
            bar.set_postfix(stage="appearance", loss=f"{loss.item():.4f}", gaussians=len(g))
    keep = torch.sigmoid(logits.detach()) >= settings.min_opacity
    return SphereGaussians(g.centers[keep], g.log_scales[keep], logits.detach()[keep], colors.detach()[keep])


def fit(dataset, settings: Settings = Settings(), views=None, progress: bool = False) -> SphereGaussians:
    """Stage I on the dataset's `views` (indices; default all): hull, geometry, then appearance."""
    images, masks, cameras = _views(dataset, views)
    g = initialize(dataset, settings, views)
    total = settings.geometry_iterations + settings.appearance_iterations
    with progress_bar(total, "init: stage I, geometry then appearance", "step", enabled=progress) as bar:
        g = fit_geometry(g, masks, cameras, settings, bar)
        g = fit_appearance(g, images, masks, cameras, settings, bar)
    return g


@torch.no_grad()
def evaluate(gaussians: SphereGaussians, dataset, views=None) -> dict:
    """Mean PSNR (dB) and mask IoU (rendered alpha > 0.5 against the mask) over `views`. PSNR
    compares renders over the dataset's background image with the images as they are; without a
    background, renders over black with the images composited over black through their masks."""
    images, masks, cameras = _views(dataset, views)
    background = dataset.background
    psnrs, ious = [], []
    for image, mask, camera in zip(images, masks, cameras):
        if background is None:
            out, target = render(gaussians, camera), image * mask[..., None]
        else:
            out, target = render(gaussians, camera, background=background), image
        psnrs.append(float(psnr(out.rgb.clamp(0, 1), target)))
        a, b = out.alpha > 0.5, mask > 0.5
        ious.append(float((a & b).sum()) / max(float((a | b).sum()), 1.0))
    return {"psnr": float(np.mean(psnrs)), "iou": float(np.mean(ious))}


def save_mesh(gaussians: SphereGaussians, path, resolution: int = 96,
              settings: SoftSDFSettings = SoftSDFSettings()) -> tuple[np.ndarray, np.ndarray]:
    """Write the outer zero level set of the sphere union's soft SDF as a Wavefront .obj (marching
    cubes on a grid with `resolution` cells along the longest side; cavities sealed inside a
    shell of spheres are filled); returns vertices (V, 3) m and faces (F, 3), 0-based."""
    from scipy import ndimage
    from skimage.measure import marching_cubes

    reach = float(gaussians.radii.max()) + 2.0 * settings.delta
    lo = gaussians.centers.min(0).values - reach
    hi = gaussians.centers.max(0).values + reach
    spacing = float((hi - lo).max()) / resolution
    shape = tuple(int(n) + 1 for n in torch.ceil((hi - lo) / spacing))
    phi = sphere_distance(gaussians, _grid_points(lo - 0.5 * spacing, spacing, shape), settings).view(shape).numpy()
    labels, _ = ndimage.label(phi > 0)
    border = np.unique(np.concatenate([np.moveaxis(labels, a, 0)[[0, -1]].ravel() for a in range(3)]))
    phi = np.where((labels > 0) & ~np.isin(labels, border), -settings.delta, phi)
    verts, faces, _, _ = marching_cubes(phi, 0.0, spacing=(spacing,) * 3)  # faces wind outward
    verts = verts + lo.numpy()
    lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in verts] + [f"f {a} {b} {c}" for a, b, c in faces + 1]
    Path(path).write_text("\n".join(lines) + "\n")
    return verts, faces


def run_init(views_dir, out_file, settings: Settings = Settings(), holdout_every: int = 8,
             mesh_resolution: int = 96, progress: bool = True) -> dict:
    """Stage I on the multi-view dataset in `views_dir`: every `holdout_every`-th view is held out
    (0: none); writes `out_file` (.npz) and, beside it, the .ply and the soft-SDF mesh .obj;
    prints and returns a summary (views, Gaussians, held-out PSNR dB and IoU, seconds)."""
    if not Path(views_dir).is_dir():
        raise ValueError(f"views_dir: expected a dataset folder, got {views_dir!r} (not a directory)")
    if not (Path(views_dir) / "meta.json").is_file():
        inside = sorted(p.parent for p in Path(views_dir).glob("*/meta.json"))
        hint = f"; give one of the {len(inside)} dataset folder(s) in it, e.g. {inside[0]}" if inside else ""
        raise ValueError(f"views_dir: expected a multi-view dataset folder with meta.json (docs/datasets.md; cgwm "
                         f"synth --scenario multiview or cgwm capture views writes one), got {str(views_dir)!r}, "
                         f"which has no meta.json{hint}")
    out_file = Path(out_file)
    if out_file.suffix != ".npz":
        raise ValueError(f"out_file: expected a path ending in .npz, got {str(out_file)!r}")
    if holdout_every < 0 or holdout_every == 1:
        raise ValueError(f"holdout_every: expected 0 (no held-out views) or an int >= 2, got {holdout_every}")
    if mesh_resolution < 2:
        raise ValueError(f"mesh_resolution: expected an int >= 2 (grid cells), got {mesh_resolution}")
    start = time.perf_counter()
    dataset = load_dataset(views_dir)
    n = len(dataset.cameras)
    held = [i for i in range(n) if holdout_every and i % holdout_every == holdout_every // 2]
    train = [i for i in range(n) if i not in held]
    g = fit(dataset, settings, train, progress)
    fit_seconds = time.perf_counter() - start
    if progress:
        say(f"init: fitted in {fit_seconds:.0f} s; scoring {len(held)} held-out views, writing the mesh")
    scores = evaluate(g, dataset, held) if held else {"psnr": float("nan"), "iou": float("nan")}
    g, frame = to_body_frame(g, dataset.meta)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    g.save_npz(out_file)
    g.save_ply(out_file.with_suffix(".ply"))
    save_mesh(g, out_file.with_suffix(".obj"), mesh_resolution)
    summary = {"views": len(train), "held_out": len(held), "gaussians": len(g), "psnr": scores["psnr"],
               "iou": scores["iou"], "fit_s": fit_seconds, "seconds": time.perf_counter() - start, **frame}
    summary_line(f"stage I: {len(train)} views ({len(held)} held out), {len(g)} Gaussians, held-out PSNR "
                 f"{scores['psnr']:.2f} dB, mask IoU {scores['iou']:.3f}, {summary['seconds']:.1f} s "
                 f"-> {out_file} (.ply, .obj beside it)")
    say(frame["note"])
    return summary


def to_body_frame(gaussians: SphereGaussians, meta: dict) -> tuple[SphereGaussians, dict]:
    """The Gaussians (fitted in the views' world frame) in the object's body frame, whose origin the
    simulator takes for the centre of mass: through meta.json's `object_pose` (the body's pose in the
    world, default the identity) and `physics.com` (the centre of mass in the body frame) where given.
    Without `physics.com` the body frame stays where it is and the centre of the Gaussians' solid is
    reported beside it. Returns the Gaussians and a report (com_m, offset_m, note)."""
    pose = meta.get("object_pose") or {}
    position = torch.as_tensor(pose.get("pos", [0.0, 0.0, 0.0]), dtype=gaussians.centers.dtype)
    quat = math3d.quat_normalize(torch.as_tensor(pose.get("quat", [1.0, 0.0, 0.0, 0.0]), dtype=position.dtype))
    centers = math3d.rotate(math3d.quat_conj(quat).expand(len(gaussians), 4), gaussians.centers - position)
    com = (meta.get("physics") or {}).get("com")
    solid = solid_centre(SphereGaussians(centers, gaussians.log_scales, gaussians.opacity_logits, gaussians.colors))
    if com is not None:
        com = torch.as_tensor(com, dtype=centers.dtype)
        centers = centers - com
        note = (f"stage I: body frame at the centre of mass meta.json gives, {[round(float(c), 4) for c in com]} m "
                f"in the object's frame (the Gaussians' solid centre is {float((solid - com).norm()) * 1e3:.1f} mm "
                f"from it)")
        report = {"com_m": com.tolist(), "offset_m": float((solid - com).norm())}
    else:
        offset = float(solid.norm())
        note = (f"stage I: no physics.com in meta.json: the body frame stays at the views' object origin, "
                f"{offset * 1e3:.1f} mm from the Gaussians' solid centre (the simulator takes the origin for the "
                f"centre of mass; give physics.com where they differ)")
        report = {"com_m": None, "offset_m": offset}
    g = SphereGaussians(centers, gaussians.log_scales, gaussians.opacity_logits, gaussians.colors)
    return g, {**report, "note": note}


def volume_inertia(gaussians: SphereGaussians, mass: float, resolution: int = 40) -> torch.Tensor:
    """Inertia (3, 3) kg m^2 about the body origin of `mass` kg spread uniformly over the solid the
    sphere union bounds (collision.solid_grid)."""
    if not mass > 0:
        raise ValueError(f"mass: expected a positive mass (kg), got {mass!r}")
    inside = solid_grid(gaussians, resolution).inside()
    second = inside.T @ inside / len(inside)  # E[p p^T]
    inertia = mass * (torch.trace(second) * torch.eye(3, dtype=torch.float64) - second)
    return inertia.to(torch.get_default_dtype())


def solid_centre(gaussians: SphereGaussians, resolution: int = 40) -> torch.Tensor:
    """The centre (3,) m of the solid the sphere union bounds (its cavities filled), the centre of mass
    of a uniform object of that shape."""
    return solid_grid(gaussians, resolution).inside().mean(0).to(gaussians.centers.dtype)


def _views(dataset, views):
    """(images, masks, cameras) of the dataset's `views` (indices; None: all), checked."""
    images, masks, cameras = dataset.images, dataset.masks, list(dataset.cameras)
    if masks is None or images is None:
        raise ValueError("dataset: expected images and masks, got none")
    if masks.ndim != 3 or images.shape != (*masks.shape, 3) or len(cameras) != len(masks):
        raise ValueError(f"dataset: expected images (T, H, W, 3), masks (T, H, W) and T cameras, got "
                         f"{tuple(images.shape)}, {tuple(masks.shape)} and {len(cameras)}")
    if views is not None:
        views = list(views)
        if not views or not all(0 <= v < len(cameras) for v in views):
            raise ValueError(f"views: expected indices in [0, {len(cameras)}), got {views}")
        images, masks, cameras = images[views], masks[views], [cameras[v] for v in views]
    empty = (masks.flatten(1) > 0.5).sum(1) == 0
    if empty.any():
        raise ValueError(f"dataset: masks of views {empty.nonzero()[:, 0].tolist()} are empty (no object pixels)")
    return images.float(), (masks > 0.5).float(), cameras


def _batch(n: int, batch: int, gen) -> list[int]:
    return torch.randperm(n, generator=gen)[:batch].tolist()


def _grid_points(lo: torch.Tensor, step: float, shape) -> torch.Tensor:
    """Cell centres (X Y Z, 3) of a grid with corner lo (3,) and cell size step, x slowest."""
    axes = [lo[i] + (torch.arange(n, dtype=lo.dtype) + 0.5) * step for i, n in enumerate(shape)]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)


def _carve(points: torch.Tensor, masks: torch.Tensor, cameras: list) -> torch.Tensor:
    """Points (P, 3) that project into every view's mask, (P,) bool."""
    keep = torch.ones(len(points), dtype=torch.bool)
    for mask, camera in zip(masks, cameras):
        uv, z = camera.project(points)
        j, i = torch.floor(uv[:, 0]).long(), torch.floor(uv[:, 1]).long()
        inside = (z > 0) & (j >= 0) & (j < camera.width) & (i >= 0) & (i < camera.height)
        hit = torch.zeros_like(keep)
        hit[inside] = mask[i[inside], j[inside]] > 0.5
        keep &= hit
    return keep


def _bounding_sphere(masks: torch.Tensor, cameras: list) -> tuple[torch.Tensor, torch.Tensor]:
    """A sphere (centre (3,), radius) around the object: the point nearest every view's ray
    through its mask's centroid, and the largest mask radius seen back-projected to it."""
    A, b, rays = torch.zeros(3, 3), torch.zeros(3), []
    for mask, camera in zip(masks, cameras):
        i, j = (mask > 0.5).nonzero().T.float() + 0.5
        K_inv = torch.linalg.inv(camera.K.float())
        R = camera.T_cw[:3, :3].float()
        d = R.T @ K_inv @ torch.stack((j.mean(), i.mean(), torch.tensor(1.0)))
        d = d / d.norm()
        P = torch.eye(3) - torch.outer(d, d)
        o = camera.position.float()
        A, b = A + P, b + P @ o
        rays.append((camera, torch.stack((j, i), 1)))
    center = torch.linalg.solve(A, b)
    radius = torch.zeros(())
    for camera, pixels in rays:
        uv, z = camera.project(center[None])
        r_px = (pixels - uv).norm(dim=1).max() + 1.0
        radius = torch.maximum(radius, r_px * z[0] / torch.minimum(camera.fx, camera.fy))
    return center, 1.25 * radius


def _colors(centers, normals, images, masks, cameras) -> torch.Tensor:
    """Each centre's colour: the mean image colour at its projections, weighted by how squarely
    the view faces the centre's normal (views behind it get no weight)."""
    total, weight = torch.zeros_like(centers), torch.full((len(centers), 1), 1e-6)
    for image, camera in zip(images, cameras):
        uv, _ = camera.project(centers)
        j = torch.floor(uv[:, 0]).long().clamp(0, camera.width - 1)
        i = torch.floor(uv[:, 1]).long().clamp(0, camera.height - 1)
        view = camera.position.to(centers.dtype) - centers
        w = ((normals * view).sum(1) / view.norm(dim=1)).clamp(min=0.0)[:, None] ** 2
        total += w * image[i, j]
        weight += w
    return (total / weight).clamp(0.0, 1.0)
