"""Which device a process runs on: the CUDA device its config lists, or the CPU."""

from __future__ import annotations

import logging

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
        log.info("gpu_ids %s asks for CUDA, but no CUDA device is available: running on the CPU", gpu_ids)
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
