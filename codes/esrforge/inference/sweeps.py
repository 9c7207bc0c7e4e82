"""Score a series of generator weights (interpolation alphas, a run's checkpoints) on validation sets:
a table (CSV), a plot of every metric, the best candidate of each, and the outputs for crop grids."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..data.base import ValDatasetOptions
from ..fileio import atomic_write_text
from ..metrics.base import Metric
from ..networks.base import Description
from ..plots import Series, plot_panels
from .compare import column, row
from .scoring import means, score_set

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Candidate:
    """One set of weights to score: its position on the plot's x axis, the line it belongs to, and what puts
    its weights into the network (ValueError or OSError naming the file when they do not fit or read)."""

    x: float
    series: str
    load: Callable[[nn.Module], object]

    @property
    def label(self) -> str:
        x = f"{self.x:g}"
        return f"{self.series} {x}" if self.series else x


@dataclass(frozen=True)
class Row:
    candidate: Candidate
    scores: dict[str, dict[str, float]]
    """``{set: {metric: mean}}``."""


Sets = Sequence[tuple[ValDatasetOptions, DataLoader[Any]]]
OnOutput = Callable[[Candidate, int, dict[str, Any], Tensor], None]


def score_candidates(
    module: nn.Module,
    description: Description,
    candidates: Sequence[Candidate],
    sets: Sets,
    metrics: Sequence[Metric[Any]],
    what: str,
    on_output: OnOutput | None = None,
    tile: Literal["auto"] | int | None = None,
) -> list[Row]:
    """Load each candidate into ``module`` and score it on every set (``on_output`` sees the first set's outputs).

    ``tile``: None uses each set's ``tile_size``, 0 whole images. A candidate that does not load is skipped
    with a warning; ValueError when none does.
    """
    rows = []
    for candidate in tqdm(candidates, desc=what, unit=what.rstrip("s"), disable=None):
        try:
            candidate.load(module)
        except (ValueError, OSError) as error:
            log.warning("skipped %s: %s", candidate.label, " ".join(str(error).split()))
            continue
        scores = {}
        for index, (options, loader) in enumerate(sets):
            hook = None
            if on_output is not None and index == 0:
                hook = lambda i, sample, sr, c=candidate: on_output(c, i, sample, sr)  # noqa: E731
            set_tile = options.tile_size if tile is None else tile or None
            sums = score_set(module, loader, metrics, description, set_tile, options.label, True, hook)
            scores[options.label] = means(sums, metrics)
        rows.append(Row(candidate, scores))
        log.info("%s: %s", candidate.label, line(scores))
    if not rows:
        raise ValueError(f"none of the {len(candidates)} {what} could be loaded (see the warnings above)")
    return rows


def line(scores: dict[str, dict[str, float]]) -> str:
    return "; ".join(f"{s}: " + ", ".join(f"{m} {v:.4f}" for m, v in ms.items()) for s, ms in scores.items())


def table(rows: Sequence[Row], x_name: str) -> str:
    """The CSV text: series, x, then one column per set and metric."""
    out = io.StringIO()
    columns = [f"{s}/{m}" for s, ms in rows[0].scores.items() for m in ms]
    writer = csv.writer(out)
    writer.writerow(["series", x_name, *columns])
    for r in rows:
        values = [f"{v:.6f}" for ms in r.scores.values() for v in ms.values()]
        writer.writerow([r.candidate.series, f"{r.candidate.x:g}", *values])
    return out.getvalue()


def best(rows: Sequence[Row], metrics: Sequence[Metric[Any]]) -> dict[str, Row]:
    """The best row of each metric on the first set."""
    first = next(iter(rows[0].scores))
    chosen: dict[str, Row] = {}
    for metric in metrics:
        for r in rows:
            current = chosen.get(metric.name)
            if current is None or metric.better(
                r.scores[first][metric.name], current.scores[first][metric.name]
            ):
                chosen[metric.name] = r
    return chosen


def write_results(
    rows: Sequence[Row], metrics: Sequence[Metric[Any]], folder: Path, stem: str, x_name: str
) -> None:
    """``<stem>.csv`` and ``<stem>.png`` (one panel per set and metric) in ``folder``; logs the best of each."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / f"{stem}.csv", table(rows, x_name))
    panels: dict[str, dict[str, Series]] = {}
    for r in rows:
        for set_name, scores in r.scores.items():
            for metric, value in scores.items():
                xs, ys = panels.setdefault(f"{set_name}: {metric}", {}).setdefault(
                    r.candidate.series, ([], [])
                )
                xs.append(r.candidate.x)
                ys.append(value)
    plot_panels(panels, folder / f"{stem}.png", stem, x_name)
    first = next(iter(rows[0].scores))
    for name, r in best(rows, metrics).items():
        series = f" ({r.candidate.series})" if r.candidate.series else ""
        log.info(
            "best %s on %s: %.4f at %s %g%s",
            name,
            first,
            r.scores[first][name],
            x_name,
            r.candidate.x,
            series,
        )
    log.info("wrote %s and %s", folder / f"{stem}.csv", folder / f"{stem}.png")


def labelled(image: np.ndarray, text: str) -> np.ndarray:
    """``image`` (uint8 RGB) under a white strip with ``text``."""
    header = np.full((20, image.shape[1], 3), 255, np.uint8)
    cv2.putText(header, text, (3, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1)
    return np.concatenate([header, image], axis=0)


def crop_grid(crops: dict[str, list[np.ndarray]]) -> np.ndarray:
    """One row per image, one labelled column per key (``{label: [crop of image 0, 1, ...]}``)."""
    labels = list(crops)
    rows = [row([crops[label][i] for label in labels]) for i in range(len(crops[labels[0]]))]
    header = row(
        [labelled(np.full((0, crops[label][0].shape[1], 3), 255, np.uint8), label) for label in labels]
    )
    return column([header, *rows])
