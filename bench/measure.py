"""Helpers of the inference benchmarks: the benchmark model, timing, and the work a tiling costs."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "codes"))

from esrforge.inference.grid import TileGrid
from esrforge.inference.seams import realish_rrdb
from esrforge.networks import RRDBNet, RRDBNetOptions

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def build_model(nb: int, device: torch.device, dtype: torch.dtype, realish: bool = False) -> nn.Module:
    """x4 RRDBNet 64/nb/32, channels_last; ``realish``: the seam test's stand-in for trained weights."""
    torch.manual_seed(0)
    model = (
        realish_rrdb(64, nb, 32, 4)
        if realish
        else RRDBNet(RRDBNetOptions(nf=64, nb=nb, gc=32, scale=4)).eval()
    )
    return model.to(device=device, dtype=dtype).to(memory_format=torch.channels_last)


def best_time(run: Callable[[], object], repeats: int) -> float:
    """The fastest of ``repeats`` calls of ``run()`` (CUDA synchronised), in seconds."""
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        run()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def work_ratio(height: int, width: int, tile: int | None, overlap: int, pad: int) -> float:
    """Network input pixels per image pixel for ``tile`` (1 untiled)."""
    if tile is None:
        return 1.0
    grid = TileGrid.plan(height, width, tile, overlap, pad)
    crop_h, crop_w = grid.crop_shape()
    return len(grid) * crop_h * crop_w / (height * width)


def tiled_size(args: argparse.Namespace, height: int, width: int) -> int:
    """The tile size of the ``tiled`` runs: ``--tile``, at most half the input's longer side."""
    return min(args.tile, max(height, width) // 2)
