"""SRVGGNetCompact, Real-ESRGAN's compact network for video, with BasicSR's state-dict names."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar, Literal

from torch import Tensor, nn
from torch.nn import functional as F

from ..fields import option, require
from .base import NETWORKS, Description, NetworkOptions, StateDict

SCALES = (1, 2, 3, 4)
_BODY = re.compile(r"^body\.(\d+)\.(weight|bias)$")


@dataclass(frozen=True, kw_only=True)
class SRVGGNetCompactOptions(NetworkOptions):
    """Options of :class:`SRVGGNetCompact` (BasicSR's names); defaults: ``realesr-animevideov3``'s 64 x 16."""

    type: str = option("SRVGGNetCompact", doc="registered network")

    scale_key: ClassVar[str | None] = "upscale"

    num_in_ch: int = option(3, doc="channels of the input image")
    num_out_ch: int = option(3, doc="channels of the output image")
    num_feat: int = option(64, doc="feature channels of every convolution")
    num_conv: int = option(16, doc="3x3 convolutions in the body (realesr-general-x4v3: 32)")
    upscale: int = option(4, doc="upscaling factor: 1, 2, 3 or 4 (pixel shuffle of the last convolution)")
    act_type: Literal["prelu", "relu", "leakyrelu"] = option(
        "prelu", doc="activation after each convolution (leakyrelu: slope 0.1)"
    )

    def __post_init__(self) -> None:
        for key in ("num_in_ch", "num_out_ch", "num_feat"):
            require(getattr(self, key) >= 1, key, "a positive integer", getattr(self, key))
        require(self.num_conv >= 0, "num_conv", "0 or more convolutions", self.num_conv)
        require(self.upscale in SCALES, "upscale", "one of 1, 2, 3, 4", self.upscale)
        require(
            self.num_in_ch == self.num_out_ch,
            "num_out_ch",
            f"num_in_ch ({self.num_in_ch}): the nearest-upsampled input is added to the output",
            self.num_out_ch,
        )

    def describe(self) -> Description:
        return Description(self.type, self.upscale, self.num_in_ch, self.num_out_ch)

    @classmethod
    def from_state_dict(cls, state_dict: StateDict) -> tuple[SRVGGNetCompactOptions, StateDict] | None:
        """BasicSR / Real-ESRGAN's ``body.N`` keys with PReLU weights (``realesr-*v3``, ``realesr-animevideov3``)."""
        indices = sorted({int(m.group(1)) for k in state_dict if (m := _BODY.match(k))})
        if len(indices) < 3 or set(state_dict) != {f"body.{i}.{p}" for i in indices for p in _params(i)}:
            return None
        first, prelu = state_dict["body.0.weight"], state_dict["body.1.weight"]
        if first.dim() != 4 or prelu.dim() != 1 or indices != list(range(indices[-1] + 1)):
            return None
        channels, last = first.shape[1], state_dict[f"body.{indices[-1]}.weight"].shape[0]
        upscale = round((last / channels) ** 0.5)
        if upscale * upscale * channels != last or upscale not in SCALES:
            return None
        options = cls(
            type="SRVGGNetCompact",
            num_in_ch=channels,
            num_out_ch=channels,
            num_feat=first.shape[0],
            num_conv=(indices[-1] - 2) // 2,
            upscale=upscale,
        )
        return options, state_dict


def _params(index: int) -> tuple[str, ...]:
    """The tensors body.<index> has: a conv's weight and bias (even indices), a PReLU's weight (odd)."""
    return ("weight", "bias") if index % 2 == 0 else ("weight",)


def _activation(kind: str, channels: int) -> nn.Module:
    if kind == "prelu":
        return nn.PReLU(num_parameters=channels)
    if kind == "relu":
        return nn.ReLU(inplace=True)
    return nn.LeakyReLU(negative_slope=0.1, inplace=True)


@NETWORKS.register(SRVGGNetCompactOptions)
class SRVGGNetCompact(nn.Module):
    """Convolutions at input resolution, a pixel shuffle, plus the nearest-upsampled input.

    ``body`` holds conv, activation, (conv, activation) x ``num_conv``, conv, so checkpoints of
    BasicSR's class (Real-ESRGAN's ``realesr-general-x4v3``, ``realesr-animevideov3``) load strictly.
    """

    def __init__(self, options: SRVGGNetCompactOptions) -> None:
        super().__init__()
        self.options = options
        feat, scale = options.num_feat, options.upscale
        layers: list[nn.Module] = [
            nn.Conv2d(options.num_in_ch, feat, 3, 1, 1),
            _activation(options.act_type, feat),
        ]
        for _ in range(options.num_conv):
            layers += [nn.Conv2d(feat, feat, 3, 1, 1), _activation(options.act_type, feat)]
        layers.append(nn.Conv2d(feat, options.num_out_ch * scale * scale, 3, 1, 1))
        self.body = nn.ModuleList(layers)
        self.upsampler = nn.PixelShuffle(scale)

    def forward(self, x: Tensor) -> Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        out = self.upsampler(out)
        return out + F.interpolate(x, scale_factor=self.options.upscale, mode="nearest")
