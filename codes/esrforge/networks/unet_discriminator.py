"""Real-ESRGAN's U-Net discriminator with spectral norm: one raw logit per pixel."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.utils import spectral_norm

from ..fields import option, require
from .base import NETWORKS, Description, NetworkOptions


@dataclass(frozen=True, kw_only=True)
class UNetDiscriminatorSNOptions(NetworkOptions):
    """Options of :class:`UNetDiscriminatorSN`; inputs need a height and width divisible by 8."""

    type: str = option("UNetDiscriminatorSN", doc="registered network")

    num_in_ch: int = option(3, doc="channels of the input image")
    num_feat: int = option(64, doc="channels of the first stage (the encoder uses 1x, 2x, 4x, 8x)")
    skip_connection: bool = option(True, doc="add the encoder features to the decoder's (U-Net skips)")

    def __post_init__(self) -> None:
        require(self.num_in_ch >= 1, "num_in_ch", "a positive integer", self.num_in_ch)
        require(self.num_feat >= 1, "num_feat", "a positive integer", self.num_feat)

    def describe(self) -> Description:
        """One logit per input pixel."""
        return Description(self.type, 1, self.num_in_ch, 1, size_multiple=8, min_size=8, tiling="discouraged")


def _lrelu(x: Tensor) -> Tensor:
    return F.leaky_relu(x, 0.2, inplace=True)


def _up(x: Tensor) -> Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def _sn_conv(in_ch: int, out_ch: int, kernel: int, stride: int) -> nn.Module:
    return spectral_norm(nn.Conv2d(in_ch, out_ch, kernel, stride, 1, bias=False))


@NETWORKS.register(UNetDiscriminatorSNOptions)
class UNetDiscriminatorSN(nn.Module):
    """BasicSR's ``UNetDiscriminatorSN`` (same keys, so Real-ESRGAN's netD weights load strictly)."""

    def __init__(self, options: UNetDiscriminatorSNOptions) -> None:
        super().__init__()
        self.options = options
        f = options.num_feat
        self.conv0 = nn.Conv2d(options.num_in_ch, f, 3, 1, 1)
        self.conv1 = _sn_conv(f, 2 * f, 4, 2)
        self.conv2 = _sn_conv(2 * f, 4 * f, 4, 2)
        self.conv3 = _sn_conv(4 * f, 8 * f, 4, 2)
        self.conv4 = _sn_conv(8 * f, 4 * f, 3, 1)
        self.conv5 = _sn_conv(4 * f, 2 * f, 3, 1)
        self.conv6 = _sn_conv(2 * f, f, 3, 1)
        self.conv7 = _sn_conv(f, f, 3, 1)
        self.conv8 = _sn_conv(f, f, 3, 1)
        self.conv9 = nn.Conv2d(f, 1, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        in_ch = self.options.num_in_ch
        if x.dim() != 4 or x.shape[1] != in_ch or x.shape[2] % 8 or x.shape[3] % 8 or min(x.shape[2:]) < 8:
            got = "x".join(str(d) for d in x.shape[1:])
            raise ValueError(
                f"UNetDiscriminatorSN expects {in_ch}xHxW input with H and W multiples of 8, got {got}"
            )
        x0 = _lrelu(self.conv0(x))
        x1 = _lrelu(self.conv1(x0))
        x2 = _lrelu(self.conv2(x1))
        x3 = _lrelu(self.conv3(x2))
        skips = (x2, x1, x0) if self.options.skip_connection else (None, None, None)
        feat = x3
        for conv, skip in zip((self.conv4, self.conv5, self.conv6), skips, strict=True):
            feat = _lrelu(conv(_up(feat)))
            if skip is not None:
                feat = feat + skip
        feat = _lrelu(self.conv8(_lrelu(self.conv7(feat))))
        return self.conv9(feat)
