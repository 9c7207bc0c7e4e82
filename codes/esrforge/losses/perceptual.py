"""Perceptual loss: a distance between VGG19 features of the generator output and of the HR target."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from ..fields import option, require
from ..pretrained import imagenet_features
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


class VggFeatures(nn.Sequential):
    """VGG ``features`` layers whose forward returns the outputs of the chosen ones, by name: one module
    call per image batch, so that ``train.compile`` compiles the whole stack."""

    def __init__(self, layers: nn.Sequential, chosen: dict[int, str]) -> None:
        super().__init__(*layers)
        self.chosen = chosen

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        for index, layer in enumerate(self):
            x = layer(x)
            if index in self.chosen:
                out[self.chosen[index]] = x
        return out


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


@LOSSES.register(PerceptualOptions, name="perceptual")
class PerceptualLoss(Loss[PerceptualOptions]):
    """``sum_l w_l · criterion(VGG_l(fake), VGG_l(real))`` with a frozen VGG19; real features without grad."""

    mean: Tensor
    std: Tensor

    def __init__(self, options: PerceptualOptions) -> None:
        super().__init__(options)
        chosen = {VGG19_LAYERS[name]: name for name in options.layer_weights}
        self.vgg = VggFeatures(
            imagenet_features(
                "vgg19", options.pretrained, options.weights_path, "perceptual loss", last=max(chosen)
            ),
            chosen,
        )
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
        features: dict[str, Tensor] = self.vgg(x)
        return features

    def forward(self, ctx: GeneratorContext) -> Tensor:
        fake = self.features(ctx.fake)
        with torch.no_grad():
            real = self.features(ctx.real)
        weights = self.options.layer_weights
        terms = [weights[name] * distance(self.options.criterion, fake[name], real[name]) for name in fake]
        return torch.stack(terms).sum()
