"""Run a network on batches of tiles: device, precision, memory format, CUDA out-of-memory handling."""

from __future__ import annotations

import contextlib
import logging
import math

import torch
from torch import Tensor, nn

from ..devices import available_memory
from .memory import peak_tensor_bytes

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
CPU_AUTO_TILE = 256
"""``tile_size: auto`` on a CPU whose available memory is unknown: about 1.1 GiB of activations for a
64-feature x4 RRDBNet (bench/infer.py)."""
AUTO_TILE_LIMITS = (32, 2048)
PROBE_SIZE = 64
MEMORY_HEADROOM = 0.6
"""Fraction of the free CUDA memory that ``auto`` plans to use (allocator slack, cuDNN workspaces)."""
CPU_PROBE_SIZE = 32
CPU_MEMORY_SHARE = 0.5
"""Fraction of the available memory that ``auto`` plans a CPU tile batch's tensors to use."""


class TileTooLarge(RuntimeError):
    """CUDA ran out of memory on a single tile: the caller should retry with smaller tiles."""


class Engine:
    """Runs ``model`` on float32 batches, returning float32 outputs on its device; the model is not modified.

    Inputs are moved to the model's device (CPU batches through pinned memory on CUDA, so the copy is
    asynchronous), cast to its parameters' dtype and given the channels_last memory format (convolutions
    then run channels_last). When ``dtype`` differs from the parameters' dtype the forward runs under
    autocast. A CUDA out-of-memory error halves the batch (for good); with one tile left it raises
    :class:`TileTooLarge`. ``multiple``: what input sizes must be multiples of (the network's description).
    ``compiled``: run the model through torch.compile (it compiles at the first batch); on CUDA with CUDA
    graphs (``reduce-overhead``: one graph per tile shape and batch size, replayed for every batch of
    them), whose outputs live in the graph's memory until the next replay and are therefore copied out;
    out of memory, it drops the graphs and runs uncompiled. The memory probes of ``tile_size: auto`` run
    the model uncompiled, so that they compile nothing.
    """

    def __init__(
        self,
        model: nn.Module,
        dtype: torch.dtype | None = None,
        channels_last: bool = True,
        multiple: int = 1,
        compiled: bool = False,
    ) -> None:
        parameter = next(model.parameters(), None)
        self.model = model
        self.device = parameter.device if parameter is not None else torch.device("cpu")
        self.graphs = compiled and self.device.type == "cuda"
        self.forward_model = (
            torch.compile(model, mode="reduce-overhead" if self.graphs else None) if compiled else model
        )
        self.weight_dtype = parameter.dtype if parameter is not None else torch.float32
        self.dtype = dtype or self.weight_dtype
        self.channels_last = channels_last
        self.max_batch: int | None = None
        self.multiple = multiple
        if self.dtype == torch.float16 and self.device.type == "cpu":
            raise ValueError("fp16 inference needs a CUDA device; use fp32 or bf16 on the CPU")

    def _autocast(self) -> contextlib.AbstractContextManager[object]:
        if self.dtype == self.weight_dtype or self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def _forward(self, batch: Tensor, eager: bool = False) -> Tensor:
        if self.device.type == "cuda" and batch.device.type == "cpu":
            batch = batch.pin_memory()
        x = batch.to(self.device, non_blocking=True).to(self.weight_dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), self._autocast():
            if eager:
                return self.model(x).float()
            output = self.forward_model(x)
            result = output.float()
            return result.clone() if self.graphs and result is output else result

    def __call__(self, batch: Tensor) -> Tensor:
        """The model's output for ``batch`` ``(B, C, h, w)``, float32 on the model's device."""
        size = min(len(batch), self.max_batch or len(batch))
        if size < len(batch):
            return torch.cat([self(part) for part in batch.split(size)])
        try:
            return self._forward(batch)
        except torch.OutOfMemoryError:
            pass  # handled below, once the failed forward's tensors are freed
        if self.graphs:  # the graphs' memory pools stay reserved: out of memory, run without them
            self.drop_graphs()
            return self(batch)
        self.release_memory()
        if len(batch) == 1:
            raise TileTooLarge(f"out of memory on one {batch.shape[-1]}x{batch.shape[-2]} tile")
        self.max_batch = max(1, len(batch) // 2)
        log.warning("out of memory: running tiles in batches of %d", self.max_batch)
        return self(batch)

    def drop_graphs(self) -> None:
        """Run uncompiled from now on, returning the CUDA graphs' memory (after an out-of-memory error)."""
        from torch._inductor import cudagraph_trees

        log.warning("out of memory with CUDA graphs: running the network uncompiled")
        self.graphs = False
        self.forward_model = self.model
        cudagraph_trees.reset_cudagraph_trees()
        self.release_memory()

    def release_memory(self) -> None:
        """Return cached CUDA memory after an out-of-memory error."""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _peak_bytes(self, channels: int, side: int) -> int:
        """CUDA memory a forward pass of one ``side x side`` tile needs beyond what is already allocated."""
        torch.cuda.synchronize(self.device)
        base = torch.cuda.memory_allocated(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        self._forward(torch.zeros(1, channels, side, side), eager=True)
        torch.cuda.synchronize(self.device)
        return torch.cuda.max_memory_allocated(self.device) - base

    def measure_bytes_per_pixel(self, channels: int) -> float:
        """CUDA memory per input pixel of a forward pass: the slope between two probe tiles."""
        small, large = PROBE_SIZE * self.multiple, 2 * PROBE_SIZE * self.multiple
        low, high = self._peak_bytes(channels, small), self._peak_bytes(channels, large)
        slope = (high - low) / (large**2 - small**2)
        return slope if slope > 0 else max(high, 1) / large**2

    def measure_cpu_bytes_per_pixel(self, channels: int) -> float:
        """Peak tensor memory per input pixel of a forward pass on the CPU, from one probe tile."""
        side = CPU_PROBE_SIZE * self.multiple
        probe = torch.zeros(1, channels, side, side)
        return peak_tensor_bytes(lambda: self._forward(probe, eager=True)) / side**2

    def auto_tile(self, channels: int, margin: int, batch: int) -> int:
        """The largest tile (core, LR pixels) whose ``tile + margin`` crops fit ``batch`` at a time.

        On CUDA, from the free memory and the measured cost per pixel; on the CPU, likewise from the
        available memory (:data:`CPU_MEMORY_SHARE` of it), or :data:`CPU_AUTO_TILE` where that is unknown.
        Larger tiles waste fewer pixels on margins: at 1280x720 with the default margins the network sees
        1.9x the pixels with 256 tiles, 1.3x with 640 and 1.15x with two; on a CPU, larger crops run a
        little slower per pixel (caches), but by far less than the margins cost (bench/infer.py).
        """
        if self.device.type == "cuda":
            memory, _ = torch.cuda.mem_get_info(self.device)
            per_pixel, share, what = self.measure_bytes_per_pixel(channels), MEMORY_HEADROOM, "free"
        else:
            known = available_memory()
            if known is None:
                return CPU_AUTO_TILE
            memory, what = known, "available"
            per_pixel, share = self.measure_cpu_bytes_per_pixel(channels), CPU_MEMORY_SHARE
        side = math.isqrt(int(share * memory / (per_pixel * batch)))
        tile = max(AUTO_TILE_LIMITS[0], min(AUTO_TILE_LIMITS[1], (side - margin) // 16 * 16))
        log.info(
            "tile_size auto: %d (%.0f MiB %s, %.1f KiB per input pixel)",
            tile,
            memory / 2**20,
            what,
            per_pixel / 1024,
        )
        return tile
