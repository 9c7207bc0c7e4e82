"""Line plots written as PNG (matplotlib, no display): training curves and sweep results."""

from __future__ import annotations

import math
from pathlib import Path

from .fileio import atomic_write_with

Series = tuple[list[float], list[float]]
"""``(xs, ys)`` of one line."""
COLUMNS = 4
DPI = 90
PANEL_INCHES = (3.6, 2.7)
"""Width and height of one panel's share of the figure."""
MARGIN_INCHES = {"left": 0.55, "right": 0.15, "top": 0.5, "bottom": 0.45, "between_x": 0.6, "between_y": 0.75}
"""Room for tick labels, axis labels and titles; fixed, because tight_layout would double the drawing time."""
TITLE_INCHES = 0.12
"""The figure's title, from the top edge."""


def figure_inches(rows: int, columns: int) -> tuple[float, float]:
    """Width and height of a figure of ``rows`` x ``columns`` panels."""
    return PANEL_INCHES[0] * columns, PANEL_INCHES[1] * rows


def grid_layout(rows: int, columns: int) -> dict[str, float]:
    """``subplots_adjust`` arguments that keep MARGIN_INCHES around and between the panels."""
    width, height = figure_inches(rows, columns)
    m = MARGIN_INCHES
    axes_width = (width - m["left"] - m["right"] - (columns - 1) * m["between_x"]) / columns
    axes_height = (height - m["top"] - m["bottom"] - (rows - 1) * m["between_y"]) / rows
    return {
        "left": m["left"] / width,
        "right": 1 - m["right"] / width,
        "top": 1 - m["top"] / height,
        "bottom": m["bottom"] / height,
        "wspace": m["between_x"] / axes_width,
        "hspace": m["between_y"] / axes_height,
    }


def plot_panels(panels: dict[str, dict[str, Series]], path: Path, title: str, x_label: str) -> None:
    """One small plot per panel, one line per series (a legend when there are several), to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    if not panels:
        return
    rows, columns = math.ceil(len(panels) / COLUMNS), min(COLUMNS, len(panels))
    width, height = figure_inches(rows, columns)
    figure, axes = plt.subplots(
        rows, columns, figsize=(width, height), squeeze=False, gridspec_kw=grid_layout(rows, columns)
    )
    for ax, (name, lines) in zip(axes.flat, panels.items(), strict=False):
        for label, (xs, ys) in lines.items():
            ax.plot(xs, ys, marker="." if len(xs) < 30 else None, linewidth=1, label=label or None)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(x_label, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if len(lines) > 1:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    figure.suptitle(title, fontsize=10, y=1 - TITLE_INCHES / height, verticalalignment="top")
    atomic_write_with(path, lambda handle: figure.savefig(handle, format="png", dpi=DPI))
    plt.close(figure)
