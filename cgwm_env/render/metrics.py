"""Image and pose metrics: L1, SSIM, D-SSIM, PSNR, and the paper's E_trans, E_rot, E_psnr (appendix D).

Images are float tensors (..., H, W, C) with values in [0, 1]; leading dimensions are a batch.
"""

from __future__ import annotations

import torch


def _check_pair(a: torch.Tensor, b: torch.Tensor, names: tuple[str, str], min_dim: int) -> None:
    for name, t in zip(names, (a, b)):
        if not isinstance(t, torch.Tensor) or t.ndim < min_dim:
            raise ValueError(f"{name}: expected a tensor with at least {min_dim} dimensions, got {getattr(t, 'shape', t)}")
    if a.shape != b.shape:
        raise ValueError(f"{names[1]}: expected the shape of {names[0]} {tuple(a.shape)}, got {tuple(b.shape)}")


def l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference over all elements, a scalar."""
    _check_pair(pred, target, ("pred", "target"), 1)
    return (pred - target).abs().mean()


def ssim(pred: torch.Tensor, target: torch.Tensor, window_size: int = 11) -> torch.Tensor:
    """Mean SSIM per image (...,) of images (..., H, W, C): kornia's, 11 px Gaussian window
    (sigma 1.5), data range 1, reflect padding at the borders."""
    import kornia

    _check_pair(pred, target, ("pred", "target"), 3)
    batch = pred.shape[:-3]
    to_nchw = lambda x: x.reshape(-1, *x.shape[-3:]).permute(0, 3, 1, 2)  # noqa: E731
    ssim_map = kornia.metrics.ssim(to_nchw(pred), to_nchw(target), window_size, max_val=1.0)
    return ssim_map.mean(dim=(1, 2, 3)).reshape(batch)


def d_ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """D-SSIM = 1 - SSIM per image (...,), the term of the 3DGS loss (1 - l) L1 + l D-SSIM.

    (kornia.losses.ssim_loss halves it: (1 - SSIM) / 2.)
    """
    return 1.0 - ssim(pred, target)


def psnr(pred: torch.Tensor, target: torch.Tensor, max_val: float = 1.0) -> torch.Tensor:
    """PSNR per image (...,), dB: 10 log10(max_val^2 / MSE) over each image's H W C values."""
    _check_pair(pred, target, ("pred", "target"), 3)
    mse = ((pred - target) ** 2).mean(dim=(-3, -2, -1))
    return 10.0 * torch.log10(max_val**2 / mse)


def e_trans(p: torch.Tensor, p_hat: torch.Tensor) -> torch.Tensor:
    """E_trans = 1/(N T) sum_i sum_t ||p_it - p^_it||_2 for positions (N, T, 3) (any (..., 3)), m."""
    _check_pair(p, p_hat, ("p", "p_hat"), 1)
    if p.shape[-1] != 3:
        raise ValueError(f"p: expected positions of shape (..., 3), got {tuple(p.shape)}")
    return (p - p_hat).norm(dim=-1).mean()


def e_rot(q: torch.Tensor, q_hat: torch.Tensor) -> torch.Tensor:
    """E_rot = 1/(N T) sum_i sum_t 2 arccos(|q_it . q^_it|) for unit quaternions (N, T, 4), rad.

    |q . q^| is clamped to 1 only to absorb rounding; quaternions off unit length by more than
    1e-3 are refused.
    """
    _check_pair(q, q_hat, ("q", "q_hat"), 1)
    if q.shape[-1] != 4:
        raise ValueError(f"q: expected quaternions of shape (..., 4), got {tuple(q.shape)}")
    for name, t in (("q", q), ("q_hat", q_hat)):
        if ((t.norm(dim=-1) - 1.0).abs() > 1e-3).any():
            raise ValueError(f"{name}: expected unit quaternions")
    dot = (q * q_hat).sum(-1).abs().clamp(max=1.0)
    return (2.0 * torch.acos(dot)).mean()


def e_psnr(images: torch.Tensor, images_hat: torch.Tensor) -> torch.Tensor:
    """E_psnr = 1/(N T) sum_i sum_t -10 log10(1/M sum_p (I_it^p - I^_it^p)^2), dB.

    images: (N, T, H, W, C) (any (..., H, W, C)) in [0, 1]; M = H W C, every value of an image.
    """
    _check_pair(images, images_hat, ("images", "images_hat"), 3)
    mse = ((images - images_hat) ** 2).mean(dim=(-3, -2, -1))
    return (-10.0 * torch.log10(mse)).mean()
