"""The peak memory of the tensors a function creates, counted as it runs (any device, no allocator stats).

The CPU has no allocator statistics like CUDA's, so :class:`TensorPeak` watches every operator's outputs
(a dispatch mode) and frees them from its count when they are collected; views share their storage's
count. Scratch memory that kernels allocate for themselves is not seen.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class TensorPeak(TorchDispatchMode):
    """While active, ``peak`` is the most bytes the tensors made under it held at once."""

    def __init__(self) -> None:
        super().__init__()
        self.peak = 0
        self._now = 0
        self._live: dict[int, list[int]] = {}  # storage address -> [tensors using it, bytes]

    def _release(self, address: int) -> None:
        entry = self._live[address]
        entry[0] -= 1
        if entry[0] == 0:
            self._now -= entry[1]
            del self._live[address]

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        out = func(*args, **(kwargs or {}))
        for tensor in tree_leaves(out):
            if not isinstance(tensor, torch.Tensor):
                continue
            storage = tensor.untyped_storage()
            address = storage.data_ptr()
            if address in self._live:
                self._live[address][0] += 1
            else:
                self._live[address] = [1, storage.nbytes()]
                self._now += storage.nbytes()
                self.peak = max(self.peak, self._now)
            weakref.finalize(tensor, self._release, address)
        return out


def peak_tensor_bytes(function: Callable[[], object]) -> int:
    """The peak bytes of the tensors ``function()`` creates (its result included)."""
    with TensorPeak() as meter:
        function()
    return meter.peak
