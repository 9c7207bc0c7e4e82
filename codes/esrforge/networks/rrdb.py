"""RRDBNet, the ESRGAN generator, with BasicSR / Real-ESRGAN state-dict names."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..fields import option, require
from .base import NETWORKS, Description, NetworkOptions, StateDict
from .layouts import detect_layout, rrdb_fields, to_basicsr_layout

SCALES = (1, 2, 4, 8)


@dataclass(frozen=True, kw_only=True)
class RRDBNetOptions(NetworkOptions):
    """Options of :class:`RRDBNet`; the defaults are ESRGAN's 64 features, 23 blocks, x4."""

    type: str = option("RRDBNet", doc="registered network")

    scale_key: ClassVar[str | None] = "scale"

    in_nc: int = option(3, doc="channels of the input image")
    out_nc: int = option(3, doc="channels of the output image")
    nf: int = option(64, doc="feature channels of the trunk")
    nb: int = option(23, doc="number of RRDB blocks in the trunk")
    gc: int = option(32, doc="growth channels of each dense-block convolution")
    scale: int = option(4, doc="upscaling factor: 1, 2, 4 or 8")
    pixel_unshuffle: bool = option(
        True,
        doc="scale 1/2 only: pixel-unshuffle the input and run two x2 stages (Real-ESRGAN); "
        "false: log2(scale) x2 stages at input resolution (old ESRGAN 1x/2x models)",
    )
    bicubic_skip: bool = option(
        False,
        doc="add a bicubic upscale of the input to the output, so an untrained network starts near bicubic "
        "quality (not ESRGAN's; stored in checkpoints as the 'bicubic_skip' buffer)",
    )
    init: Literal["basicsr", "dlas"] = option(
        "basicsr",
        doc="basicsr: Kaiming-normal x0.1 on the dense-block convs only, PyTorch's default elsewhere "
        "(ESRGAN's authors, BasicSR); dlas: x0.1 on every conv (DLAS; trains far slower from scratch)",
    )

    def __post_init__(self) -> None:
        for key in ("in_nc", "out_nc", "nf", "nb", "gc"):
            value = getattr(self, key)
            require(value >= 1, key, "a positive integer", value)
        require(self.scale in SCALES, "scale", "one of 1, 2, 4, 8", self.scale)
        if self.bicubic_skip:
            require(self.in_nc == self.out_nc, "bicubic_skip", f"in_nc == out_nc ({self.out_nc})", self.in_nc)

    def describe(self) -> Description:
        factor = upsample_plan(self.scale, self.pixel_unshuffle)[0]
        return Description(self.type, self.scale, self.in_nc, self.out_nc, size_multiple=factor)

    @classmethod
    def from_state_dict(cls, state_dict: StateDict) -> tuple[RRDBNetOptions, StateDict] | None:
        """Any RRDBNet layout (BasicSR / Real-ESRGAN, original ESRGAN, old ``model.N``) in BasicSR keys."""
        if detect_layout(state_dict) is None:
            return None
        converted = to_basicsr_layout(state_dict)
        return cls(type="RRDBNet", **rrdb_fields(converted)), converted

    def adapt_state_dict(self, state_dict: StateDict, strict: bool) -> StateDict:
        """Foreign layouts renamed; with ``strict``, the sizes read from the tensors must be these options'."""
        converted = to_basicsr_layout(state_dict)
        if strict:
            mismatch = _option_mismatch(self, RRDBNetOptions(type="RRDBNet", **rrdb_fields(converted)))
            if mismatch:
                raise ValueError(f"checkpoint does not match the RRDBNet options: {mismatch}")
        return converted


def _structure(options: RRDBNetOptions) -> tuple[int, ...]:
    """What the tensors of an RRDBNet with ``options`` look like (equal structure: same weights fit)."""
    factor, stages = upsample_plan(options.scale, options.pixel_unshuffle)
    return (options.nf, options.nb, options.gc, options.in_nc * factor**2, options.out_nc, stages)


def _option_mismatch(wanted: RRDBNetOptions, found: RRDBNetOptions) -> str | None:
    """None when the weights for ``found`` fit ``wanted``, else ``nb 23 in config, 6 in checkpoint; ...``."""
    if _structure(wanted) == _structure(found):
        return None
    fields = [f.name for f in dataclasses.fields(wanted) if f.name != "type"]
    return "; ".join(
        f"{name} {getattr(wanted, name)} in config, {getattr(found, name)} in checkpoint"
        for name in fields
        if getattr(wanted, name) != getattr(found, name)
    )


def upsample_plan(scale: int, pixel_unshuffle: bool = True) -> tuple[int, int]:
    """``(pixel-unshuffle factor, number of nearest x2 stages)`` of an RRDBNet with ``scale``."""
    factor = 4 // scale if pixel_unshuffle and scale < 4 else 1
    return factor, (scale * factor).bit_length() - 1


def _conv3x3(in_ch: int, out_ch: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, 1, 1)


def _lrelu(x: Tensor) -> Tensor:
    return F.leaky_relu(x, 0.2, inplace=True)


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convs; output ``conv5(...) * 0.2 + x``."""

    def __init__(self, nf: int, gc: int) -> None:
        super().__init__()
        self.conv1 = _conv3x3(nf, gc)
        self.conv2 = _conv3x3(nf + gc, gc)
        self.conv3 = _conv3x3(nf + 2 * gc, gc)
        self.conv4 = _conv3x3(nf + 3 * gc, gc)
        self.conv5 = _conv3x3(nf + 4 * gc, nf)

    def forward(self, x: Tensor) -> Tensor:
        x1 = _lrelu(self.conv1(x))
        x2 = _lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = _lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = _lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x


class RRDB(nn.Module):
    """Residual-in-residual dense block: three dense blocks, output ``out * 0.2 + x``."""

    def __init__(self, nf: int, gc: int) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(nf, gc)
        self.rdb2 = ResidualDenseBlock(nf, gc)
        self.rdb3 = ResidualDenseBlock(nf, gc)

    def forward(self, x: Tensor) -> Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


@NETWORKS.register(RRDBNetOptions)
class RRDBNet(nn.Module):
    """The ESRGAN generator; keys and behaviour match BasicSR's ``RRDBNet`` (x1/x2 via pixel-unshuffle)."""

    def __init__(self, options: RRDBNetOptions) -> None:
        super().__init__()
        self.options = options
        in_nc, out_nc, nf, nb, gc = options.in_nc, options.out_nc, options.nf, options.nb, options.gc
        if options.bicubic_skip:  # a marker that lets the checkpoint loader rebuild the same network
            self.register_buffer("bicubic_skip", torch.ones(()))
        self.unshuffle, stages = upsample_plan(options.scale, options.pixel_unshuffle)
        self.conv_first = _conv3x3(in_nc * self.unshuffle**2, nf)
        self.body = nn.Sequential(*(RRDB(nf, gc) for _ in range(nb)))
        self.conv_body = _conv3x3(nf, nf)
        self.up_names = tuple(f"conv_up{i}" for i in range(1, stages + 1))
        for name in self.up_names:
            self.add_module(name, _conv3x3(nf, nf))
        self.conv_hr = _conv3x3(nf, nf)
        self.conv_last = _conv3x3(nf, out_nc)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-normal (fan_in) x 0.1 with zero biases on the dense-block convs (``init: basicsr``)
        or on every conv (``init: dlas``); the other convs keep PyTorch's default initialisation.

        With ``bicubic_skip``, ``conv_last`` is scaled too, so the network starts near bicubic.
        """
        convs = [m for m in self.modules() if isinstance(m, nn.Conv2d)]
        for module in convs:
            module.reset_parameters()
        if self.options.init == "basicsr":
            convs = [m for m in self.body.modules() if isinstance(m, nn.Conv2d)]
            if self.options.bicubic_skip:
                convs.append(self.conv_last)
        for module in convs:
            nn.init.kaiming_normal_(module.weight, a=0, mode="fan_in")
            with torch.no_grad():
                module.weight.mul_(0.1)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        skip = (
            F.interpolate(x, scale_factor=self.options.scale, mode="bicubic", align_corners=False)
            if self.options.bicubic_skip
            else None
        )
        if self.unshuffle > 1:
            height, width = x.shape[-2:]
            if height % self.unshuffle or width % self.unshuffle:
                raise ValueError(
                    f"RRDBNet scale {self.options.scale} needs input height and width divisible by "
                    f"{self.unshuffle}, got {height}x{width}"
                )
            x = F.pixel_unshuffle(x, self.unshuffle)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        for name in self.up_names:
            feat = _lrelu(self.get_submodule(name)(F.interpolate(feat, scale_factor=2, mode="nearest")))
        out = self.conv_last(_lrelu(self.conv_hr(feat)))
        return out if skip is None else out + skip
