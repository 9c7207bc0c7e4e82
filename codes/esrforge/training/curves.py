"""The run's scalar history (``history.jsonl`` beside the log) and its picture (``curves.png``).

Every logged scalar is appended to the history as ``{"step": N, "tag": value, ...}``; a resumed run
first drops the lines of steps after the state it resumes from (written by the run that was stopped),
so the file and its picture always describe the run that exists. The picture has one panel per loss
and per validation metric, for people who open neither TensorBoard nor wandb.
"""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from pathlib import Path

from ..fileio import atomic_write_text
from ..plots import Series, plot_panels

log = logging.getLogger(__name__)

PLOTTED = ("loss/", "val/")
"""Tag prefixes that get a panel (learning rates and timings stay in the history only)."""


class History:
    """Append-only JSON lines of ``{"step": N, tag: value}``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, step: int, values: dict[str, float]) -> None:
        record = {"step": step, **{k: v if math.isfinite(v) else None for k, v in values.items()}}
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def read(self) -> list[dict[str, float]]:
        """The records; a line cut short by a killed run is skipped."""
        if not self.path.is_file():
            return []
        records = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records

    def truncate(self, step: int) -> None:
        """Keep the records of steps up to ``step`` (a resumed run starts after it)."""
        kept = [r for r in self.read() if r["step"] <= step]
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))


def panels(records: list[dict[str, float]]) -> dict[str, dict[str, Series]]:
    """One panel per plotted tag (validation first), in step order, non-finite values left out."""
    out: dict[str, Series] = defaultdict(lambda: ([], []))
    for record in sorted(records, key=lambda r: r["step"]):
        for tag, value in record.items():
            if tag != "step" and tag.startswith(PLOTTED) and value is not None:
                out[tag][0].append(record["step"])
                out[tag][1].append(float(value))
    return {tag: {"": out[tag]} for tag in sorted(out, key=lambda t: (not t.startswith("val/"), t))}


def plot_history(history: History, path: Path, title: str) -> None:
    """Draw ``history`` to ``path``; a drawing problem is logged, never stops training."""
    try:
        plot_panels(panels(history.read()), path, title, "step")
    except (OSError, ValueError, RuntimeError) as err:
        log.warning("could not draw %s: %s", path, err)
