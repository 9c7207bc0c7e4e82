"""LPIPS (AlexNet or VGG16) and DISTS, computed by torchmetrics with backbones loaded by esrforge.

torchmetrics ships the learned parts (LPIPS's linear layers, DISTS's alpha/beta) inside its package,
but builds the ImageNet backbones through torchvision's download. esrforge hands it the backbone it
loaded itself (a local ``weights_path``, or torchvision's cache), so an offline machine without the
file gets one line that says which file to fetch, and tests can run with random backbones.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal
from unittest import mock

from torch import Tensor, nn

from ..fields import option
from ..pretrained import imagenet_features
from .base import METRICS, Metric, MetricOptions

LPIPS_BACKBONES = {"alex": "alexnet", "vgg": "vgg16"}


def _torchmetrics(module: str) -> Any:
    """``torchmetrics.functional.image.<module>``, or a one-line error saying how to install it."""
    try:
        return importlib.import_module(f"torchmetrics.functional.image.{module}")
    except ImportError as err:
        raise ImportError(
            f"LPIPS and DISTS need torchmetrics>=1.9 ({err}); pip install 'torchmetrics>=1.9'"
        ) from None


@dataclass(frozen=True, kw_only=True)
class BackboneMetricOptions(MetricOptions):
    """What the ImageNet-backbone metrics share: where the backbone's weights come from."""

    pretrained: bool = option(True, doc="ImageNet backbone; false: random backbone weights (tests only)")
    weights_path: Path | None = option(
        None, doc="local .pth of torchvision's backbone state dict; null: torchvision's download cache"
    )


@dataclass(frozen=True, kw_only=True)
class LpipsOptions(BackboneMetricOptions):
    """Options of ``lpips``."""

    type: str = option("lpips", doc="lpips")
    net: Literal["alex", "vgg"] = option(
        "alex", doc="backbone: alex (LPIPS's default, the one usually reported) or vgg (as a loss)"
    )

    @property
    def name(self) -> str:
        return f"lpips_{self.net}"

    @classmethod
    def variants(cls) -> list[MetricOptions]:
        return [cls(), cls(net="vgg")]


@METRICS.register(LpipsOptions, name="lpips")
class Lpips(Metric[LpipsOptions]):
    """Learned perceptual image patch similarity, v0.1 (0 for identical images; lower is better)."""

    higher_is_better = False
    perceptual = True

    def __init__(self, options: LpipsOptions, scale: int) -> None:
        super().__init__(options, scale)
        lpips = _torchmetrics("lpips")
        arch = LPIPS_BACKBONES[options.net]
        features = imagenet_features(arch, options.pretrained, options.weights_path, f"metric {options.name}")
        with mock.patch.object(lpips, "_get_tv_model_features", lambda net, pretrained=False: features):
            self.net: nn.Module = lpips._NoTrainLpips(net=options.net)
        self.net.requires_grad_(False)

    def measure(self, sr: Tensor, hq: Tensor) -> Tensor:
        return self.net(sr, hq, normalize=True)


@dataclass(frozen=True, kw_only=True)
class DistsOptions(BackboneMetricOptions):
    """Options of ``dists``."""

    type: str = option("dists", doc="dists")

    @classmethod
    def variants(cls) -> list[MetricOptions]:
        return [cls()]


@METRICS.register(DistsOptions, name="dists")
class Dists(Metric[DistsOptions]):
    """Deep image structure and texture similarity on VGG16 (0 for identical images; lower is better)."""

    higher_is_better = False
    perceptual = True

    def __init__(self, options: DistsOptions, scale: int) -> None:
        super().__init__(options, scale)
        dists = _torchmetrics("dists")
        features = imagenet_features("vgg16", options.pretrained, options.weights_path, "metric dists")
        with mock.patch.object(dists, "vgg16", lambda weights=None: SimpleNamespace(features=features)):
            self.net: nn.Module = dists.DISTSNetwork(load_weights=True)
        self.net.requires_grad_(False)

    def measure(self, sr: Tensor, hq: Tensor) -> Tensor:
        return self.net(sr, hq)
