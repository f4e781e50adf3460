"""The gsplat backend (CUDA only): gsplat.rasterization with isotropic scales and RGB colours."""

from __future__ import annotations

import torch


def render(centers, log_scales, opacity_logits, colors, camera, near: float, antialiased: bool = False) -> torch.Tensor:
    """Same contract as torch_backend.render: per-pixel sums (H, W, 5) = sum w rgb, sum w z, alpha.

    gsplat differs in small ways: alpha is capped at 0.999 (not 0.99), a pixel stops at
    transmittance 1e-4, and its cut-off is a 3.33 sigma box rather than the 3 sigma ellipse.
    """
    from gsplat import rasterization

    dtype = centers.dtype  # gsplat's kernels are float32
    centers, log_scales, opacity_logits, colors = (t.float() for t in (centers, log_scales, opacity_logits, colors))
    camera = camera.to(torch.float32)
    n = centers.shape[0]
    quats = centers.new_zeros(n, 4)
    quats[:, 0] = 1.0
    out, alphas, _ = rasterization(
        means=centers,
        quats=quats,
        scales=log_scales.exp()[:, None].expand(n, 3),
        opacities=torch.sigmoid(opacity_logits),
        colors=colors,
        viewmats=camera.T_cw[None],
        Ks=camera.K[None],
        width=camera.width,
        height=camera.height,
        near_plane=near,
        eps2d=0.3,
        sh_degree=None,
        packed=False,
        render_mode="RGB+ED",
        rasterize_mode="antialiased" if antialiased else "classic",
    )
    alpha = alphas[0]  # (H, W, 1)
    # "ED" divides the accumulated depth by alpha; undo it to return the sum like the torch backend.
    return torch.cat((out[0, ..., :3], out[0, ..., 3:] * alpha, alpha), dim=-1).to(dtype)
