"""Line plots written as PNG (matplotlib, no display): training curves and sweep results."""

from __future__ import annotations

import math
from pathlib import Path

from .fileio import atomic_write_with

Series = tuple[list[float], list[float]]
"""``(xs, ys)`` of one line."""
COLUMNS = 4


def plot_panels(panels: dict[str, dict[str, Series]], path: Path, title: str, x_label: str) -> None:
    """One small plot per panel, one line per series (a legend when there are several), to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    if not panels:
        return
    rows, columns = math.ceil(len(panels) / COLUMNS), min(COLUMNS, len(panels))
    figure, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 2.7 * rows), squeeze=False)
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
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    atomic_write_with(path, lambda handle: figure.savefig(handle, format="png", dpi=90))
    plt.close(figure)
