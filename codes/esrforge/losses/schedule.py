"""The step phases a list of windowed losses makes: which losses are active between which steps."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from .base import LossOptions


@dataclass(frozen=True)
class Phase:
    """Steps ``start`` to ``end`` (exclusive) with the same set of active losses."""

    start: int
    end: int
    active: tuple[int, ...]


def phases(losses: list[LossOptions], niter: int) -> list[Phase]:
    """Split ``[0, niter)`` at every ``after``/``before`` boundary; adjacent equal phases merge."""
    cuts = {0, niter}
    for loss in losses:
        cuts.update(s for s in (loss.after, loss.before) if s is not None and 0 < s < niter)
    bounds = sorted(cuts)
    result: list[Phase] = []
    for start, end in itertools.pairwise(bounds):
        active = tuple(i for i, loss in enumerate(losses) if loss.active(start))
        if result and result[-1].active == active:
            result[-1] = Phase(result[-1].start, end, active)
        else:
            result.append(Phase(start, end, active))
    return result


def describe_schedule(losses: list[LossOptions], niter: int) -> list[str]:
    """Log lines: each loss with its weight and step window, then each phase with its active losses."""
    lines = []
    for i, loss in enumerate(losses):
        window = f"steps {loss.after}-{loss.before - 1}" if loss.before else f"from step {loss.after}"
        lines.append(f"loss {i}: {loss.type}, weight {loss.weight:g}, {window}")
    for phase in phases(losses, niter):
        names = ", ".join(losses[i].type for i in phase.active) or "none"
        lines.append(f"steps {phase.start}-{phase.end - 1}: {names}")
    return lines
