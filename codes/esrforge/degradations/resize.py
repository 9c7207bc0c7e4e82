"""Random resizes (up, down or keep, with a random interpolation) and the resize to the LR size."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor
from torch.nn import functional as F

from ..fields import option, require
from .base import DEGRADATIONS, Degradation, DegradationOptions, SampleRandom, require_range, require_weights

Mode = Literal["area", "bilinear", "bicubic", "nearest"]
MODES: list[Mode] = ["area", "bilinear", "bicubic"]


def _require_modes(modes: list[Mode]) -> None:
    require(len(modes) > 0, "modes", "at least one interpolation mode", modes)


def resize(image: Tensor, size: tuple[int, int] | None, mode: str, factor: float | None = None) -> Tensor:
    """``F.interpolate`` to ``size`` or by ``factor``, as Real-ESRGAN calls it (no antialiasing)."""
    if factor is not None and min(int(image.shape[-2] * factor), int(image.shape[-1] * factor)) < 1:
        size = (int(image.shape[-2] * factor), int(image.shape[-1] * factor))  # too small: at least 1 px
    if size is not None:
        size = (max(1, size[0]), max(1, size[1]))
        factor = None
    return F.interpolate(image, size=size, scale_factor=factor, mode=mode)


@dataclass(frozen=True, kw_only=True)
class RandomResizeOptions(DegradationOptions):
    """Resize by a factor drawn up, down or kept (``resize_prob``, ``resize_range`` in Real-ESRGAN)."""

    updown_prob: tuple[float, float, float] = option((0.2, 0.7, 0.1), doc="weights of up, down and keep")
    factor_range: tuple[float, float] = option(
        (0.15, 1.5), doc="down: a factor in [low, 1); up: in [1, high)"
    )
    modes: list[Mode] = option(factory=lambda: list(MODES), doc="interpolation modes, one drawn uniformly")
    relative_to: Literal["input", "output"] = option(
        "input",
        doc="input: the factor scales the current image (first order); output: it scales the LR size "
        "HR / scale (Real-ESRGAN's second order)",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        require_weights(self.updown_prob, 3, "updown_prob")
        require_range(self.factor_range, "factor_range", 1e-3)
        require(
            self.factor_range[0] <= 1 <= self.factor_range[1],
            "factor_range",
            "low <= 1 <= high",
            self.factor_range,
        )
        _require_modes(self.modes)

    def size_after(self, at_output: bool) -> bool:
        return False  # a drawn factor: even "keep" may follow an up or down


@DEGRADATIONS.register(RandomResizeOptions, name="resize")
class RandomResize(Degradation[RandomResizeOptions]):
    """Real-ESRGAN's random resize of either degradation order."""

    def apply(self, image: Tensor, rng: SampleRandom) -> Tensor:
        o = self.options
        direction = ("up", "down", "keep")[rng.index(o.updown_prob)]
        low, high = o.factor_range
        factor = {"up": lambda: rng.uniform(1.0, high), "down": lambda: rng.uniform(low, 1.0)}.get(
            direction, lambda: 1.0
        )()
        mode = str(rng.choice(o.modes))
        rng.note("resize", direction=direction, factor=round(factor, 3), mode=mode)
        if o.relative_to == "input":
            return resize(image, None, mode, factor)
        height, width = rng.size
        return resize(image, (int(height / rng.scale * factor), int(width / rng.scale * factor)), mode)


@dataclass(frozen=True, kw_only=True)
class ResizeToOutputOptions(DegradationOptions):
    """Resize to the LR size, HR size / scale, with a random interpolation mode."""

    modes: list[Mode] = option(factory=lambda: list(MODES), doc="interpolation modes, one drawn uniformly")

    def __post_init__(self) -> None:
        super().__post_init__()
        _require_modes(self.modes)

    def size_after(self, at_output: bool) -> bool:
        return True


@DEGRADATIONS.register(ResizeToOutputOptions, name="resize_to_output")
class ResizeToOutput(Degradation[ResizeToOutputOptions]):
    """The final resize of Real-ESRGAN (its ``ori_h // scale``)."""

    def apply(self, image: Tensor, rng: SampleRandom) -> Tensor:
        mode = str(rng.choice(self.options.modes))
        rng.note("resize_to_output", mode=mode)
        height, width = rng.size
        return resize(image, (height // rng.scale, width // rng.scale), mode)
