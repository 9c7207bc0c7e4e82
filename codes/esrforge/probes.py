"""Synthetic probe images and float PSNR, for checking what a network's output does under tiling,
export or a change of precision (the seam measurements, ONNX export, inspect_model)."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F


def psnr(a: Tensor, b: Tensor) -> float:
    """PSNR in dB of two float images in [0, 1] (inf when equal)."""
    mse = float(((a.double() - b.double()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def smooth_image(height: int, width: int, seed: int = 0) -> Tensor:
    """A random ``(3, H, W)`` image in [0, 1] with structure at three scales (bicubic-enlarged noise)."""
    generator = torch.Generator().manual_seed(seed)
    image = torch.zeros(1, 3, height, width)
    for cells, weight in ((4, 0.5), (16, 0.3), (max(height, width) // 4, 0.2)):
        noise = torch.rand(1, 3, max(2, cells * height // width), cells, generator=generator)
        image += weight * F.interpolate(noise, size=(height, width), mode="bicubic", align_corners=False)
    return image[0].clamp(0, 1)
