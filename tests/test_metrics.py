"""PSNR/SSIM: hand-checked values, Y conversion, grey handling, and torch/numpy agreement."""

import math

import numpy as np
import pytest
import torch

from conftest import CUDA
from esrforge.metrics import (
    calculate_psnr,
    calculate_psnr_torch,
    calculate_ssim,
    calculate_ssim_torch,
    rgb_to_y,
)
from esrforge.metrics.psnr_ssim import gaussian_window_1d

RNG = np.random.default_rng(1)


def _noisy_pair(shape, noise=12):
    a = RNG.integers(0, 256, shape).astype(np.uint8)
    b = np.clip(a.astype(int) + RNG.integers(-noise, noise + 1, shape), 0, 255).astype(np.uint8)
    return a, b


def test_rgb_to_y_matches_matlab_rgb2ycbcr():
    rgb = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]]], dtype=np.uint8)
    # 16 + (65.481, 128.553, 24.966) * c / 255, rounded: 16, 235, 81.481, 144.553, 40.966
    np.testing.assert_array_equal(rgb_to_y(rgb), [[16, 235, 81, 145, 41]])


def test_psnr_hand_values():
    a = np.full((8, 8, 3), 100, dtype=np.uint8)
    assert calculate_psnr(a, a) == math.inf
    assert calculate_psnr(a, a + 1) == pytest.approx(20 * math.log10(255))  # MSE 1
    b = a.copy()
    b[0, 0, 0] = 110  # MSE 100 / 192
    assert calculate_psnr(a, b) == pytest.approx(10 * math.log10(255**2 * 192 / 100))


def test_crop_border_shaves_every_side():
    a = np.full((12, 12, 3), 50, dtype=np.uint8)
    b = a.copy()
    b[:2], b[-2:], b[:, :2], b[:, -2:] = 0, 0, 0, 0
    assert calculate_psnr(a, b, crop_border=2) == math.inf
    assert calculate_psnr(a, b, crop_border=1) < 30
    with pytest.raises(ValueError, match="crop_border"):
        calculate_psnr(a, b, crop_border=6)


def _ssim_reference(x, y):
    """Straight 11x11 'valid' windows (no separable filtering) of the SSIM formula, one channel."""
    g = gaussian_window_1d()
    window = np.outer(g, g)
    patches_x = np.lib.stride_tricks.sliding_window_view(x, (11, 11))
    patches_y = np.lib.stride_tricks.sliding_window_view(y, (11, 11))

    def mean(p):
        return (p * window).sum(axis=(-1, -2))

    mx, my = mean(patches_x), mean(patches_y)
    vx = mean(patches_x**2) - mx**2
    vy = mean(patches_y**2) - my**2
    cxy = mean(patches_x * patches_y) - mx * my
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    return (((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))).mean()


def test_gaussian_window():
    g = gaussian_window_1d()
    assert g.shape == (11,) and g.sum() == pytest.approx(1.0)
    assert g[4] / g[5] == pytest.approx(math.exp(-1 / (2 * 1.5**2)))


def test_ssim_against_direct_window_computation():
    a, b = _noisy_pair((24, 20, 3), noise=30)
    expected = np.mean([_ssim_reference(a[..., c].astype(float), b[..., c].astype(float)) for c in range(3)])
    assert calculate_ssim(a, b) == pytest.approx(expected, abs=1e-12)
    ya, yb = rgb_to_y(a), rgb_to_y(b)
    assert calculate_ssim(a, b, crop_border=2, y_channel=True) == pytest.approx(
        _ssim_reference(ya[2:-2, 2:-2], yb[2:-2, 2:-2]), abs=1e-12
    )
    assert calculate_ssim(a, a) == pytest.approx(1.0)


def test_grey_images_scored_on_their_own_channel():
    a, b = _noisy_pair((16, 16))
    psnr = calculate_psnr(a, b)
    assert calculate_psnr(a, b, y_channel=True) == psnr
    assert calculate_psnr(a[..., None], b[..., None], y_channel=True) == psnr
    assert calculate_ssim(a, b, y_channel=True) == calculate_ssim(a[..., None], b[..., None])
    triplicated = calculate_psnr(np.dstack([a] * 3), np.dstack([b] * 3), y_channel=True)
    assert abs(triplicated - psnr) > 0.5  # Y of grey RGB is compressed to 16..235


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        calculate_psnr(np.zeros((8, 8, 3)), np.zeros((8, 9, 3)))
    with pytest.raises(ValueError, match="SSIM"):
        calculate_ssim(np.zeros((8, 8, 3)), np.zeros((8, 8, 3)))


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("y_channel", [False, True])
def test_torch_matches_numpy(channels, y_channel):
    pairs = [_noisy_pair((23, 19, channels)) for _ in range(2)]

    def batch(index):
        return torch.from_numpy(np.stack([p[index] for p in pairs])).permute(0, 3, 1, 2).float() / 255.0

    psnr = calculate_psnr_torch(batch(0), batch(1), crop_border=2, y_channel=y_channel)
    ssim = calculate_ssim_torch(batch(0), batch(1), crop_border=2, y_channel=y_channel)
    assert psnr.shape == ssim.shape == (2,)
    for i, (a, b) in enumerate(pairs):
        assert psnr[i].item() == pytest.approx(calculate_psnr(a, b, 2, y_channel), abs=1e-9)
        assert ssim[i].item() == pytest.approx(calculate_ssim(a, b, 2, y_channel), abs=1e-9)


def test_torch_variants():
    a, b = _noisy_pair((16, 16, 3))
    ta = torch.from_numpy(a).permute(2, 0, 1).float() / 255.0
    tb = torch.from_numpy(b).permute(2, 0, 1).float() / 255.0
    assert calculate_psnr_torch(ta, ta).item() == math.inf  # (C, H, W) counts as a batch of one
    raw = calculate_psnr_torch(ta, tb, quantize=False).item()  # RGB: no rounding of Y involved
    assert raw == pytest.approx(calculate_psnr(a, b), abs=1e-4)
    with pytest.raises(ValueError, match="shape"):
        calculate_ssim_torch(ta, tb[:, :8])


@CUDA
def test_torch_metrics_on_cuda():
    a, b = _noisy_pair((20, 20, 3))
    ta = (torch.from_numpy(a).permute(2, 0, 1).float() / 255.0).cuda()
    tb = (torch.from_numpy(b).permute(2, 0, 1).float() / 255.0).cuda()
    assert calculate_ssim_torch(ta, tb, y_channel=True).item() == pytest.approx(
        calculate_ssim(a, b, y_channel=True), abs=1e-9
    )
