"""The degradation section of a training dataset and the stage that applies it to HR batches.

The stage runs on the training device after the batch arrives: every sample is degraded with its
own generators, seeded by ``(seed, rank, step, sample)``, then HR and LR are cut to ``target_size``
together and optionally pass through the training-pair pool. (The unsharp-masked HR of ``gt_usm``
losses is made by the training step from the HR it trains on.)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..fields import option, require
from ..randomness import derive_seeds
from . import kernels
from .base import DegradationOptions, SampleRandom, build_degradation, like
from .groups import ops_end_at_output

log = logging.getLogger(__name__)

POOL_TAG = 0x504F4F4C
"""Mixed into the seed of the pool's shuffle so it is unrelated to the samples' draws."""


@dataclass(frozen=True, kw_only=True)
class UsmOptions:
    """Unsharp masking as Real-ESRGAN's ``USMSharp``: ``img + weight * (img - blur)`` where it differs."""

    radius: int = option(50, doc="Gaussian kernel size (made odd; sigma from OpenCV's rule)")
    weight: float = option(0.5, doc="amount of sharpening")
    threshold: float = option(10.0, doc="residual in 8-bit levels below which a pixel is left as it is")

    def __post_init__(self) -> None:
        require(self.radius >= 1, "radius", "a positive size", self.radius)
        require(self.weight >= 0, "weight", "a weight >= 0", self.weight)


@dataclass(frozen=True, kw_only=True)
class DegradationSection:
    """HR -> LR on the training device by a list of random operations (Real-ESRGAN, DLAS, video)."""

    ops: list[DegradationOptions] = option(doc="the operations in order, each with type and probability")
    patch_size: int | None = option(
        None,
        doc="HR patch the dataset crops and the operations degrade before HR and LR are cut to target_size "
        "(Real-ESRGAN: 400); null: target_size",
    )
    sharpen_input: bool = option(
        False, doc="degrade the unsharp-masked HR instead of the HR (Real-ESRGAN does)"
    )
    usm: UsmOptions = option(factory=UsmOptions, doc="the unsharp mask of sharpen_input and of gt_usm losses")
    queue_size: int = option(
        0, doc="training-pair pool that mixes samples of earlier batches in (Real-ESRGAN: 180); 0: off"
    )
    quantize: bool = option(True, doc="round the LR to 8-bit levels at the end, as a saved image would be")
    seed: int | None = option(None, doc="seed of the draws; null: train.manual_seed")

    def __post_init__(self) -> None:
        require(len(self.ops) > 0, "ops", "at least one operation", self.ops)

        if self.patch_size is not None:
            require(self.patch_size > 0, "patch_size", "a positive size", self.patch_size)
        require(self.queue_size >= 0, "queue_size", "0 or a positive pool size", self.queue_size)

    def check_output_size(self, scale: int) -> None:
        """The operations must end at HR / ``scale`` whatever they draw (the config check calls this)."""
        require(
            ops_end_at_output(self.ops, at_output=scale == 1),
            "ops",
            "operations that always end at HR / scale: a resize_to_output with probability 1 after the last "
            "resize (in every branch of a one_of)",
            [op.type for op in self.ops],
        )


def unsharp_mask(image: Tensor, options: UsmOptions) -> Tensor:
    """Real-ESRGAN's USM sharpening of ``N x C x H x W`` in [0, 1] (its Gaussian as two 1-D passes)."""
    size = options.radius + 1 - options.radius % 2
    line = kernels.gaussian_1d(size, 0.0)
    residual = image - kernels.filter_separable(image, line)
    mask = (residual.abs() * 255 > options.threshold).to(image.dtype)
    soft = kernels.filter_separable(mask, line)
    sharp = (image + options.weight * residual).clamp(0, 1)
    return soft * sharp + (1 - soft) * image


@dataclass
class DegradedBatch:
    """What the stage gives the training step: LR input, HR target, and what each sample drew."""

    lq: Tensor
    hq: Tensor
    drawn: list[list[tuple[str, dict[str, Any]]]] = field(default_factory=list)


class Degrader:
    """Applies a :class:`DegradationSection` to HR batches (``N x C x P x P`` float32 in [0, 1])."""

    def __init__(
        self, options: DegradationSection, scale: int, target_size: int, seed: int, rank: int = 0
    ) -> None:
        self.options, self.scale, self.target_size = options, scale, target_size
        self.seed = options.seed if options.seed is not None else seed
        self.rank = rank
        self.ops = [build_degradation(o) for o in options.ops]
        self.pool: PairPool | None = PairPool(options.queue_size) if options.queue_size else None

    def describe(self) -> str:
        """One line for the training log: the operations, patch sizes and pool."""
        o = self.options
        pool = f", a pool of {o.queue_size} pairs" if o.queue_size else ""
        return (
            f"LR made on the training device by {len(o.ops)} operations ({', '.join(op.type for op in o.ops)}) "
            f"from {o.patch_size or self.target_size} px HR patches, cut to {self.target_size} / "
            f"{self.target_size // self.scale} px{pool}"
        )

    @torch.no_grad()
    def degrade(self, image: Tensor, key: tuple[int, ...]) -> tuple[Tensor, SampleRandom]:
        """The LR of one HR image ``1 x C x H x W`` (H, W multiples of the scale), drawn from ``key``."""
        height, width = image.shape[-2:]
        rng = SampleRandom.seeded(key, image.device, (height, width), self.scale)
        out = unsharp_mask(image, self.options.usm) if self.options.sharpen_input else image
        for op in self.ops:
            out = op(out, rng)
        expected = (height // self.scale, width // self.scale)
        if tuple(out.shape[-2:]) != expected:
            got = "x".join(str(d) for d in out.shape[-2:])
            raise ValueError(
                f"degradation: the operations made a {got} LR from a {height}x{width} HR, expected "
                f"{expected[0]}x{expected[1]} (HR / scale {self.scale}); end the ops with resize_to_output"
            )
        out = out.clamp(0, 1)
        if self.options.quantize:
            out = (out * 255.0).round() / 255.0
        return out, rng

    @torch.no_grad()
    def __call__(self, hq: Tensor, step: int) -> DegradedBatch:
        """Degrade every sample of ``hq``, cut the pairs to ``target_size`` and pass them through the pool."""
        pairs, drawn = [], []
        for index in range(hq.shape[0]):
            key = (self.seed, self.rank, step, index)
            lq, rng = self.degrade(hq[index : index + 1].float(), key)
            pairs.append(self._crop(hq[index : index + 1], lq, rng))
            drawn.append(rng.record)
        batch_hq = torch.cat([p[0] for p in pairs])
        batch_lq = torch.cat([p[1] for p in pairs])
        if self.pool is not None:
            shuffle = torch.Generator().manual_seed(derive_seeds(1, self.seed, self.rank, step, POOL_TAG)[0])
            batch_lq, batch_hq = self.pool.exchange(batch_lq, batch_hq, shuffle)
        return DegradedBatch(batch_lq.contiguous(), batch_hq.contiguous(), drawn)

    def _crop(self, hq: Tensor, lq: Tensor, rng: SampleRandom) -> tuple[Tensor, Tensor]:
        """The same random ``target_size`` window of HR and LR (the whole patch when it is that size)."""
        size, scale = self.target_size, self.scale
        lr_size = size // scale
        if lq.shape[-1] == lr_size and lq.shape[-2] == lr_size:
            return hq, lq
        top = int(torch.randint(lq.shape[-2] - lr_size + 1, (), generator=rng.cpu))
        left = int(torch.randint(lq.shape[-1] - lr_size + 1, (), generator=rng.cpu))
        hq = hq[..., top * scale : top * scale + size, left * scale : left * scale + size]
        return hq, lq[..., top : top + lr_size, left : left + lr_size]


class PairPool:
    """Real-ESRGAN's training-pair pool: fills with the first batches, then swaps a shuffled batch out.

    Its contents are part of the training state (:meth:`state_dict`), so a resumed run gets back
    exactly the pairs an uninterrupted one would draw.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.lq: Tensor | None = None
        self.hq: Tensor | None = None
        self.filled = 0

    def exchange(self, lq: Tensor, hq: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Put the batch in; once full, return ``len(batch)`` pairs drawn from the shuffled pool instead."""
        count = lq.shape[0]
        if self.size % count:
            raise ValueError(
                f"degradation.queue_size {self.size} must be a multiple of datasets.train.batch_size {count}"
            )
        if self.lq is not None and (self.lq.shape[1:] != lq.shape[1:] or self.lq.device != lq.device):
            log.warning(
                "the pair pool holds %s pairs, the batch is %s: the pool fills again",
                tuple(self.lq.shape[1:]),
                tuple(lq.shape[1:]),
            )
            self.lq, self.hq, self.filled = None, None, 0
        if self.lq is None or self.hq is None:
            self.lq = lq.new_zeros((self.size, *lq.shape[1:]))
            self.hq = hq.new_zeros((self.size, *hq.shape[1:]))
        if self.filled < self.size:
            self.lq[self.filled : self.filled + count] = lq
            self.hq[self.filled : self.filled + count] = hq
            self.filled += count
            return lq, hq
        order = like(torch.randperm(self.size, generator=generator), self.lq, torch.long)
        self.lq, self.hq = self.lq[order], self.hq[order]
        out_lq, out_hq = self.lq[:count].clone(), self.hq[:count].clone()
        self.lq[:count], self.hq[:count] = lq, hq
        return out_lq, out_hq

    def state_dict(self) -> dict[str, Any]:
        """The pool's pairs, stored as 16-bit levels when that is exact (it is for 8- and 16-bit data)."""
        return {"size": self.size, "filled": self.filled, "lq": _pack(self.lq), "hq": _pack(self.hq)}

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        """Restore a saved pool; one of another ``queue_size`` is dropped (with a warning) and fills again."""
        if state["size"] != self.size:
            log.warning(
                "the saved pair pool has %d pairs, queue_size is %d: the pool fills again",
                state["size"],
                self.size,
            )
            return
        self.filled = int(state["filled"])
        self.lq, self.hq = _unpack(state["lq"], device), _unpack(state["hq"], device)


def _pack(tensor: Tensor | None) -> Tensor | dict[str, Any] | None:
    """``tensor`` as 16-bit levels (their bytes, uint8: every pickler reads those) when that is exact."""
    if tensor is None:
        return None
    packed = (tensor * 65535.0).round().to(torch.int32)
    if not torch.equal(packed.float() / 65535.0, tensor):
        return tensor.cpu()
    levels = packed.to(torch.uint16).cpu().contiguous()
    return {"uint16_bytes": levels.view(-1).view(torch.uint8), "shape": list(levels.shape)}


def _unpack(packed: Tensor | dict[str, Any] | None, device: torch.device) -> Tensor | None:
    if packed is None:
        return None
    if isinstance(packed, Tensor):
        return packed.to(device)
    levels = packed["uint16_bytes"].view(torch.uint16).view(packed["shape"])
    return (levels.to(torch.int32).to(device).float() / 65535.0).contiguous()
