"""The loss registry, the step window every loss shares, and what a loss sees when it runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Literal, TypeVar

from torch import Tensor, nn

from ..fields import option, require
from ..randomness import StepGenerators
from ..registry import Registry

LOSSES: Registry[Loss[Any]] = Registry("loss")

Side = Literal["generator", "discriminator"]


@dataclass(frozen=True, kw_only=True)
class LossOptions:
    """Base of every loss's options: its type, weight and the steps it is active in."""

    registry: ClassVar[Registry[Any]] = LOSSES

    type: str = option(
        doc="registered loss type, e.g. pixel, perceptual, gan, gradient_penalty, translational"
    )
    weight: float = option(1.0, doc="multiplier applied to the loss before it is summed")
    after: int = option(0, doc="first step (inclusive) at which the loss is active")
    before: int | None = option(
        None, doc="step (exclusive) from which the loss is inactive again; null: never"
    )
    gt_usm: bool = option(
        False,
        doc="compare with the unsharp-masked HR (Real-ESRGAN's l1_gt_usm, percep_gt_usm; on the gan loss "
        "its gan_gt_usm: D's real input); the mask's settings: datasets.train.degradation.usm",
    )

    def __post_init__(self) -> None:
        require(self.weight >= 0, "weight", "a weight >= 0", self.weight)
        require(self.after >= 0, "after", "a step >= 0", self.after)
        if self.before is not None:
            require(self.before > self.after, "before", f"a step > after ({self.after})", self.before)

    def active(self, step: int) -> bool:
        """Whether the loss contributes at ``step``: ``after <= step < before``."""
        return step >= self.after and (self.before is None or step < self.before)


@dataclass
class GeneratorContext:
    """What a generator-side loss sees in one generator step.

    ``fake = generator(lq)``; ``lq`` was cut from ``lq_tile`` at ``lq_box`` (top, left, LR pixels) and
    ``real`` is the HR region that matches ``fake``. ``discriminate`` calls D on its input plus fresh
    input noise; it is ``None`` when no discriminator is configured. When the translational loss is
    active, the trainer has already run G on its second patch (at ``second_box``) in the same batch as
    ``lq``: ``fake_second`` is that output. Random draws come from ``generators`` (the step's).
    """

    lq: Tensor
    fake: Tensor
    real: Tensor
    generator: Callable[[Tensor], Tensor]
    lq_tile: Tensor
    lq_box: tuple[int, int]
    scale: int
    discriminate: Callable[[Tensor], Tensor] | None = None
    second_box: tuple[int, int] | None = None
    fake_second: Tensor | None = None
    generators: StepGenerators | None = None


@dataclass
class DiscriminatorContext:
    """What a discriminator-side loss sees in one discriminator step.

    ``d_real = discriminate(real)`` and ``d_fake = discriminate(fake)``, each with fresh input noise;
    ``real`` has ``requires_grad`` set when a gradient penalty needs gradients with respect to it
    (the gradient with respect to ``real`` equals the one with respect to the noised real). Random
    draws come from ``generators`` (the step's).
    """

    real: Tensor
    fake: Tensor
    d_real: Tensor
    d_fake: Tensor
    discriminate: Callable[[Tensor], Tensor]
    generators: StepGenerators | None = None


OptionsT = TypeVar("OptionsT", bound=LossOptions)


class Loss(nn.Module, Generic[OptionsT]):
    """Base of registered losses: ``forward(ctx)`` returns the unweighted scalar loss.

    ``side`` says which step calls ``forward``: a generator-side loss gets a :class:`GeneratorContext`,
    a discriminator-side loss a :class:`DiscriminatorContext`. The trainer multiplies the result by
    ``options.weight`` and skips the loss outside ``options.active(step)``.
    """

    side: ClassVar[Side] = "generator"
    needs_discriminator: ClassVar[bool] = False
    """Whether the loss calls the discriminator (the config must then define one)."""

    def __init__(self, options: OptionsT) -> None:
        super().__init__()
        self.options = options

    @property
    def needs_real_grad(self) -> bool:
        """Whether the discriminator step must set ``real.requires_grad`` before computing ``d_real``."""
        return False

    @property
    def double_backward(self) -> bool:
        """Whether the loss differentiates through D's input (its pass then runs in float32 under fp16)."""
        return False


def build_loss(options: LossOptions) -> Loss[Any]:
    """Instantiate the loss registered under ``options.type`` with its options."""
    entry = LOSSES.get(options.type)
    if not isinstance(options, entry.options):
        raise TypeError(
            f"loss type {options.type!r} expects {entry.options.__name__}, got {type(options).__name__}"
        )
    return entry.cls(options)
