"""The metric registry: full-reference image metrics that score a batch of outputs against ground truth.

A metric is one module in this folder that registers a :class:`Metric` subclass with its options::

    @METRICS.register(MyOptions, name="mine")
    class Mine(Metric[MyOptions]):
        def measure(self, sr, hq): ...   # one value per image

Every metric sees the images as they would be saved: clamped to [0, 1] and rounded to 8-bit levels,
with ``crop_border`` pixels (default: the scale) shaved from each side, as PSNR/SSIM-Y are published.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar, cast

import torch
from torch import Tensor, nn

from ..fields import option, require
from ..logs import first_line
from ..registry import Registry, unknown_name_message

METRICS: Registry[Metric[Any]] = Registry("metric")


@dataclass(frozen=True, kw_only=True)
class MetricOptions:
    """Base of every metric's options."""

    registry: ClassVar[Registry[Any]] = METRICS

    type: str = option(doc="registered metric, e.g. psnr, ssim, lpips, dists")
    crop_border: int | None = option(None, doc="pixels shaved from each side before scoring; null: the scale")

    def __post_init__(self) -> None:
        if self.crop_border is not None:
            require(self.crop_border >= 0, "crop_border", "0 or more pixels, or null", self.crop_border)

    @property
    def name(self) -> str:
        """The metric's key in logs, tables and ``best_<name>_G.pth`` (e.g. psnr_y, lpips_alex)."""
        return self.type

    @classmethod
    def variants(cls) -> list[MetricOptions]:
        """The named variants a command line can ask for (``--metrics psnr_y,lpips_alex``)."""
        return []


OptionsT = TypeVar("OptionsT", bound=MetricOptions)


class Metric(nn.Module, Generic[OptionsT]):
    """A metric module; ``higher_is_better`` says which way is better; ``perceptual`` marks the ones
    that judge textures (LPIPS, DISTS) rather than fidelity (PSNR, SSIM)."""

    higher_is_better: ClassVar[bool] = True
    perceptual: ClassVar[bool] = False

    def __init__(self, options: OptionsT, scale: int) -> None:
        super().__init__()
        self.options = options
        self.crop = options.crop_border if options.crop_border is not None else scale

    @property
    def name(self) -> str:
        return self.options.name

    def measure(self, sr: Tensor, hq: Tensor) -> Tensor:
        """One value per image, shape ``(B,)``, of prepared ``(B, C, H, W)`` batches in [0, 1]: C is 3, or 1
        for a grey image (pixel metrics score its one channel; perceptual ones get it as RGB)."""
        raise NotImplementedError

    def forward(self, sr: Tensor, hq: Tensor) -> Tensor:
        """Score ``sr`` against ``hq`` (same shape, RGB or grey, values in [0, 1]): one float64 value per image."""
        if sr.shape != hq.shape:
            raise ValueError(f"{self.name}: output {tuple(sr.shape)} and target {tuple(hq.shape)} differ")
        c = self.crop
        if c and min(sr.shape[-2:]) <= 2 * c:
            raise ValueError(f"{self.name}: crop_border {c} does not fit images of shape {tuple(sr.shape)}")
        if sr.shape[1] == 1 and self.perceptual:  # a grey image: perceptual networks take RGB
            sr, hq = sr.expand(-1, 3, -1, -1), hq.expand(-1, 3, -1, -1)
        sr, hq = (quantize(x) for x in (sr, hq))
        if c:
            sr, hq = sr[..., c:-c, c:-c], hq[..., c:-c, c:-c]
        try:
            values = self.measure(sr, hq)
        except torch.OutOfMemoryError:
            raise
        except RuntimeError as error:  # a network that cannot take this size (LPIPS's AlexNet, tiny images)
            raise ValueError(f"{self.name}: {first_line(error)}") from None
        return values.reshape(-1).to(torch.float64)

    def better(self, value: float, than: float) -> bool:
        """Whether ``value`` is a better score than ``than``."""
        return value > than if self.higher_is_better else value < than


def quantize(x: Tensor) -> Tensor:
    """``x`` clamped to [0, 1] and rounded to 8-bit levels, in float32."""
    return torch.floor(x.detach().float().clamp(0, 1) * 255 + 0.5) / 255


def build_metric(options: MetricOptions, scale: int) -> Metric[Any]:
    """The registered metric of ``options.type``."""
    metric: Metric[Any] = METRICS.get(options.type).cls(options, scale)
    return metric.eval()


def metric_class(name: str) -> type[Metric[Any]]:
    """The registered metric class of type ``name``."""
    return cast(type[Metric[Any]], METRICS.get(name).cls)


def metric_named(name: str) -> MetricOptions:
    """The options of a named variant (psnr_y, ssim_rgb, lpips_alex, dists, ...)."""
    variants = {v.name: v for n in METRICS.names() for v in METRICS.get(n).options.variants()}
    if name not in variants:
        raise ValueError(unknown_name_message("metric", name, sorted(variants)))
    return variants[name]


def check_unique_names(metrics: list[MetricOptions], key: str) -> None:
    """Two metrics of a list may not log under the same name."""
    names = [m.name for m in metrics]
    for i, name in enumerate(names):
        require(names.index(name) == i, f"{key}[{i}]", f"a metric other than {name} (listed twice)", name)
