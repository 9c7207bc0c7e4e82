"""The non-finite step guard, read off the device only when the loop logs or saves.

Each optimiser step decides on the device whether to skip (see ``steps.IterationRunner``), so the
hot loop never waits for the device. The flags of the steps since the last check are kept here and
read in one go at ``logger.print_freq``, before a checkpoint and at the end.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor

log = logging.getLogger("esrforge")


class TrainingStopped(Exception):
    """Training cannot go on (e.g. the loss stayed non-finite); the last good checkpoint is intact."""


class SkipGuard:
    """Counts steps skipped for a non-finite loss or gradient; stops after ``limit`` in a row."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_a_row = 0
        self._pending: list[tuple[int, tuple[str, ...], Tensor]] = []

    def record(self, step: int, skipped: dict[str, Tensor]) -> None:
        """Keep step ``step``'s device flags (one per network: True where its optimiser step was skipped)."""
        if skipped:
            self._pending.append((step, tuple(skipped), torch.stack(list(skipped.values()))))

    def check(self) -> None:
        """Read the pending flags: warn for each skipped step, raise TrainingStopped after ``limit`` in a row."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        flags = iter(torch.cat([f for _, _, f in pending]).tolist())  # the one read of the device
        for step, names, _ in pending:
            skipped = [name for name in names if next(flags)]
            if not skipped:
                self.in_a_row = 0
                continue
            self.in_a_row += 1
            log.warning("step %d: non-finite %s loss or gradient, step skipped", step, " and ".join(skipped))
            if self.in_a_row >= self.limit:
                raise TrainingStopped(
                    f"the loss or its gradients were non-finite in {self.in_a_row} steps in a row (up to step "
                    f"{step}); training stopped, the last saved checkpoint is intact. Lower the learning rate "
                    "or check the data"
                )
