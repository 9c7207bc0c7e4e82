"""The network registry and the options every registered network shares."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from ..options.fields import option
from ..registry import Registry

NETWORKS: Registry[nn.Module] = Registry("network")


@dataclass(frozen=True, kw_only=True)
class NetworkOptions:
    """Base of every network's options: ``type`` names the registered class."""

    registry: ClassVar[Registry[nn.Module]] = NETWORKS

    type: str = option(doc="registered network class, e.g. RRDBNet")


def build_network(options: NetworkOptions) -> nn.Module:
    """Instantiate the registered class with the options' fields (all but ``type``) as keywords."""
    entry = NETWORKS.get(options.type)
    kwargs = {f.name: getattr(options, f.name) for f in dataclasses.fields(options) if f.name != "type"}
    return entry.cls(**kwargs)
