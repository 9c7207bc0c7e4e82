"""Batched PSNR/SSIM on torch tensors (any device) that match :mod:`esrforge.metrics.psnr_ssim`.

Inputs are ``(B, C, H, W)`` (or ``(C, H, W)``) tensors with values in [0, 1] and C = 1 or 3 (RGB).
With ``quantize=True`` (default) they are first clamped and rounded to 8-bit levels, as saving the
images as PNG would, and the results then equal the numpy functions on those PNGs up to float error;
with ``quantize=False`` the raw values are scaled by 255 and Y is not rounded. Math is in float64.
Each function returns one value per image, shape ``(B,)``.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from .psnr_ssim import DATA_RANGE, SSIM_WINDOW, gaussian_window_1d, luma, ssim_map


def _prepare(
    sr: torch.Tensor, gt: torch.Tensor, crop_border: int, y_channel: bool, quantize: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both batches as float64 ``(B, C, H, W)`` on 0..255, border shaved, Y taken if asked."""
    if sr.shape != gt.shape:
        raise ValueError(f"batches to compare differ in shape: {tuple(sr.shape)} vs {tuple(gt.shape)}")
    if sr.ndim == 3:
        sr, gt = sr.unsqueeze(0), gt.unsqueeze(0)
    if sr.ndim != 4 or sr.shape[1] not in (1, 3):
        raise ValueError(f"expected (B, C, H, W) batches with C = 1 or 3, got shape {tuple(sr.shape)}")
    if crop_border < 0 or min(sr.shape[-2], sr.shape[-1]) <= 2 * crop_border:
        raise ValueError(f"crop_border {crop_border} does not fit images of shape {tuple(sr.shape)}")
    out = []
    for batch in (sr, gt):
        x = batch.detach().to(torch.float64)
        x = torch.floor(x.clamp(0.0, 1.0) * DATA_RANGE + 0.5) if quantize else x * DATA_RANGE
        if y_channel and x.shape[1] == 3:
            x = luma(x[:, 0:1], x[:, 1:2], x[:, 2:3])
            x = torch.floor(x + 0.5) if quantize else x
        if crop_border:
            x = x[..., crop_border:-crop_border, crop_border:-crop_border]
        out.append(x)
    return out[0], out[1]


def calculate_psnr_torch(
    sr: torch.Tensor, gt: torch.Tensor, crop_border: int = 0, y_channel: bool = False, quantize: bool = True
) -> torch.Tensor:
    """PSNR (dB) per image, shape ``(B,)``; inf where the images are equal."""
    a, b = _prepare(sr, gt, crop_border, y_channel, quantize)
    mse = ((a - b) ** 2).mean(dim=(1, 2, 3))
    return 10.0 * torch.log10(DATA_RANGE**2 / mse)


@functools.lru_cache(maxsize=16)
def _window(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.tensor(gaussian_window_1d(), dtype=torch.float64, device=device)
    return g.view(1, 1, -1, 1), g.view(1, 1, 1, -1)


def calculate_ssim_torch(
    sr: torch.Tensor, gt: torch.Tensor, crop_border: int = 0, y_channel: bool = False, quantize: bool = True
) -> torch.Tensor:
    """SSIM per image (averaged over channels), shape ``(B,)``."""
    a, b = _prepare(sr, gt, crop_border, y_channel, quantize)
    if min(a.shape[-2], a.shape[-1]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} after cropping")
    batch, channels, height, width = a.shape
    column, row = _window(a.device)

    def local_mean(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(x.reshape(batch * channels, 1, height, width), column), row)

    scores = ssim_map(local_mean(a), local_mean(b), local_mean(a * a), local_mean(b * b), local_mean(a * b))
    return scores.reshape(batch, channels, -1).mean(dim=(1, 2))
