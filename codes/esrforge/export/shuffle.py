"""Pixel unshuffle as a 4-D convolution, swapped in while a network is exported.

torch's ONNX exporter writes ``pixel_unshuffle`` as Reshape, a 6-D Transpose and Reshape (ONNX's
SpaceToDepth has only the DCR channel order, not torch's), and ncnn (like other mobile runtimes) takes
at most 4-D tensors. Unshuffling by ``r`` is a fixed permutation of pixels, so it is exactly a
stride-``r`` ``r x r`` Conv with one-hot weights and one group per channel: output channel
``c*r*r + i*r + j`` takes pixel ``(i, j)`` of every ``r x r`` block of channel ``c`` (torch's order).
Every output value is one input value times 1 plus zeros: equal bit for bit, in fp32 and fp16.

``pixel_shuffle`` (``nn.PixelShuffle``) needs no rewrite: the exporter writes it as DepthToSpace in CRD
mode, which is 4-D and torch's order.

:func:`four_d_unshuffle` replaces the *functions* (``torch.nn.functional.pixel_unshuffle`` and its
``torch.pixel_unshuffle`` alias) for the duration of the export rather than replacing modules, because
networks call it as a function as often as through a module (our RRDBNet's ``F.pixel_unshuffle``,
spandrel's ESRGAN's ``torch.pixel_unshuffle``), and ``nn.PixelUnshuffle.forward`` calls
``F.pixel_unshuffle``: one swap reaches every call of every architecture without knowing its modules.
No module or weight changes, and the originals are back on exit, also when the export fails. (The swap
is process-wide while it lasts: do not run PyTorch code in other threads during an export.) A name
bound at import time (``from torch.nn.functional import pixel_unshuffle``) or a hand-written 6-D
reshape is not reached: the rank check after the export reports it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor
from torch.nn import functional as F


def one_hot_weights(channels: int, factor: int, like: Tensor) -> Tensor:
    """``(channels * factor², 1, factor, factor)`` weights: filter ``k`` of each group is 1 at ``(k // factor, k % factor)``."""
    block = factor * factor
    eye = torch.eye(block, dtype=like.dtype, device=like.device).reshape(block, 1, factor, factor)
    return eye.repeat(channels, 1, 1, 1)


def pixel_unshuffle_4d(x: Tensor, downscale_factor: int) -> Tensor:
    """``F.pixel_unshuffle`` of an ``(N, C, H, W)`` tensor as a grouped strided convolution."""
    channels = int(x.shape[1])  # a constant in the traced graph: the weights become an initializer
    weights = one_hot_weights(channels, downscale_factor, x)
    return F.conv2d(x, weights, stride=downscale_factor, groups=channels)


@contextlib.contextmanager
def four_d_unshuffle() -> Iterator[None]:
    """Within the block, torch's pixel unshuffle (hence ``nn.PixelUnshuffle``) runs as
    :func:`pixel_unshuffle_4d`; see the module doc for why the functions are swapped."""
    saved = F.pixel_unshuffle, torch.pixel_unshuffle
    try:
        F.pixel_unshuffle = torch.pixel_unshuffle = pixel_unshuffle_4d  # type: ignore[assignment]
        yield
    finally:
        F.pixel_unshuffle, torch.pixel_unshuffle = saved
