"""Adversarial loss: the generator term and the matching discriminator term (vanilla GAN or RaGAN)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ..fields import option, require
from .base import LOSSES, DiscriminatorContext, GeneratorContext, Loss, LossOptions


@dataclass(frozen=True, kw_only=True)
class GanOptions(LossOptions):
    """Options of the ``gan`` loss; ``weight`` scales the generator term, ``d_weight`` the D term."""

    gan_type: Literal["vanilla", "ragan"] = option(
        "vanilla", doc="vanilla (BCE) or ragan (relativistic average)"
    )
    noise: float = option(
        1 / 255, doc="amplitude of the U[0, noise) noise added to every discriminator input"
    )
    d_weight: float = option(1.0, doc="multiplier of the discriminator-side loss")

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.noise >= 0, "noise", "an amplitude >= 0", self.noise)
        require(self.d_weight >= 0, "d_weight", "a weight >= 0", self.d_weight)


def bce(logits: Tensor, target_real: bool) -> Tensor:
    """Mean BCE-with-logits against an all-ones (``target_real``) or all-zeros target."""
    target = torch.ones_like(logits) if target_real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)


def discriminator_stats(d_real: Tensor, d_fake: Tensor) -> dict[str, Tensor]:
    """Detached batch means of the discriminator logits, for logging (no host sync)."""
    return {"d_real": d_real.detach().mean(), "d_fake": d_fake.detach().mean()}


@LOSSES.register(GanOptions, name="gan")
class GanLoss(Loss[GanOptions]):
    """Generator side in ``forward``, discriminator side in :meth:`discriminator_loss`.

    - vanilla: ``G = BCE(D(fake), 1)``; ``D = BCE(d_real, 1) + BCE(d_fake, 0)``.
    - ragan: ``G = ½[BCE(D(real) − mean D(fake), 0) + BCE(D(fake) − mean D(real), 1)]`` with D(real)
      detached; ``D = BCE(d_real − mean d_fake, 1) + BCE(d_fake − mean d_real, 0)``.

    The D terms are summed, not halved, as in DLAS (BasicSR halves the RaGAN D loss); scale with
    ``d_weight``. The trainer applies the same ``after``/``before`` window to both sides.
    """

    needs_discriminator = True

    def forward(self, ctx: GeneratorContext) -> Tensor:
        discriminate = self._discriminate(ctx.discriminate)
        d_fake = discriminate(ctx.fake)
        if self.options.gan_type == "vanilla":
            return bce(d_fake, True)
        d_real = discriminate(ctx.real).detach()
        return 0.5 * (bce(d_real - d_fake.mean(), False) + bce(d_fake - d_real.mean(), True))

    def discriminator_loss(self, ctx: DiscriminatorContext) -> Tensor:
        """The unweighted discriminator-side loss; the trainer multiplies it by ``options.d_weight``."""
        if self.options.gan_type == "vanilla":
            return bce(ctx.d_real, True) + bce(ctx.d_fake, False)
        return bce(ctx.d_real - ctx.d_fake.mean(), True) + bce(ctx.d_fake - ctx.d_real.mean(), False)

    @staticmethod
    def _discriminate(discriminate: Callable[[Tensor], Tensor] | None) -> Callable[[Tensor], Tensor]:
        if discriminate is None:
            raise RuntimeError("the gan loss needs a discriminator, but the generator context has none")
        return discriminate
