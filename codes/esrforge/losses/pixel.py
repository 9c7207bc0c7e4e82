"""Pixel loss: a distance between the generator output and the HR target."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ..fields import option, require
from .base import LOSSES, GeneratorContext, Loss, LossOptions
from .criteria import DEFAULT_CHARBONNIER_EPS, Criterion, distance


@dataclass(frozen=True, kw_only=True)
class PixelOptions(LossOptions):
    """Options of the ``pixel`` loss."""

    criterion: Criterion = option("l1", doc="l1, mse (alias l2) or charbonnier (smooth l1)")
    eps: float = option(
        DEFAULT_CHARBONNIER_EPS, doc="charbonnier only: mean(sqrt(diff^2 + eps^2)); smooth below |diff| ~ eps"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.eps > 0, "eps", "a number > 0", self.eps)


@LOSSES.register(PixelOptions, name="pixel")
class PixelLoss(Loss[PixelOptions]):
    """``criterion(fake, real)`` averaged over all elements."""

    def forward(self, ctx: GeneratorContext) -> Tensor:
        return distance(self.options.criterion, ctx.fake, ctx.real, self.options.eps)
