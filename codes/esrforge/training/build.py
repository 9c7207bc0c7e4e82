"""Build the networks a config describes."""

from __future__ import annotations

from torch import nn

from ..networks import build_network
from ..options.schema import Config


def build_generator(config: Config) -> nn.Module:
    """The generator described by ``networks.generator``."""
    return build_network(config.networks.generator)


def build_discriminator(config: Config) -> nn.Module | None:
    """The discriminator described by ``networks.discriminator``, or None."""
    options = config.networks.discriminator
    return None if options is None else build_network(options)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
