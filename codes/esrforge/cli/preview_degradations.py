"""``python codes/scripts/preview_degradations.py -opt CONFIG [--set ...] [--count 16] [--output DIR]``.

Draws training patches as train.py would, degrades them with ``datasets.train.degradation`` and
writes ``degradations.png``: each HR patch beside its LR (enlarged, nearest neighbour). The
parameters each sample drew are logged, one line per sample.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..data.base import build_dataset
from ..data.imageio import to_uint8, write_image
from ..data.loader import SampleKey
from ..degradations.pipeline import Degrader
from ..fields.errors import OptionError
from ..inference.compare import column, row
from ..options.loader import load_config
from .common import add_overrides_argument, exit_with

log = logging.getLogger("esrforge")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Preview the LR a degradation pipeline makes from HR patches."
    )
    parser.add_argument(
        "-opt", "--opt", required=True, help="a training config with datasets.train.degradation"
    )
    add_overrides_argument(parser, "datasets.train.degradation.ops.0.probability=0")
    parser.add_argument("--count", type=int, default=16, help="number of patches (default 16)")
    parser.add_argument("--step", type=int, default=0, help="draw what this training step draws (default 0)")
    parser.add_argument(
        "--output", type=Path, default=None, help="folder for degradations.png (default: experiments/<name>/)"
    )
    return parser.parse_args(argv)


def picture(hq: torch.Tensor, lq: torch.Tensor, columns: int) -> np.ndarray:
    """uint8 RGB: each HR patch beside its LR enlarged (nearest) to the same size, ``columns`` pairs a row."""
    scale = hq.shape[-1] // lq.shape[-1]
    pairs = [
        row(
            [
                to_uint8(h.permute(1, 2, 0).numpy()),
                to_uint8(lo.permute(1, 2, 0).numpy()).repeat(scale, 0).repeat(scale, 1),
            ]
        )
        for h, lo in zip(hq, lq, strict=True)
    ]
    return column([row(pairs[i : i + columns]) for i in range(0, len(pairs), columns)])


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.count < 1:
        raise ValueError(f"--count: expected a positive number of patches, got {args.count}")
    if args.step < 0:
        raise ValueError(f"--step: expected a training step of 0 or more, got {args.step}")
    # The preview reads only datasets.train.dataroot: a pretrained model the run will make, or a
    # validation folder not there yet, is no reason to refuse.
    config = load_config(args.opt, args.overrides, check_paths=False)
    data = config.datasets.train
    if data is None or data.degradation is None:
        raise OptionError("datasets.train.degradation", f"{args.opt} has none to preview")
    if not data.dataroot.exists():
        raise OptionError("datasets.train.dataroot", f"path does not exist: {data.dataroot}", args.opt)
    seed = config.train.manual_seed if config.train is not None else 0
    dataset = build_dataset(data, config.scale)
    # The pool only swaps whole samples between steps: the preview shows the pipeline's own output.
    degradation = dataclasses.replace(data.degradation, queue_size=0)
    degrader = Degrader(degradation, config.scale, data.target_size, seed)
    count = len(dataset)  # type: ignore[arg-type]
    hq = torch.stack([dataset[SampleKey(i % count, 0, seed)]["hq"] for i in range(args.count)])
    batch = degrader(hq, args.step)
    for index, drawn in enumerate(batch.drawn):
        log.info("sample %d: %s", index, "; ".join(f"{name} {values}" for name, values in drawn))
    path = (args.output or config.experiment_dir) / "degradations.png"
    write_image(path, picture(batch.hq, batch.lq, columns=min(4, args.count)))
    log.info(
        "wrote %s: %d HR patches (left) beside their LR, enlarged %dx (right)", path, args.count, config.scale
    )
    return 0


def run() -> None:
    exit_with(main)
