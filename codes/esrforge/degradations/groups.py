"""Operations made of operations: a sequence, one of several, and several in a random order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from ..fields import option, require
from .base import (
    DEGRADATIONS,
    Degradation,
    DegradationOptions,
    SampleRandom,
    build_degradation,
    require_weights,
)


@dataclass(frozen=True, kw_only=True)
class GroupOptions(DegradationOptions):
    """Options of a group: the operations it holds."""

    ops: list[DegradationOptions] = option(doc="the operations of the group, each with its own type")

    def __post_init__(self) -> None:
        super().__post_init__()
        require(len(self.ops) > 0, "ops", "at least one operation", self.ops)

    def size_after(self, at_output: bool) -> bool:
        """In order (``sequence``); ``random_order`` and ``one_of`` override it."""
        return ops_end_at_output(self.ops, at_output)


def ops_end_at_output(ops: list[DegradationOptions], at_output: bool) -> bool:
    """Whether ``ops`` run in order surely leave the image at the LR size."""
    for op in ops:
        at_output = op.at_output_after(at_output)
    return at_output


@dataclass(frozen=True, kw_only=True)
class RandomOrderOptions(GroupOptions):
    """All of ``ops`` in an order drawn per sample."""

    def size_after(self, at_output: bool) -> bool:
        """Every order ends at the LR size iff no operation can leave it and one reaches it (or it starts there)."""
        keep = all(op.at_output_after(True) for op in self.ops)
        return keep and (at_output or any(op.at_output_after(False) for op in self.ops))


class Group(Degradation[Any]):
    """Base of the groups: builds the operations once."""

    def __init__(self, options: GroupOptions) -> None:
        super().__init__(options)
        self.ops = [build_degradation(o) for o in options.ops]


@DEGRADATIONS.register(GroupOptions, name="sequence")
class Sequence(Group):
    """The operations in order (each with its own probability)."""

    def apply(self, image: Tensor, rng: SampleRandom) -> Tensor:
        for op in self.ops:
            image = op(image, rng)
        return image


@dataclass(frozen=True, kw_only=True)
class OneOfOptions(GroupOptions):
    """One of ``ops``, drawn with ``weights`` (e.g. Gaussian or Poisson noise)."""

    weights: list[float] = option(factory=list, doc="weight of each operation; empty: equal weights")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.weights:
            require_weights(self.weights, len(self.ops), "weights")

    def size_after(self, at_output: bool) -> bool:
        weights = self.weights or [1.0] * len(self.ops)
        return all(op.at_output_after(at_output) for op, w in zip(self.ops, weights, strict=True) if w > 0)


@DEGRADATIONS.register(OneOfOptions, name="one_of")
class OneOf(Group):
    """Run one operation of the group, chosen per sample."""

    def apply(self, image: Tensor, rng: SampleRandom) -> Tensor:
        weights = self.options.weights or [1.0] * len(self.ops)
        return self.ops[rng.index(weights)](image, rng)


@DEGRADATIONS.register(RandomOrderOptions, name="random_order")
class RandomOrder(Group):
    """All operations of the group in an order drawn per sample (Real-ESRGAN's final stage)."""

    def apply(self, image: Tensor, rng: SampleRandom) -> Tensor:
        order = rng.permutation(len(self.ops))
        rng.note("random_order", order=order)
        for index in order:
            image = self.ops[index](image, rng)
        return image
