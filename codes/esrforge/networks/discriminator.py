"""VGG-style discriminators of the ESRGAN recipe: one raw logit per image."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn
from torch.nn import functional as F

from ..fields import option, require
from .base import NETWORKS, Description, NetworkOptions

GROUPS = 8


@dataclass(frozen=True, kw_only=True)
class VGGDiscriminatorOptions(NetworkOptions):
    """Options of the VGG-style discriminators; inputs must be exactly ``image_size`` square."""

    type: str = option("VGGDiscriminatorBN", doc="registered network")

    in_nc: int = option(3, doc="channels of the input image")
    nf: int = option(64, doc="channels of the first stage (stages use nf, 2nf, 4nf, 8nf, 8nf)")
    image_size: int = option(128, doc="height and width of the input patches, a multiple of 32")

    def __post_init__(self) -> None:
        require(self.in_nc >= 1, "in_nc", "a positive integer", self.in_nc)
        require(self.nf >= 1, "nf", "a positive integer", self.nf)
        require(
            self.image_size >= 32 and self.image_size % 32 == 0,
            "image_size",
            "a positive multiple of 32",
            self.image_size,
        )

    def describe(self) -> Description:
        """One logit per ``image_size`` square input."""
        size = self.image_size
        return Description(self.type, 1, self.in_nc, 1, size_multiple=32, min_size=size, tiling="discouraged")


@dataclass(frozen=True, kw_only=True)
class VGGDiscriminatorGNOptions(VGGDiscriminatorOptions):
    """Options of :class:`VGGDiscriminatorGN`; ``nf`` must split into 8 GroupNorm groups."""

    type: str = option("VGGDiscriminatorGN", doc="registered network")

    def __post_init__(self) -> None:
        super().__post_init__()
        require(
            self.nf % GROUPS == 0, "nf", f"a multiple of {GROUPS} (GroupNorm uses {GROUPS} groups)", self.nf
        )


def _lrelu(x: Tensor) -> Tensor:
    return F.leaky_relu(x, 0.2, inplace=True)


class VGGDiscriminator(nn.Module):
    """Five stages of (3x3 stride-1 conv, 4x4 stride-2 conv), then Linear(., 100), Linear(100, 1).

    ``conv0_0`` has a bias and no norm; every other conv is bias-free and followed by ``norm`` under
    the name ``bn<stage>_<index>``.
    """

    def __init__(self, options: VGGDiscriminatorOptions, norm: Callable[[int], nn.Module]) -> None:
        super().__init__()
        self.options = options
        in_nc, nf, image_size = options.in_nc, options.nf, options.image_size
        layers: list[tuple[str, str | None]] = []
        channels = in_nc
        for stage, width in enumerate((nf, 2 * nf, 4 * nf, 8 * nf, 8 * nf)):
            for index, (kernel, stride) in enumerate(((3, 1), (4, 2))):
                first = stage == 0 and index == 0
                conv_name, norm_name = f"conv{stage}_{index}", f"bn{stage}_{index}"
                self.add_module(conv_name, nn.Conv2d(channels, width, kernel, stride, 1, bias=first))
                if not first:
                    self.add_module(norm_name, norm(width))
                layers.append((conv_name, None if first else norm_name))
                channels = width
        self.layers = tuple(layers)
        self.linear1 = nn.Linear(8 * nf * (image_size // 32) ** 2, 100)
        self.linear2 = nn.Linear(100, 1)

    def forward(self, x: Tensor) -> Tensor:
        in_nc, size = self.options.in_nc, self.options.image_size
        if tuple(x.shape[1:]) != (in_nc, size, size):
            got = "x".join(str(d) for d in x.shape[1:])
            raise ValueError(
                f"discriminator expects {in_nc}x{size}x{size} input (image_size: {size}), got {got}"
            )
        for conv_name, norm_name in self.layers:
            x = self.get_submodule(conv_name)(x)
            if norm_name is not None:
                x = self.get_submodule(norm_name)(x)
            x = _lrelu(x)
        return self.linear2(_lrelu(self.linear1(x.flatten(1))))


@NETWORKS.register(VGGDiscriminatorGNOptions)
class VGGDiscriminatorGN(VGGDiscriminator):
    """The recipe's discriminator (DLAS ``discriminator_vgg_128_gn``): GroupNorm(8), per-sample."""

    def __init__(self, options: VGGDiscriminatorGNOptions) -> None:
        super().__init__(options, lambda width: nn.GroupNorm(GROUPS, width))


@NETWORKS.register(VGGDiscriminatorOptions)
class VGGDiscriminatorBN(VGGDiscriminator):
    """The reference ESRGAN discriminator (``Discriminator_VGG_128``) with BatchNorm2d."""

    def __init__(self, options: VGGDiscriminatorOptions) -> None:
        super().__init__(options, nn.BatchNorm2d)
