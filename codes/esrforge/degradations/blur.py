"""Blur with Real-ESRGAN's random kernels, and the final sinc (ringing) filter."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from torch import Tensor

from ..fields import option, require
from . import kernels
from .base import DEGRADATIONS, Degradation, DegradationOptions, SampleRandom, require_range, require_weights

Family = Literal["iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso"]
KERNEL_SIZES = [7, 9, 11, 13, 15, 17, 19, 21]


def _require_sizes(sizes: list[int], key: str = "kernel_sizes") -> None:
    require(len(sizes) > 0 and all(s >= 1 and s % 2 == 1 for s in sizes), key, "a list of odd sizes", sizes)


@dataclass(frozen=True, kw_only=True)
class BlurOptions(DegradationOptions):
    """Real-ESRGAN's blur: a kernel family drawn by ``kernel_prob``, or a sinc with ``sinc_prob``."""

    kernel_sizes: list[int] = option(factory=lambda: list(KERNEL_SIZES), doc="odd kernel sizes, one drawn")
    kernel_list: list[Family] = option(
        factory=lambda: list(kernels.FAMILIES), doc="kernel families to draw from"
    )
    kernel_prob: list[float] = option(
        factory=lambda: [0.45, 0.25, 0.12, 0.03, 0.12, 0.03], doc="weight of each of kernel_list"
    )
    sinc_prob: float = option(
        0.1, doc="chance of a sinc kernel instead (cutoff pi/3-pi, pi/5-pi from size 13)"
    )
    sigma_range: tuple[float, float] = option((0.2, 3.0), doc="sigma of the kernels in pixels (x and y)")
    rotation_range: tuple[float, float] = option((-math.pi, math.pi), doc="angle of anisotropic kernels")
    betag_range: tuple[float, float] = option((0.5, 4.0), doc="shape of generalised Gaussians")
    betap_range: tuple[float, float] = option((1.0, 2.0), doc="shape of plateau kernels")

    def __post_init__(self) -> None:
        super().__post_init__()
        _require_sizes(self.kernel_sizes)
        require(len(self.kernel_list) > 0, "kernel_list", "at least one kernel family", self.kernel_list)
        require_weights(self.kernel_prob, len(self.kernel_list), "kernel_prob")
        require(0 <= self.sinc_prob <= 1, "sinc_prob", "a probability in [0, 1]", self.sinc_prob)
        require_range(self.sigma_range, "sigma_range", 1e-3)
        require_range(self.rotation_range, "rotation_range", -math.pi, math.pi)
        require_range(self.betag_range, "betag_range", 1e-3)
        require_range(self.betap_range, "betap_range", 1e-3)


def _beta(rng: SampleRandom, low: float, high: float) -> float:
    """Real-ESRGAN's shape draw: below 1 or above 1 with equal chance."""
    return rng.uniform(low, min(1.0, high)) if rng.chance(0.5) else rng.uniform(max(1.0, low), high)


def sinc_cutoff(rng: SampleRandom, size: int) -> float:
    """Cutoff of the first- and second-order sinc kernels: wider range for kernels of 13 and more."""
    return rng.uniform(math.pi / 3 if size < 13 else math.pi / 5, math.pi)


@DEGRADATIONS.register(BlurOptions, name="blur")
class Blur(Degradation[BlurOptions]):
    """Convolve with a random isotropic/anisotropic, generalised or plateau Gaussian, or a sinc."""

    def draw_kernel(self, rng: SampleRandom) -> Tensor:
        """The kernel of one sample (its parameters are recorded)."""
        o = self.options
        size = int(rng.choice(o.kernel_sizes))
        if rng.chance(o.sinc_prob):
            cutoff = sinc_cutoff(rng, size)
            rng.note("blur", family="sinc", size=size, cutoff=round(cutoff, 3))
            return kernels.sinc(size, cutoff)
        family = str(rng.choice(o.kernel_list, o.kernel_prob))
        sigma_x = rng.uniform(*o.sigma_range)
        sigma_y, theta = sigma_x, 0.0
        if family.endswith("aniso"):
            sigma_y, theta = rng.uniform(*o.sigma_range), rng.uniform(*o.rotation_range)
        drawn = {"family": family, "size": size, "sigma": (round(sigma_x, 3), round(sigma_y, 3))}
        if family.startswith("generalized"):
            beta = _beta(rng, *o.betag_range)
            kernel = kernels.generalized_gaussian(size, sigma_x, sigma_y, theta, beta)
        elif family.startswith("plateau"):
            beta = _beta(rng, *o.betap_range)
            kernel = kernels.plateau(size, sigma_x, sigma_y, theta, beta)
        else:
            beta = 1.0
            kernel = kernels.gaussian(size, sigma_x, sigma_y, theta)
        rng.note("blur", **drawn, theta=round(theta, 3), beta=round(beta, 3))
        return kernel

    def apply(self, image: Tensor, rng: SampleRandom) -> Tensor:
        return kernels.filter_image(image, self.draw_kernel(rng))


@dataclass(frozen=True, kw_only=True)
class SincOptions(DegradationOptions):
    """Real-ESRGAN's final sinc filter (ringing and overshoot); its ``final_sinc_prob`` is ``probability``."""

    kernel_sizes: list[int] = option(factory=lambda: list(KERNEL_SIZES), doc="odd kernel sizes, one drawn")
    cutoff_range: tuple[float, float] = option(
        (math.pi / 3, math.pi), doc="cutoff frequency in radians (pi: none)"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        _require_sizes(self.kernel_sizes)
        require_range(self.cutoff_range, "cutoff_range", 1e-3, math.pi)


@DEGRADATIONS.register(SincOptions, name="sinc")
class Sinc(Degradation[SincOptions]):
    """Convolve with a circular low-pass kernel of a random size and cutoff."""

    def apply(self, image: Tensor, rng: SampleRandom) -> Tensor:
        size = int(rng.choice(self.options.kernel_sizes))
        cutoff = rng.uniform(*self.options.cutoff_range)
        rng.note("sinc", size=size, cutoff=round(cutoff, 3))
        return kernels.filter_image(image, kernels.sinc(size, cutoff))
