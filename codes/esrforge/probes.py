"""Synthetic probe images and float PSNR, for checking what a network's output does under tiling,
export or a change of precision (the seam measurements, ONNX export, inspect_model)."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

from .networks.base import Description


def psnr(a: Tensor, b: Tensor) -> float:
    """PSNR in dB of two float images in [0, 1] (inf when equal)."""
    mse = float(((a.double() - b.double()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def smooth_image(height: int, width: int, seed: int = 0) -> Tensor:
    """A random ``(3, H, W)`` image in [0, 1] with structure at three scales (bicubic-enlarged noise)."""
    generator = torch.Generator().manual_seed(seed)
    image = torch.zeros(1, 3, height, width)
    for cells, weight in ((4, 0.5), (16, 0.3), (max(2, max(height, width) // 4), 0.2)):
        noise = torch.rand(1, 3, max(2, cells * height // width), cells, generator=generator)
        image += weight * F.interpolate(noise, size=(height, width), mode="bicubic", align_corners=False)
    return image[0].clamp(0, 1)


def probe_input(description: Description, size: tuple[int, int]) -> Tensor:
    """A ``(1, in_channels, H, W)`` :func:`smooth_image` (RGB channels repeated for more than three)."""
    image = smooth_image(*size)
    channels = description.in_channels
    return image.repeat(-(-channels // 3), 1, 1)[:channels][None]


def probe_side(description: Description, side: int) -> int:
    """``side`` raised to the network's minimum input size and rounded up to its size multiple."""
    multiple = description.size_multiple
    return multiple * math.ceil(max(side, description.min_size) / multiple)
