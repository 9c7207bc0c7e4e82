"""Perceptual loss: a distance between VGG19 features of the generator output and of the HR target."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
import torchvision
from torch import Tensor, nn
from torchvision.models import VGG19_Weights

from ..fields import option, require
from .base import LOSSES, GeneratorContext, Loss, LossOptions
from .criteria import FeatureCriterion, distance

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VGG19_CONVS_PER_BLOCK = (2, 2, 4, 4, 4)


def vgg19_layer_names() -> list[str]:
    """Names of ``vgg19().features`` by index: conv1_1, relu1_1, ..., conv5_4 (34), relu5_4 (35), pool5."""
    names: list[str] = []
    for block, convs in enumerate(VGG19_CONVS_PER_BLOCK, start=1):
        for i in range(1, convs + 1):
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
        names.append(f"pool{block}")
    return names


VGG19_LAYERS = {name: index for index, name in enumerate(vgg19_layer_names())}


@dataclass(frozen=True, kw_only=True)
class PerceptualOptions(LossOptions):
    """Options of the ``perceptual`` loss."""

    layer_weights: dict[str, float] = option(
        factory=lambda: {"conv5_4": 1.0},
        doc="VGG19 layers (conv5_4 = before its ReLU, relu5_4 = after, pool5, ...) and their weights",
    )
    criterion: FeatureCriterion = option("l1", doc="distance between features: l1 or mse (alias l2)")
    use_input_norm: bool = option(True, doc="normalise the [0, 1] RGB inputs with the ImageNet mean and std")
    pretrained: bool = option(True, doc="ImageNet weights; false: random weights (tests only)")
    weights_path: Path | None = option(
        None, doc="local .pth of torchvision's vgg19 state dict; null: torchvision's download cache"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        require(bool(self.layer_weights), "layer_weights", "at least one layer", self.layer_weights)
        for name, weight in self.layer_weights.items():
            require(
                name in VGG19_LAYERS, "layer_weights", "VGG19 layer names such as conv5_4 or relu5_4", name
            )
            require(weight >= 0, f"layer_weights.{name}", "a weight >= 0", weight)


def vgg19_state_dict(weights_path: Path | None) -> dict[str, Any]:
    """The ImageNet VGG19 state dict from ``weights_path`` or torchvision's cache (download if missing)."""
    if weights_path is not None:
        if not weights_path.is_file():
            raise FileNotFoundError(f"perceptual loss: weights_path {weights_path} does not exist")
        state: dict[str, Any] = torch.load(weights_path, map_location="cpu", weights_only=True)
        return state
    weights = VGG19_Weights.IMAGENET1K_V1
    try:
        return dict(weights.get_state_dict(progress=False))
    except OSError as err:  # URLError and socket errors when offline
        target = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name
        raise FileNotFoundError(
            f"perceptual loss: cannot download the VGG19 weights ({err}); download {weights.url} "
            f"and save it as {target}, or set weights_path to a local copy"
        ) from None


def vgg19_features(last: int, pretrained: bool, weights_path: Path | None) -> nn.Sequential:
    """``torchvision.models.vgg19().features[: last + 1]``, built without the classifier."""
    with torch.device("meta"):
        layers = torchvision.models.vgg19(weights=None).features[: last + 1]
    if pretrained:
        prefix = "features."
        state = {k.removeprefix(prefix): v for k, v in vgg19_state_dict(weights_path).items()}
        wanted = set(layers.state_dict())
        layers.load_state_dict({k: v for k, v in state.items() if k in wanted}, strict=True, assign=True)
    else:
        layers.to_empty(device="cpu")
        for module in layers.modules():
            if isinstance(module, nn.Conv2d):
                module.reset_parameters()
    for module in layers.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False  # a kept pre-ReLU feature must not be overwritten
    return layers


@LOSSES.register(PerceptualOptions, name="perceptual")
class PerceptualLoss(Loss[PerceptualOptions]):
    """``sum_l w_l · criterion(VGG_l(fake), VGG_l(real))`` with a frozen VGG19; real features without grad."""

    mean: Tensor
    std: Tensor

    def __init__(self, options: PerceptualOptions) -> None:
        super().__init__(options)
        self.layers = {VGG19_LAYERS[name]: name for name in options.layer_weights}
        self.vgg = vgg19_features(max(self.layers), options.pretrained, options.weights_path)
        self.vgg.requires_grad_(False)
        self.vgg.eval()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> PerceptualLoss:
        """Switch the loss's mode but keep the VGG in eval mode."""
        super().train(mode)
        self.vgg.eval()
        return self

    def features(self, x: Tensor) -> dict[str, Tensor]:
        """The configured VGG19 features of a [0, 1] RGB batch, by layer name."""
        if self.options.use_input_norm:
            x = (x - self.mean) / self.std
        out: dict[str, Tensor] = {}
        for index, layer in enumerate(self.vgg):
            x = layer(x)
            if index in self.layers:
                out[self.layers[index]] = x
        return out

    def forward(self, ctx: GeneratorContext) -> Tensor:
        fake = self.features(ctx.fake)
        with torch.no_grad():
            real = self.features(ctx.real)
        weights = self.options.layer_weights
        terms = [weights[name] * distance(self.options.criterion, fake[name], real[name]) for name in fake]
        return torch.stack(terms).sum()
