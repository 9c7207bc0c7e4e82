"""Image quality metrics: PSNR/SSIM (numpy and batched torch), and the registry of validation metrics.

Every module of this folder is imported here, so a metric registers itself by being a file in it.
"""

import importlib
import pkgutil

from .base import METRICS, Metric, MetricOptions, build_metric, check_unique_names, metric_named
from .psnr_ssim import calculate_psnr, calculate_ssim, rgb_to_y
from .psnr_ssim_torch import calculate_psnr_torch, calculate_ssim_torch

__all__ = [
    "METRICS",
    "Metric",
    "MetricOptions",
    "build_metric",
    "calculate_psnr",
    "calculate_psnr_torch",
    "calculate_ssim",
    "calculate_ssim_torch",
    "check_unique_names",
    "metric_named",
    "rgb_to_y",
]

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "evaluate":  # the scoring command, not a metric
        importlib.import_module(f"{__name__}.{_module.name}")
