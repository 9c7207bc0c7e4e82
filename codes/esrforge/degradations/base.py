"""The degradation registry, the options every operation shares, and the per-sample random source.

An operation turns one image (``1 x C x H x W`` float32 in [0, 1] on any device) into a degraded one,
drawing its parameters from a :class:`SampleRandom`. The pipeline decides with ``probability``
whether it runs at all; what it drew is recorded in ``SampleRandom.record`` for previews.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

import torch
from torch import Tensor

from ..fields import option, require
from ..randomness import derive_seeds
from ..registry import Registry

DEGRADATIONS: Registry[Degradation[Any]] = Registry("degradation")


def require_range(values: Sequence[float], key: str, low: float, high: float | None = None) -> None:
    """``values`` must be ``[a, b]`` with ``low <= a <= b`` (and ``b <= high``)."""
    bound = f" within [{low}, {high}]" if high is not None else f" >= {low}"
    ok = len(values) == 2 and low <= values[0] <= values[1] and (high is None or values[1] <= high)
    require(ok, key, f"a range [a, b] with a <= b{bound}", list(values))


def require_weights(weights: Sequence[float], count: int, key: str) -> None:
    """``weights``: ``count`` non-negative numbers that do not all vanish."""
    ok = len(weights) == count and all(w >= 0 for w in weights) and sum(weights) > 0
    require(ok, key, f"{count} non-negative weights, not all 0", list(weights))


@dataclass(frozen=True, kw_only=True)
class DegradationOptions:
    """Base of every degradation's options: its ``type`` and the chance that it runs."""

    registry: ClassVar[Registry[Any]] = DEGRADATIONS

    type: str = option(doc="registered degradation, e.g. blur, resize, gaussian_noise, jpeg, one_of")
    probability: float = option(1.0, doc="chance that the operation runs on a sample; 0: never")

    def __post_init__(self) -> None:
        require(0 <= self.probability <= 1, "probability", "a probability in [0, 1]", self.probability)

    def at_output_after(self, at_output: bool) -> bool:
        """Whether the image is surely at the LR size after this operation, given whether it was before."""
        after = self.size_after(at_output)
        return after if self.probability >= 1 else after and at_output

    def size_after(self, at_output: bool) -> bool:
        """:meth:`at_output_after` when the operation runs; operations that resize override it."""
        return at_output


@dataclass
class SampleRandom:
    """The random source of one sample: parameters from ``cpu``, noise tensors from ``device``.

    Both are seeded from a key such as ``(seed, rank, step, sample)``, so a sample's degradation does
    not depend on the batch it is in, the process that made it, or what ran before it. ``size`` is the
    HR size ``(height, width)`` the pipeline started from and ``scale`` the factor of the LR it makes.
    """

    cpu: torch.Generator
    device: torch.Generator
    size: tuple[int, int]
    scale: int
    record: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @classmethod
    def seeded(
        cls, key: Sequence[int], device: torch.device, size: tuple[int, int], scale: int
    ) -> SampleRandom:
        """Fresh generators on the CPU and ``device`` seeded from ``key``."""
        cpu_seed, device_seed = derive_seeds(2, *key)
        cpu = torch.Generator().manual_seed(cpu_seed)
        # Noise has its own generator on the CPU too, so the parameters drawn do not depend on the device.
        return cls(cpu, torch.Generator(device).manual_seed(device_seed), size, scale)

    def uniform(self, low: float, high: float) -> float:
        """A float in ``[low, high)``."""
        return low + (high - low) * float(torch.rand((), generator=self.cpu, dtype=torch.float64))

    def chance(self, probability: float) -> bool:
        """True with ``probability`` (no draw when it is 0 or 1)."""
        if probability <= 0 or probability >= 1:
            return probability >= 1
        return self.uniform(0.0, 1.0) < probability

    def index(self, weights: Sequence[float]) -> int:
        """An index drawn with the given (unnormalised) weights."""
        if len(weights) == 1:
            return 0
        return int(torch.multinomial(torch.tensor(weights, dtype=torch.float64), 1, generator=self.cpu))

    def choice(self, items: Sequence[Any], weights: Sequence[float] | None = None) -> Any:
        """One of ``items``, uniformly or with ``weights``."""
        return items[self.index(weights if weights is not None else [1.0] * len(items))]

    def permutation(self, count: int) -> list[int]:
        """A random order of ``range(count)``."""
        return [int(i) for i in torch.randperm(count, generator=self.cpu)]

    def normal(self, like: Tensor, shape: tuple[int, ...] | None = None) -> Tensor:
        """Standard normal noise with ``like``'s dtype and device."""
        return torch.randn(
            shape or tuple(like.shape), generator=self.device, device=like.device, dtype=like.dtype
        )

    def note(self, name: str, **values: Any) -> None:
        """Record what an operation drew (shown by preview_degradations.py)."""
        self.record.append((name, values))


def like(tensor: Tensor, reference: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """A small CPU ``tensor`` on ``reference``'s device with its dtype (or ``dtype``), without a host sync.

    A copy from pageable memory would make the host wait for the GPU's queue; a pinned one is queued.
    """
    tensor = tensor.to(dtype or reference.dtype)
    if reference.device.type == "cpu":
        return tensor
    return tensor.pin_memory().to(reference.device, non_blocking=True)


def scalar_like(value: float, reference: Tensor) -> Tensor:
    """``value`` as a one-element tensor made on ``reference``'s device (no copy from the host)."""
    return torch.full((1,), value, dtype=reference.dtype, device=reference.device)


OptionsT = TypeVar("OptionsT", bound=DegradationOptions)


class Degradation(Generic[OptionsT]):
    """Base of registered operations: ``apply(image, rng)`` returns the degraded image.

    ``image`` is ``1 x C x H x W`` float32, in [0, 1] but for the overshoot of an earlier blur or resize;
    the result may change its size (resizes). As in Real-ESRGAN, blurs and resizes may leave [0, 1]
    on sharp edges; noises, JPEG and the end of the pipeline clamp.
    """

    def __init__(self, options: OptionsT) -> None:
        self.options = options

    def __call__(self, image: Tensor, rng: SampleRandom) -> Tensor:
        """Run the operation with its probability."""
        if not rng.chance(self.options.probability):
            return image
        return self.apply(image, rng)

    def apply(self, image: Tensor, rng: SampleRandom) -> Tensor:
        raise NotImplementedError


def build_degradation(options: DegradationOptions) -> Degradation[Any]:
    """Instantiate the operation registered under ``options.type``."""
    return DEGRADATIONS.get(options.type).cls(options)
