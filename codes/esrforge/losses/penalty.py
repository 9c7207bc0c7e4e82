"""Gradient penalties on the discriminator: one-centred on reals (the recipe), R1, and WGAN-GP."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..fields import option, require
from ..randomness import uniform
from .base import LOSSES, DiscriminatorContext, Loss, LossOptions


@dataclass(frozen=True, kw_only=True)
class GradientPenaltyOptions(LossOptions):
    """Options of the ``gradient_penalty`` loss (a discriminator-side loss)."""

    variant: Literal["one_centered", "r1", "wgan_gp"] = option(
        "one_centered",
        doc="one_centered: c·mean((|∇D(real)|-1)^2); r1: c/2·mean(|∇D(real)|^2); "
        "wgan_gp: c·mean((|∇D(x)|-1)^2) at random real/fake interpolates x",
    )
    coefficient: float = option(10.0, doc="the penalty's coefficient c (the loss weight multiplies it again)")

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.coefficient >= 0, "coefficient", "a number >= 0", self.coefficient)


def gradient_norms(outputs: Tensor, inputs: Tensor) -> Tensor:
    """Per-sample L2 norm (over C·H·W) of ``∇_inputs outputs.sum()``, differentiable (double backprop)."""
    (grad,) = torch.autograd.grad(outputs.sum(), inputs, create_graph=True)
    return grad.flatten(1).norm(2, dim=1)


@LOSSES.register(GradientPenaltyOptions, name="gradient_penalty")
class GradientPenaltyLoss(Loss[GradientPenaltyOptions]):
    """A gradient penalty on D; the real-sample variants reuse ``ctx.d_real`` (computed on noised reals)."""

    side = "discriminator"
    needs_discriminator = True

    @property
    def needs_real_grad(self) -> bool:
        return self.options.variant != "wgan_gp"

    @property
    def double_backward(self) -> bool:
        return True

    def forward(self, ctx: DiscriminatorContext) -> Tensor:
        c = self.options.coefficient
        if self.options.variant == "wgan_gp":
            return c * (gradient_norms(*self._interpolate(ctx)) - 1).square().mean()
        if not ctx.real.requires_grad:
            raise RuntimeError(
                "gradient_penalty needs ctx.real.requires_grad set before d_real is computed "
                "(see Loss.needs_real_grad)"
            )
        norms = gradient_norms(ctx.d_real, ctx.real)
        if self.options.variant == "r1":
            return c / 2 * norms.square().mean()
        return c * (norms - 1).square().mean()

    @staticmethod
    def _interpolate(ctx: DiscriminatorContext) -> tuple[Tensor, Tensor]:
        """D's output at random per-sample interpolates between real and fake, and the interpolates."""
        real, fake = ctx.real.detach(), ctx.fake.detach()
        alpha = uniform((real.shape[0],) + (1,) * (real.dim() - 1), real, ctx.generators)
        mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        return ctx.discriminate(mixed), mixed
