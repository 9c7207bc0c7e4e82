"""PSNR and SSIM as the super-resolution literature computes them (numpy, float64, values 0..255).

* ``y_channel=True`` scores the Y channel of ITU-R BT.601 YCbCr (16..235) as MATLAB's ``rgb2ycbcr``
  computes it for uint8 input (Y rounded to integers), so the figures match the MATLAB tables.
* A single-channel image (``H x W`` or ``H x W x 1``) is scored on its own grey channel, with or without
  ``y_channel`` (as the MATLAB evaluation code does), never on the Y of a triplicated RGB.
* ``crop_border`` pixels are shaved from every side before scoring.
* PSNR uses the mean squared error over all pixels and channels; SSIM uses an 11x11 Gaussian window
  (sigma 1.5), 'valid' filtering, K1 = 0.01, K2 = 0.03, L = 255, and is averaged over channels.
"""

from __future__ import annotations

import math
from typing import TypeVar

import cv2
import numpy as np
import torch

DATA_RANGE = 255.0
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = (0.01 * DATA_RANGE) ** 2
SSIM_C2 = (0.03 * DATA_RANGE) ** 2
Y_WEIGHTS = (65.481 / 255.0, 128.553 / 255.0, 24.966 / 255.0)
"""BT.601 luma weights applied to R, G, B in 0..255; Y = 16 + weighted sum (MATLAB ``rgb2ycbcr``)."""

_Array = TypeVar("_Array", np.ndarray, torch.Tensor)


def gaussian_window_1d(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian (float64); the SSIM window is its outer product with itself."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """BT.601 Y (16..235) of RGB 0..255 ``H x W x 3``, rounded as MATLAB's uint8 ``rgb2ycbcr`` does."""
    rgb = img.astype(np.float64)
    return np.floor(luma(rgb[..., 0], rgb[..., 1], rgb[..., 2]) + 0.5)


def luma(r: _Array, g: _Array, b: _Array) -> _Array:
    """Unrounded BT.601 Y (16..235) from R, G, B planes in 0..255 (numpy or torch)."""
    return 16.0 + Y_WEIGHTS[0] * r + Y_WEIGHTS[1] * g + Y_WEIGHTS[2] * b


def psnr_from_mse(mse: float) -> float:
    """PSNR in dB for a mean squared error on the 0..255 scale (inf when the images are equal)."""
    return math.inf if mse == 0 else 10.0 * math.log10(DATA_RANGE**2 / mse)


def ssim_map(mu1: _Array, mu2: _Array, e11: _Array, e22: _Array, e12: _Array) -> _Array:
    """SSIM per pixel from local means ``mu`` and local second moments ``e`` (E[x*x], E[y*y], E[x*y])."""
    mu11, mu22, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    numerator = (2.0 * mu12 + SSIM_C1) * (2.0 * (e12 - mu12) + SSIM_C2)
    denominator = (mu11 + mu22 + SSIM_C1) * ((e11 - mu11) + (e22 - mu22) + SSIM_C2)
    return numerator / denominator


def _prepare(img: np.ndarray, ref: np.ndarray, crop_border: int, y_channel: bool) -> tuple[np.ndarray, ...]:
    """Both images as float64 ``H x W x C`` (0..255) after shaving the border and taking Y if asked."""
    if img.shape != ref.shape:
        raise ValueError(f"images to compare differ in shape: {img.shape} vs {ref.shape}")
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (1, 3)):
        raise ValueError(f"expected HxW, HxWx1 or HxWx3 images, got shape {img.shape}")
    if crop_border < 0 or min(img.shape[0], img.shape[1]) <= 2 * crop_border:
        raise ValueError(f"crop_border {crop_border} does not fit images of shape {img.shape}")
    out = []
    for array in (img, ref):
        a = array.astype(np.float64)
        if a.ndim == 2:
            a = a[:, :, None]
        if y_channel and a.shape[2] == 3:
            a = rgb_to_y(a)[:, :, None]
        if crop_border:
            a = a[crop_border:-crop_border, crop_border:-crop_border]
        out.append(a)
    return tuple(out)


def calculate_psnr(img: np.ndarray, ref: np.ndarray, crop_border: int = 0, y_channel: bool = False) -> float:
    """PSNR (dB) between two uint8 (or 0..255 float) RGB or grey images of the same shape."""
    a, b = _prepare(img, ref, crop_border, y_channel)
    return psnr_from_mse(float(np.mean((a - b) ** 2)))


def calculate_ssim(img: np.ndarray, ref: np.ndarray, crop_border: int = 0, y_channel: bool = False) -> float:
    """SSIM between two uint8 (or 0..255 float) RGB or grey images, averaged over channels."""
    a, b = _prepare(img, ref, crop_border, y_channel)
    if min(a.shape[0], a.shape[1]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} after cropping")
    g = gaussian_window_1d()
    half = SSIM_WINDOW // 2

    def local_mean(x: np.ndarray) -> np.ndarray:
        return cv2.sepFilter2D(np.ascontiguousarray(x), cv2.CV_64F, g, g)[half:-half, half:-half]

    scores = [
        float(
            ssim_map(
                local_mean(x), local_mean(y), local_mean(x * x), local_mean(y * y), local_mean(x * y)
            ).mean()
        )
        for x, y in ((a[:, :, c], b[:, :, c]) for c in range(a.shape[2]))
    ]
    return float(np.mean(scores))
