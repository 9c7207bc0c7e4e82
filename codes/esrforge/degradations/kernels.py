"""Blur kernels of Real-ESRGAN's families and the per-image filtering they are applied with.

Kernels are built in float64 on the CPU (at most 21 x 21) and normalised to sum 1. ``sigma`` and the
grid are in pixels; the grid is centred on the middle tap of an odd ``size``.
"""

from __future__ import annotations

import functools
import math

import torch
from kornia.filters import filter2d, filter2d_separable
from torch import Tensor

from .base import like

FAMILIES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")


def _grid(size: int) -> Tensor:
    """``size x size x 2`` (x, y) pixel offsets from the centre."""
    axis = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([xx, yy], dim=-1)


def quadratic_form(size: int, sigma_x: float, sigma_y: float, theta: float) -> Tensor:
    """``d^T Sigma^-1 d`` over the grid, ``Sigma = R diag(sigma_x^2, sigma_y^2) R^T`` rotated by ``theta``."""
    cos, sin = math.cos(theta), math.sin(theta)
    rotation = torch.tensor([[cos, -sin], [sin, cos]], dtype=torch.float64)
    sigma = rotation @ torch.diag(torch.tensor([sigma_x**2, sigma_y**2], dtype=torch.float64)) @ rotation.T
    grid = _grid(size)
    return ((grid @ torch.linalg.inv(sigma)) * grid).sum(-1)


def normalised(kernel: Tensor) -> Tensor:
    return kernel / kernel.sum()


def gaussian(size: int, sigma_x: float, sigma_y: float, theta: float) -> Tensor:
    """Bivariate Gaussian ``exp(-q / 2)``."""
    return normalised(torch.exp(-0.5 * quadratic_form(size, sigma_x, sigma_y, theta)))


def generalized_gaussian(size: int, sigma_x: float, sigma_y: float, theta: float, beta: float) -> Tensor:
    """Generalised Gaussian ``exp(-q^beta / 2)``: beta < 1 peaked, beta > 1 flat-topped."""
    return normalised(torch.exp(-0.5 * quadratic_form(size, sigma_x, sigma_y, theta) ** beta))


def plateau(size: int, sigma_x: float, sigma_y: float, theta: float, beta: float) -> Tensor:
    """Plateau kernel ``1 / (1 + q^beta)``."""
    return normalised(1.0 / (quadratic_form(size, sigma_x, sigma_y, theta) ** beta + 1.0))


def sinc(size: int, cutoff: float) -> Tensor:
    """Circular low-pass (2-D sinc) kernel with ``cutoff`` in radians (pi: no filtering)."""
    radius = _grid(size).norm(dim=-1)
    kernel = cutoff * torch.special.bessel_j1(cutoff * radius) / (2 * math.pi * radius)
    centre = (size - 1) // 2
    kernel[centre, centre] = cutoff**2 / (4 * math.pi)
    return normalised(kernel)


@functools.lru_cache(maxsize=8)  # the unsharp mask asks for the same one every step
def gaussian_1d(size: int, sigma: float) -> Tensor:
    """OpenCV's ``getGaussianKernel`` formula: ``sigma <= 0`` means ``0.3 * ((size - 1) / 2 - 1) + 0.8``.

    (For sizes up to 9 with ``sigma <= 0`` OpenCV uses fixed tables instead, up to 2e-3 apart.)
    """
    if sigma <= 0:
        sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    axis = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    return normalised(torch.exp(-(axis**2) / (2 * sigma**2)))


def _border(image: Tensor, size: int) -> str:
    """Reflect padding (BasicSR's ``filter2D``); replicate where the image is too small to reflect."""
    return "reflect" if min(image.shape[-2:]) > size // 2 else "replicate"


def filter_separable(image: Tensor, line: Tensor) -> Tensor:
    """:func:`filter_image` with the kernel ``outer(line, line)`` as two 1-D passes (odd ``line``)."""
    weight = like(line, image)[None]
    return filter2d_separable(image, weight, weight, border_type=_border(image, line.shape[0]))


def filter_image(image: Tensor, kernel: Tensor) -> Tensor:
    """Correlate every channel of ``image`` (``N x C x H x W``) with ``kernel`` (odd ``k x k``), padded."""
    return filter2d(image, like(kernel, image)[None], border_type=_border(image, kernel.shape[-1]))
