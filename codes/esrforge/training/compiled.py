"""``train.compile``: the networks a training step runs, through torch.compile where it pays.

The modules themselves stay uncompiled (their state dicts, the EMA copy and validation at any image
size are unaffected); the step calls the compiled wrappers, which share their parameters. With
``train.cuda_graphs`` the wrappers replay CUDA graphs (torch.compile's reduce-overhead mode): the
outputs of one step's graphs are overwritten by the next step's, so the step marks its start
(:meth:`Forwards.new_step`) and nothing it returns may hold a graph's output. Gradients may live in the
graphs' memory too: each network's step starts with ``zero_grad(set_to_none=True)``, and nothing reads a
``.grad`` after its own step.
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
    graphs: bool = False
    """The compiled callables replay CUDA graphs."""

    def new_step(self) -> None:
        """Mark the start of a training step: the graphs' outputs of the previous one may be reused."""
        if self.graphs:
            torch.compiler.cudagraph_mark_step_begin()

    def memory_hint(self) -> str:
        """The out-of-memory advice's part for CUDA graphs, whose memory pool stays reserved."""
        return (
            ", or set train.cuda_graphs: false (the graphs keep their own memory pool)" if self.graphs else ""
        )


def compile_wanted(setting: bool | None, device: torch.device) -> bool:
    """``train.compile``: on or off as set; unset, on for CUDA only (on the CPU it measured slower)."""
    return device.type == "cuda" if setting is None else setting


def graphs_wanted(setting: bool, device: torch.device) -> bool:
    """``train.cuda_graphs``: on where set and the run is on CUDA (the schema makes it compile there)."""
    wanted = setting and device.type == "cuda"
    if setting and not wanted:
        log.warning("train.cuda_graphs: CUDA graphs are for CUDA; this run on %s goes without them", device)
    return wanted


def describe_compile(compiled: bool, graphs: bool) -> str:
    """How the training step runs its networks, for the log."""
    return "torch.compile " + ("on, with CUDA graphs" if graphs else "on" if compiled else "off")


def slow_steps(phase_starts: set[int], graphs: bool) -> dict[int, str]:
    """The steps of a compiled run whose time is worth a log line, with what makes them slow: the first
    step of each loss phase compiles; with CUDA graphs, the next one records them."""
    slow = {step: "compiling" for step in phase_starts}
    if graphs:
        slow.update({step + 1: "recording the CUDA graphs" for step in phase_starts if step + 1 not in slow})
    return slow


def training_forwards(
    generator: nn.Module,
    discriminator: nn.Module | None,
    losses: list[Loss],
    enabled: bool,
    graphs: bool,
) -> Forwards:
    """The step's forwards: compiled when ``enabled``, with each loss's networks compiled in place; with
    ``graphs``, replaying CUDA graphs.

    A discriminator whose gradient penalty needs a double backward stays eager: compiled graphs do not
    support differentiating their gradients.
    """
    if not enabled:
        return Forwards(generator, discriminator)
    mode = "reduce-overhead" if graphs else None
    for loss in losses:
        for child in loss.children():
            if any(True for _ in child.parameters()):
                child.compile(mode=mode)
    double_backward = [loss.options.type for loss in losses if loss.double_backward]
    compiled_d: Callable[[Tensor], Tensor] | None = None
    if discriminator is not None:
        compiled_d = discriminator if double_backward else torch.compile(discriminator, mode=mode)
    log.info(
        "torch.compile%s: the generator%s and the losses' networks; the first step compiles them",
        " with CUDA graphs" if graphs else "",
        (
            f", not the discriminator ({', '.join(double_backward)} differentiates its gradients)"
            if discriminator is not None and double_backward
            else ", the discriminator"
            if discriminator is not None
            else ""
        ),
    )
    return Forwards(torch.compile(generator, mode=mode), compiled_d, graphs)
