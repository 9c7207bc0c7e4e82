"""The step phases a list of windowed losses makes: which losses are active between which steps."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from ..losses.base import LossOptions


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
