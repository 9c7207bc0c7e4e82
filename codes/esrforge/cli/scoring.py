"""Command-line options that the scoring programs share (interpolate.py, sweep_checkpoints.py)."""

from __future__ import annotations

import argparse
from typing import Any

import torch

from ..metrics.base import Metric, MetricOptions, build_metric, metric_named


def add_scoring_arguments(parser: argparse.ArgumentParser, default_metrics: str | None) -> None:
    """``--metrics``, ``--tile`` and ``--device``."""
    shown = default_metrics or "the config's validation.metrics"
    parser.add_argument(
        "--metrics",
        default=default_metrics,
        help=f"comma-separated metrics: psnr_y, psnr_rgb, ssim_y, ssim_rgb, lpips_alex, lpips_vgg, dists "
        f"(default: {shown}; LPIPS/DISTS need torchvision's ImageNet backbone in its cache, see the guide)",
    )
    parser.add_argument(
        "--tile", type=int, default=512, help="LR tile size for large images; 0: whole images"
    )
    parser.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="cpu or cuda (default: cuda if present)",
    )


def metric_options(text: str) -> list[MetricOptions]:
    """The metrics a ``--metrics a,b`` argument names."""
    return [metric_named(name.strip()) for name in text.split(",") if name.strip()]


def build_metrics(options: list[MetricOptions], scale: int, device: torch.device) -> list[Metric[Any]]:
    return [build_metric(o, scale).to(device) for o in options]
