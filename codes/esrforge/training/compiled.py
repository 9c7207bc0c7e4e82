"""``train.compile``: the networks a training step runs, through torch.compile where it pays.

The modules themselves stay uncompiled (their state dicts, the EMA copy and validation at any image
size are unaffected); the step calls the compiled wrappers, which share their parameters.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..losses.base import Loss

log = logging.getLogger("esrforge")


@dataclass
class Forwards:
    """The callables a training step runs the generator and the discriminator through."""

    generator: Callable[[Tensor], Tensor]
    discriminator: Callable[[Tensor], Tensor] | None = None


def compile_wanted(setting: bool | None, device: torch.device) -> bool:
    """``train.compile``: on or off as set; unset, on for CUDA only (on the CPU it measured slower)."""
    return device.type == "cuda" if setting is None else setting


def training_forwards(
    generator: nn.Module,
    discriminator: nn.Module | None,
    losses: list[Loss],
    enabled: bool,
) -> Forwards:
    """The step's forwards: compiled when ``enabled``, with each loss's networks compiled in place.

    A discriminator whose gradient penalty needs a double backward stays eager: compiled graphs do not
    support differentiating their gradients.
    """
    if not enabled:
        return Forwards(generator, discriminator)
    for loss in losses:
        for child in loss.children():
            if any(True for _ in child.parameters()):
                child.compile()
    double_backward = [loss.options.type for loss in losses if loss.double_backward]
    compiled_d: Callable[[Tensor], Tensor] | None = None
    if discriminator is not None:
        compiled_d = discriminator if double_backward else torch.compile(discriminator)
    log.info(
        "torch.compile: the generator%s and the losses' networks; the first step compiles them",
        (
            f", not the discriminator ({', '.join(double_backward)} differentiates its gradients)"
            if discriminator is not None and double_backward
            else ", the discriminator"
            if discriminator is not None
            else ""
        ),
    )
    return Forwards(torch.compile(generator), compiled_d)
