"""Uniform noise added to every discriminator input (dithers the 1/255 steps of real images)."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from ..randomness import StepGenerators, uniform


class DiscriminatorInputNoise(nn.Module):
    """Adds fresh ``U[0, amplitude)`` noise per element on every call; amplitude 0 is the identity.

    The noise comes from ``generators`` (the training step's), or torch's global generator when None.
    """

    def __init__(self, amplitude: float, generators: StepGenerators | None = None) -> None:
        super().__init__()
        if amplitude < 0:
            raise ValueError(f"discriminator input noise amplitude must be >= 0, got {amplitude}")
        self.amplitude = amplitude
        self.generators = generators

    def forward(self, x: Tensor) -> Tensor:
        if self.amplitude == 0:
            return x
        return x + uniform(tuple(x.shape), x, self.generators) * self.amplitude

    def extra_repr(self) -> str:
        return f"amplitude={self.amplitude}"


def make_discriminate(
    discriminator: Callable[[Tensor], Tensor], amplitude: float, generators: StepGenerators | None = None
) -> Callable[[Tensor], Tensor]:
    """``x -> discriminator(x + noise)``: what the trainer puts in ``ctx.discriminate``."""
    noise = DiscriminatorInputNoise(amplitude, generators)

    def discriminate(x: Tensor) -> Tensor:
        return discriminator(noise(x))

    return discriminate
