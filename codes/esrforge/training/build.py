"""Build the networks a config describes, with the weights it starts them from."""

from __future__ import annotations

import logging
from pathlib import Path

from torch import nn

from ..networks import NetworkOptions, build_network, load_into
from ..options.schema import Config

log = logging.getLogger(__name__)


def build_generator(config: Config) -> nn.Module:
    """The generator described by ``networks.generator``, with ``path.pretrain_model_generator``'s weights."""
    paths = config.path
    return _built(config, config.networks.generator, paths.pretrain_model_generator, paths.param_key)


def build_discriminator(config: Config) -> nn.Module | None:
    """The discriminator described by ``networks.discriminator`` (with ``path.pretrain_model_discriminator``'s
    weights), or None."""
    options = config.networks.discriminator
    if options is None:
        return None
    return _built(config, options, config.path.pretrain_model_discriminator)


def _built(
    config: Config, options: NetworkOptions, weights: Path | None, key: str | None = None
) -> nn.Module:
    net = build_network(options)
    if weights is not None:
        load_into(net, options, weights, strict=config.path.strict_load, key=key)
        log.info("loaded %s weights from %s", options.type, weights)
    return net


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
