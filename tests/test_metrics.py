"""Tests of the image and pose metrics against hand-computed values."""

import math

import pytest
import torch

from cgwm_env.render import metrics


def test_l1_and_psnr_by_hand():
    a = torch.zeros(4, 4, 3)
    b = torch.zeros(4, 4, 3)
    b[0, 0, 0] = 0.5  # one value of 48 off by 0.5
    assert metrics.l1(a, b) == pytest.approx(0.5 / 48)
    assert metrics.psnr(a, b) == pytest.approx(-10 * math.log10(0.25 / 48))
    assert metrics.psnr(a, b, max_val=2.0) == pytest.approx(10 * math.log10(4 / (0.25 / 48)))


def test_ssim_and_d_ssim():
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(2, 32, 32, 3, generator=gen)
    assert metrics.ssim(a, a).shape == (2,)
    torch.testing.assert_close(metrics.ssim(a, a), torch.ones(2))
    torch.testing.assert_close(metrics.d_ssim(a, a), torch.zeros(2))
    # Constant images c1, c2: SSIM reduces to the luminance term (2 c1 c2 + C1) / (c1^2 + c2^2 + C1).
    c1, c2, C1 = 0.2, 0.6, 0.01**2
    want = (2 * c1 * c2 + C1) / (c1**2 + c2**2 + C1)
    got = metrics.ssim(torch.full((16, 16, 3), c1), torch.full((16, 16, 3), c2))
    assert got == pytest.approx(want, rel=1e-5)
    assert metrics.d_ssim(torch.full((16, 16, 3), c1), torch.full((16, 16, 3), c2)) == pytest.approx(1 - want, rel=1e-4)


def test_e_trans_by_hand():
    p = torch.zeros(2, 3, 3)
    p_hat = torch.zeros(2, 3, 3)
    p_hat[0, 0] = torch.tensor([3.0, 4.0, 0.0])  # 5 m off
    p_hat[1, 2] = torch.tensor([0.0, 0.0, 1.0])  # 1 m off
    assert metrics.e_trans(p, p_hat) == pytest.approx(6.0 / 6)


def test_e_rot_by_hand():
    identity = torch.tensor([1.0, 0.0, 0.0, 0.0])
    turn = torch.tensor([math.cos(0.3), math.sin(0.3), 0.0, 0.0])  # 0.6 rad about x
    q = identity.expand(1, 2, 4)
    q_hat = torch.stack((turn, -identity))[None]  # -q is the same rotation: 0 rad
    assert metrics.e_rot(q, q_hat) == pytest.approx(0.6 / 2, abs=1e-6)
    with pytest.raises(ValueError, match="q_hat"):
        metrics.e_rot(q, 2 * q)


def test_e_psnr_by_hand():
    images = torch.zeros(1, 2, 2, 2, 3)
    images_hat = images.clone()
    images_hat[0, 0] += 0.1  # MSE 0.01 -> 20 dB
    images_hat[0, 1, 0, 0, 0] = 1.0  # MSE 1/12 -> 10 log10(12) dB
    want = (20.0 + 10 * math.log10(12)) / 2
    assert metrics.e_psnr(images, images_hat) == pytest.approx(want, rel=1e-5)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="target"):
        metrics.psnr(torch.zeros(4, 4, 3), torch.zeros(4, 5, 3))
    with pytest.raises(ValueError, match="p_hat"):
        metrics.e_trans(torch.zeros(2, 3), torch.zeros(3, 3))
