"""Uniform noise added to every discriminator input (dithers the 1/255 steps of real images)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn


class DiscriminatorInputNoise(nn.Module):
    """Adds fresh ``U[0, amplitude)`` noise per element on every call; amplitude 0 is the identity."""

    def __init__(self, amplitude: float) -> None:
        super().__init__()
        if amplitude < 0:
            raise ValueError(f"discriminator input noise amplitude must be >= 0, got {amplitude}")
        self.amplitude = amplitude

    def forward(self, x: Tensor) -> Tensor:
        if self.amplitude == 0:
            return x
        return x + torch.rand_like(x) * self.amplitude

    def extra_repr(self) -> str:
        return f"amplitude={self.amplitude}"


def make_discriminate(
    discriminator: Callable[[Tensor], Tensor], amplitude: float
) -> Callable[[Tensor], Tensor]:
    """``x -> discriminator(x + noise)``: what the trainer puts in ``ctx.discriminate``."""
    noise = DiscriminatorInputNoise(amplitude)

    def discriminate(x: Tensor) -> Tensor:
        return discriminator(noise(x))

    return discriminate
