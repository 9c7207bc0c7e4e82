"""Gaussian and Poisson noise, in colour or grey (the same noise in every channel)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..fields import option, require
from .base import DEGRADATIONS, Degradation, DegradationOptions, SampleRandom, require_range

LUMA = (0.2989, 0.587, 0.114)
"""The grey of torchvision's ``rgb_to_grayscale``, which Real-ESRGAN's Poisson noise uses."""


def to_grey(image: Tensor) -> Tensor:
    """``N x 1 x H x W`` luma of an RGB image (single-channel images are returned as they are)."""
    if image.shape[1] == 1:
        return image
    red, green, blue = LUMA
    return image[:, 0:1] * red + image[:, 1:2] * green + image[:, 2:3] * blue


@dataclass(frozen=True, kw_only=True)
class NoiseOptions(DegradationOptions):
    """What both noises share: the chance that the noise is grey."""

    gray_prob: float = option(0.4, doc="chance that the noise is grey (equal in all channels)")

    def __post_init__(self) -> None:
        super().__post_init__()
        require(0 <= self.gray_prob <= 1, "gray_prob", "a probability in [0, 1]", self.gray_prob)


@dataclass(frozen=True, kw_only=True)
class GaussianNoiseOptions(NoiseOptions):
    """Additive Gaussian noise with sigma drawn from ``sigma_range`` (in 8-bit levels, /255)."""

    sigma_range: tuple[float, float] = option((1.0, 30.0), doc="noise sigma in 8-bit levels")

    def __post_init__(self) -> None:
        super().__post_init__()
        require_range(self.sigma_range, "sigma_range", 0.0)


@DEGRADATIONS.register(GaussianNoiseOptions, name="gaussian_noise")
class GaussianNoise(Degradation[GaussianNoiseOptions]):
    """``clamp(image + sigma / 255 * n)``, ``n`` standard normal per pixel (and channel unless grey)."""

    def apply(self, image: Tensor, rng: SampleRandom) -> Tensor:
        sigma = rng.uniform(*self.options.sigma_range)
        grey = rng.chance(self.options.gray_prob)
        rng.note("gaussian_noise", sigma=round(sigma, 2), grey=grey)
        shape = (1, 1, *image.shape[2:]) if grey else tuple(image.shape)
        return (image + rng.normal(image, shape) * (sigma / 255.0)).clamp(0, 1)


@dataclass(frozen=True, kw_only=True)
class PoissonNoiseOptions(NoiseOptions):
    """Poisson (shot) noise scaled by a factor drawn from ``scale_range``."""

    scale_range: tuple[float, float] = option((0.05, 3.0), doc="multiplier of the Poisson noise")

    def __post_init__(self) -> None:
        super().__post_init__()
        require_range(self.scale_range, "scale_range", 0.0)


def poisson_noise(image: Tensor, generator: torch.Generator) -> Tensor:
    """Real-ESRGAN's Poisson noise of an image quantised to 8 bits, as counts of 2^ceil(log2 levels).

    The number of distinct levels is counted with a histogram on the device (no host sync).
    """
    levels = (image * 255.0).round().clamp(0, 255)
    present = torch.zeros(256, device=image.device).index_fill_(0, levels.flatten().long(), 1.0).sum()
    counts = torch.exp2(torch.ceil(torch.log2(present)))
    quantised = levels / 255.0
    return torch.poisson(quantised * counts, generator=generator) / counts - quantised


@DEGRADATIONS.register(PoissonNoiseOptions, name="poisson_noise")
class PoissonNoise(Degradation[PoissonNoiseOptions]):
    """``clamp(image + scale * noise)``; grey noise is drawn on the luma and added to every channel."""

    def apply(self, image: Tensor, rng: SampleRandom) -> Tensor:
        scale = rng.uniform(*self.options.scale_range)
        grey = rng.chance(self.options.gray_prob)
        rng.note("poisson_noise", scale=round(scale, 3), grey=grey)
        noise = poisson_noise(to_grey(image) if grey else image, rng.device)
        return (image + noise * scale).clamp(0, 1)
