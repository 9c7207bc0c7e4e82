"""The network contract: the registry, the options every network shares, and the description it gives.

A network is one module that registers a constructor taking its options dataclass (the only place its
fields and defaults are declared)::

    @NETWORKS.register(MyNetOptions)
    class MyNet(nn.Module):
        def __init__(self, options: MyNetOptions) -> None: ...

and its options say what generic code needs to know (:meth:`NetworkOptions.describe`): training,
validation, test.py and process_video.py read that description, never the class.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from ..fields import option
from ..registry import Registry

NETWORKS: Registry[nn.Module] = Registry("network")
StateDict = dict[str, Tensor]
Tiling = Literal["supported", "discouraged", "internal"]
ALL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class Description:
    """What a network is, as far as the code that runs it needs to know."""

    architecture: str
    scale: int
    in_channels: int
    out_channels: int
    size_multiple: int = 1
    """Input heights and widths must be multiples of this (inference pads to it)."""
    min_size: int = 0
    """Smallest input height and width the network accepts."""
    dtypes: tuple[torch.dtype, ...] = ALL_DTYPES
    """Compute precisions it runs correctly in (float32 always)."""
    tiling: Tiling = "supported"
    """supported: output depends on a bounded neighbourhood; discouraged: it tiles with visible loss
    (global context); internal: it tiles by itself, give it whole images."""

    def supports(self, dtype: torch.dtype) -> bool:
        return dtype in self.dtypes

    def line(self) -> str:
        """``RRDBNet x4, 3 -> 3 channels, input multiple of 1, fp32/fp16/bf16, tiling supported``."""
        names = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
        dtypes = "/".join(names.get(d, str(d)) for d in self.dtypes)
        return (
            f"{self.architecture} x{self.scale}, {self.in_channels} -> {self.out_channels} channels, input "
            f"multiple of {self.size_multiple}, {dtypes}, tiling {self.tiling}"
        )


@dataclass(frozen=True, kw_only=True)
class NetworkOptions(ABC):
    """Base of every network's options: ``type`` names the registered network."""

    registry: ClassVar[Registry[nn.Module]] = NETWORKS
    scale_key: ClassVar[str | None] = None
    """The field that holds the upscaling factor; it defaults to the config's top-level ``scale``."""

    type: str = option(doc="registered network, e.g. RRDBNet, SRVGGNetCompact, spandrel")

    @abstractmethod
    def describe(self) -> Description:
        """The description of the network these options build."""

    @classmethod
    def from_state_dict(cls, state_dict: StateDict) -> tuple[NetworkOptions, StateDict] | None:
        """Options that fit ``state_dict`` and the state dict in this network's key names, or None
        when the tensors are not this architecture's (networks that cannot tell keep the default)."""
        return None

    def adapt_state_dict(self, state_dict: StateDict, strict: bool) -> StateDict:
        """``state_dict`` in this network's key names, ready to load (default: as it is)."""
        return state_dict


Builder = Callable[[NetworkOptions], nn.Module]


def build_network(options: NetworkOptions) -> nn.Module:
    """The registered network of ``options.type``, built from its options."""
    build: Builder = NETWORKS.get(options.type).cls
    return build(options)


@dataclass(frozen=True)
class LoadedNetwork:
    """A network with weights, the options that build it again, and its description."""

    module: nn.Module
    options: NetworkOptions
    description: Description
