"""Command-line options that the scoring programs share (interpolate.py, sweep_checkpoints.py)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Literal

import torch

from ..inference.tiling import MIN_TILE
from ..metrics.base import Metric, MetricOptions, build_metric, metric_named
from .direct import parse_tile


def scoring_tile(text: str) -> Literal["auto"] | int:
    """``--tile``: auto, 0 (whole images) or a size; 0 stays 0 (not given is None: each set's tile_size)."""
    tile = parse_tile(text)
    return tile if isinstance(tile, int) else "auto" if tile == "auto" else 0


def add_scoring_arguments(parser: argparse.ArgumentParser, default_metrics: str | None) -> None:
    """``--metrics``, ``--tile`` and ``--device`` (check them with :func:`check_scoring_arguments`)."""
    shown = default_metrics or "the config's validation.metrics"
    parser.add_argument(
        "--metrics",
        default=default_metrics,
        help=f"comma-separated metrics: psnr_y, psnr_rgb, ssim_y, ssim_rgb, lpips_alex, lpips_vgg, dists "
        f"(default: {shown}; LPIPS/DISTS need torchvision's ImageNet backbone in its cache, see the guide)",
    )
    parser.add_argument(
        "--tile",
        type=scoring_tile,
        help=f"LR tile size (at least {MIN_TILE}), auto, or 0 for whole images "
        "(default: the validation set's tile_size)",
    )
    parser.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="cpu or cuda (default: cuda if present)",
    )


def check_scoring_arguments(args: argparse.Namespace, out: Path) -> None:
    """ValueError naming the flag for a bad ``--metrics``, ``--tile`` or ``--device``, or an ``out`` folder
    that is a file: before any model is loaded or scored."""
    if args.metrics is not None:
        metric_options(args.metrics)
    if isinstance(args.tile, int) and args.tile != 0 and args.tile < MIN_TILE:
        raise ValueError(f"--tile: expected auto, 0 or a size of at least {MIN_TILE}, got {args.tile}")
    scoring_device(args.device)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: expected a folder for the results, found a file")


def scoring_device(text: str) -> torch.device:
    """The device ``--device`` names: cpu, or cuda (``cuda:N``) where that GPU exists."""
    try:
        device = torch.device(text)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device: expected cpu or cuda, got {text!r}")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device.type == "cuda" and (device.index or 0) >= count:
        raise ValueError(f"--device {text}: this machine has {count} CUDA device(s); use --device cpu")
    return device


def metric_options(text: str) -> list[MetricOptions]:
    """The metrics a ``--metrics a,b`` argument names (ValueError when it names none)."""
    options = [metric_named(name.strip()) for name in text.split(",") if name.strip()]
    if not options:
        raise ValueError(f"--metrics: expected comma-separated metric names, got {text!r}")
    return options


def build_metrics(options: list[MetricOptions], scale: int, device: torch.device) -> list[Metric[Any]]:
    return [build_metric(o, scale).to(device) for o in options]
