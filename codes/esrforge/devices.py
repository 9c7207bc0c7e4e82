"""Which device a process runs on: the CUDA device its config lists, or the CPU."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import torch

log = logging.getLogger(__name__)


def select_device(gpu_ids: list[int], local_rank: int = 0) -> torch.device:
    """The CUDA device ``gpu_ids[local_rank]`` (made current), or the CPU when none is listed or present.

    ``local_rank`` is the process's index on its machine under torchrun: each process takes its own
    entry of ``gpu_ids``.
    """
    if not gpu_ids:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        log.warning("gpu_ids %s asks for CUDA, but no CUDA device is available: running on the CPU", gpu_ids)
        return torch.device("cpu")
    if local_rank >= len(gpu_ids):
        raise ValueError(
            f"gpu_ids: lists {len(gpu_ids)} device(s) {gpu_ids}, but this is process {local_rank} on this "
            "machine; list one device per process"
        )
    index, count = gpu_ids[local_rank], torch.cuda.device_count()
    if index >= count:
        raise ValueError(f"gpu_ids: device {index} does not exist; this machine has {count} CUDA device(s)")
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
"""/proc/cpuinfo flags of the instructions that make bfloat16 convolutions faster than float32."""


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU has AVX-512-BF16 or AMX-BF16 (read from /proc/cpuinfo; False where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next(
        (line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []
    )
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def available_memory() -> int | None:
    """Bytes of memory available to new work (``MemAvailable`` of /proc/meminfo); None where unknown."""
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None
