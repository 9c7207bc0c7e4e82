"""PSNR and SSIM as metrics, on BT.601 Y (default) or RGB, matching the MATLAB-style published numbers."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ..fields import option
from .base import METRICS, Metric, MetricOptions
from .psnr_ssim_torch import calculate_psnr_torch, calculate_ssim_torch


@dataclass(frozen=True, kw_only=True)
class PixelMetricOptions(MetricOptions):
    """Options of ``psnr`` and ``ssim``."""

    y_channel: bool = option(True, doc="score the BT.601 luma (as published SR numbers); false: RGB")

    @property
    def name(self) -> str:
        return f"{self.type}_{'y' if self.y_channel else 'rgb'}"

    @classmethod
    def variants(cls) -> list[MetricOptions]:
        return [cls(), cls(y_channel=False)]


@dataclass(frozen=True, kw_only=True)
class PsnrOptions(PixelMetricOptions):
    type: str = option("psnr", doc="psnr")


@dataclass(frozen=True, kw_only=True)
class SsimOptions(PixelMetricOptions):
    type: str = option("ssim", doc="ssim")


@METRICS.register(PsnrOptions, name="psnr")
class Psnr(Metric[PsnrOptions]):
    """Peak signal-to-noise ratio in dB (inf for identical images)."""

    def measure(self, sr: Tensor, hq: Tensor) -> Tensor:
        return calculate_psnr_torch(sr, hq, y_channel=self.options.y_channel)


@METRICS.register(SsimOptions, name="ssim")
class Ssim(Metric[SsimOptions]):
    """Structural similarity with the 11x11 Gaussian window (1 for identical images)."""

    def measure(self, sr: Tensor, hq: Tensor) -> Tensor:
        return calculate_ssim_torch(sr, hq, y_channel=self.options.y_channel)
