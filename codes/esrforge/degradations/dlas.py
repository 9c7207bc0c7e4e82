"""DLAS's ``image_corruptor`` corruptions as separate operations.

DL-Art-School (``codes/data/images/image_corruptor.py``) draws one value per corruption and maps it
to a strength; here each corruption is an operation with its parameters drawn from explicit ranges:

- ``color_quantization``: DLAS ``color_quantization``, 8-bit levels floored to a multiple of 4, 8,
  16 or 32 (DLAS: ``2 ** (int(r * 10 / 3) + 2)``, 32 only for r >= 0.9; ``steps: [4, 8, 16]`` here).
- ``motion_blur``: DLAS ``motion_blur``, a normalised line kernel of a random length and angle.
- ``resampling``: DLAS ``lq_resampling`` / ``lq_resampling4x``, down by 2 or 4 and back up to the
  input size with a random interpolation (DLAS skips it for ``r < 0.3``: use ``probability: 0.7``).
- ``saturation``: a random boost of the HSV saturation. (DLAS's ``saturation`` adds ``r * 0.3`` to
  every channel, which lightens the image rather than saturating it: ``color_jitter``'s brightness
  does that.)
- ``color_jitter``: DLAS ``color_jitter`` (kornia's ``ColorJitter``), brightness, contrast,
  saturation and hue, each with its own random amount, in a fixed order.
- ``greyscale``: DLAS ``greyscale``, the image's grey in every channel.

DLAS's JPEG presets are ``jpeg``'s ``preset:``; its ``gaussian_blur`` and ``noise`` are ``blur``
and ``gaussian_noise``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from kornia.enhance import (
    adjust_brightness,
    adjust_contrast_with_mean_subtraction,
    adjust_hue,
    adjust_saturation,
)
from torch import Tensor

from ..fields import option, require
from . import kernels
from .base import DEGRADATIONS, Degradation, DegradationOptions, SampleRandom, require_range, scalar_like
from .noise import to_grey
from .resize import Mode, resize

LINE_SAMPLES = 32
"""Points per kernel tap that :func:`motion_kernel` spreads along the line."""


@dataclass(frozen=True, kw_only=True)
class ColorQuantizationOptions(DegradationOptions):
    """Floor the 8-bit levels to a multiple of a step drawn from ``steps``."""

    steps: list[int] = option(
        factory=lambda: [4, 8, 16],
        doc="quantisation steps in 8-bit levels, one drawn uniformly (DLAS: 4, 8, 16, rarely 32)",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        ok = len(self.steps) > 0 and all(1 <= s <= 255 for s in self.steps)
        require(ok, "steps", "a list of steps in [1, 255]", self.steps)


@DEGRADATIONS.register(ColorQuantizationOptions, name="color_quantization")
class ColorQuantization(Degradation[ColorQuantizationOptions]):
    """``floor(round(255 x) / step) * step / 255``: banding of a palette with fewer levels.

    The image is rounded to 8-bit levels first, so a level that float arithmetic puts just below a
    multiple of the step (127.99997 for 128) is not floored to the step below.
    """

    def apply(self, image: Tensor, rng: SampleRandom) -> Tensor:
        step = int(rng.choice(self.options.steps))
        rng.note("color_quantization", step=step)
        levels = (image.clamp(0, 1) * 255.0).round()
        return torch.div(levels, step, rounding_mode="floor") * (step / 255.0)


def motion_kernel(length: float, angle: float) -> Tensor:
    """A line of ``length`` pixels through the centre at ``angle`` degrees (0: horizontal, 90: vertical).

    The kernel is the line convolved with a one-pixel tent (bilinear splatting of points spread
    evenly along it), so it changes smoothly with length and angle; float64, odd size, sum 1. A
    length of 0 is the identity.
    """
    radius = math.ceil(length / 2)
    size = 2 * radius + 1
    count = LINE_SAMPLES * size
    along = ((torch.arange(count, dtype=torch.float64) + 0.5) / count - 0.5) * length
    theta = math.radians(angle)
    taps = torch.arange(size, dtype=torch.float64) - radius
    # Image rows grow downwards: a positive angle turns the line counter-clockwise on screen.
    weight_x = (1 - (taps[None] - (along * math.cos(theta))[:, None]).abs()).clamp(min=0)
    weight_y = (1 - (taps[None] + (along * math.sin(theta))[:, None]).abs()).clamp(min=0)
    return kernels.normalised(weight_y.T @ weight_x)


@dataclass(frozen=True, kw_only=True)
class MotionBlurOptions(DegradationOptions):
    """Blur along a straight line of a random length and direction (camera shake)."""

    length_range: tuple[float, float] = option(
        (1.0, 4.0), doc="length of the line in pixels (DLAS: 1 to 1 + 3 * corruption_blur_scale)"
    )
    angle_range: tuple[float, float] = option(
        (0.0, 180.0), doc="direction in degrees, 0 horizontal, 90 vertical (a line at 180 is the one at 0)"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        require_range(self.length_range, "length_range", 0.0)
        require_range(self.angle_range, "angle_range", -360.0, 360.0)


@DEGRADATIONS.register(MotionBlurOptions, name="motion_blur")
class MotionBlur(Degradation[MotionBlurOptions]):
    """Convolve with :func:`motion_kernel` (reflect-padded, as ``blur``)."""

    def apply(self, image: Tensor, rng: SampleRandom) -> Tensor:
        length = rng.uniform(*self.options.length_range)
        angle = rng.uniform(*self.options.angle_range)
        rng.note("motion_blur", length=round(length, 2), angle=round(angle, 1))
        return kernels.filter_image(image, motion_kernel(length, angle)).clamp(0, 1)


@dataclass(frozen=True, kw_only=True)
class ResamplingOptions(DegradationOptions):
    """Down by an integer factor and back up to the input size (the detail of a smaller image)."""

    factors: list[int] = option(factory=lambda: [2, 4], doc="downscale factors, one drawn uniformly")
    down_modes: list[Mode] = option(
        factory=lambda: ["nearest"], doc="interpolation of the downscale, one drawn uniformly"
    )
    modes: list[Mode] = option(
        factory=lambda: ["nearest", "bilinear", "bicubic", "area"],
        doc="interpolation back up to the input size, one drawn uniformly",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        require(
            len(self.factors) > 0 and all(f >= 1 for f in self.factors),
            "factors",
            "a list of factors >= 1",
            self.factors,
        )
        require(len(self.down_modes) > 0, "down_modes", "at least one interpolation mode", self.down_modes)
        require(len(self.modes) > 0, "modes", "at least one interpolation mode", self.modes)


@DEGRADATIONS.register(ResamplingOptions, name="resampling")
class Resampling(Degradation[ResamplingOptions]):
    """``H x W`` -> ``H // f x W // f`` -> ``H x W`` (the size is kept).

    DLAS draws the downscale's cv2 mode and scales back bilinearly after its other corruptions; the
    defaults here take every other pixel (nearest) and draw the upscale's mode. ``down_modes:
    [nearest, bilinear, bicubic, area]`` with ``modes: [bilinear]`` is DLAS's way round.
    """

    def apply(self, image: Tensor, rng: SampleRandom) -> Tensor:
        o = self.options
        factor = int(rng.choice(o.factors))
        down, up = str(rng.choice(o.down_modes)), str(rng.choice(o.modes))
        rng.note("resampling", factor=factor, down=down, up=up)
        height, width = image.shape[-2:]
        small = resize(image, (height // factor, width // factor), down)
        return resize(small, (height, width), up).clamp(0, 1)


@dataclass(frozen=True, kw_only=True)
class SaturationOptions(DegradationOptions):
    """Raise the colour saturation by a random amount."""

    amount_range: tuple[float, float] = option(
        (0.0, 0.27), doc="relative increase of the HSV saturation: s * (1 + amount), at most 1"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        require_range(self.amount_range, "amount_range", -1.0)


@DEGRADATIONS.register(SaturationOptions, name="saturation")
class Saturation(Degradation[SaturationOptions]):
    """kornia's ``adjust_saturation`` by ``1 + amount``: hue and value (the largest channel) are kept.

    The saturation is scaled rather than shifted so that grey pixels stay grey (adding to an HSV
    saturation of 0 would tint them with hue 0, red). Single-channel images are returned as they are.
    """

    def apply(self, image: Tensor, rng: SampleRandom) -> Tensor:
        amount = rng.uniform(*self.options.amount_range)
        rng.note("saturation", amount=round(amount, 3))
        if image.shape[1] != 3:
            return image
        return adjust_saturation(image, scalar_like(1.0 + amount, image)).clamp(0, 1)


@dataclass(frozen=True, kw_only=True)
class ColorJitterOptions(DegradationOptions):
    """Brightness, contrast, saturation and hue changes, each by an amount drawn from its range."""

    brightness_range: tuple[float, float] = option((-0.1, 0.1), doc="added to every value")
    contrast_range: tuple[float, float] = option(
        (-0.1, 0.1), doc="contrast factor 1 + amount about the mean grey"
    )
    saturation_range: tuple[float, float] = option(
        (-0.1, 0.1), doc="saturation factor 1 + amount (HSV saturation)"
    )
    hue_range: tuple[float, float] = option((-0.02, 0.02), doc="hue shift in turns (1: 360 degrees)")

    def __post_init__(self) -> None:
        super().__post_init__()
        require_range(self.brightness_range, "brightness_range", -1.0, 1.0)
        require_range(self.contrast_range, "contrast_range", -1.0)
        require_range(self.saturation_range, "saturation_range", -1.0)
        require_range(self.hue_range, "hue_range", -0.5, 0.5)


@DEGRADATIONS.register(ColorJitterOptions, name="color_jitter")
class ColorJitter(Degradation[ColorJitterOptions]):
    """kornia's brightness, contrast (about the mean grey), saturation and hue adjustments in that order.

    DLAS runs kornia's ``ColorJitter`` with one strength up to 0.2 for all four; here each has its own
    range. Single-channel images get brightness and contrast only (all four are still drawn).
    """

    def apply(self, image: Tensor, rng: SampleRandom) -> Tensor:
        o = self.options
        brightness, contrast = rng.uniform(*o.brightness_range), rng.uniform(*o.contrast_range)
        saturation, hue = rng.uniform(*o.saturation_range), rng.uniform(*o.hue_range)
        rng.note(
            "color_jitter",
            brightness=round(brightness, 3),
            contrast=round(contrast, 3),
            saturation=round(saturation, 3),
            hue=round(hue, 4),
        )
        # Factors made on the device: kornia would copy each float from the host (a sync on a GPU).
        out = adjust_brightness(image, scalar_like(brightness, image))
        out = adjust_contrast_with_mean_subtraction(out, scalar_like(1.0 + contrast, image))
        if image.shape[1] == 3:
            out = adjust_saturation(out, scalar_like(1.0 + saturation, image))
            out = adjust_hue(out, scalar_like(hue * 2 * math.pi, image))
        return out.clamp(0, 1)


@dataclass(frozen=True, kw_only=True)
class GreyscaleOptions(DegradationOptions):
    """No options besides ``probability``."""


@DEGRADATIONS.register(GreyscaleOptions, name="greyscale")
class Greyscale(Degradation[GreyscaleOptions]):
    """The luma (``noise.to_grey``, BT.601 weights) in every channel; the channel count is kept.

    DLAS takes the plain mean of the channels instead.
    """

    def apply(self, image: Tensor, rng: SampleRandom) -> Tensor:
        rng.note("greyscale")
        return to_grey(image).expand_as(image).contiguous()
