"""The training reporter's history and the picture of its curves."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from esrforge.data.imageio import read_image
from esrforge.plots import DPI, PANEL_INCHES, grid_layout, plot_panels
from esrforge.training import reporting
from esrforge.training.reporting import Reporter


def test_curves_are_redrawn_only_when_scalars_were_recorded_since(tmp_path: Path, monkeypatch) -> None:
    drawn: list[int] = []
    monkeypatch.setattr(
        reporting, "plot_history", lambda history, path, title: drawn.append(len(history.read()))
    )
    reporter = Reporter(None, True, 0, 10, history=tmp_path / "history.jsonl", curves=tmp_path / "curves.png")
    reporter.plot()  # nothing recorded yet
    reporter.scalars(1, {"val/data/psnr_y": 20.0})
    reporter.plot()
    reporter.plot()  # nothing new since
    reporter.scalars(2, {"val/data/psnr_y": 21.0})
    reporter.close()  # the end of the run draws what its last validation recorded
    reporter.close()
    assert drawn == [1, 2]


@pytest.mark.parametrize(("count", "rows", "columns"), [(1, 1, 1), (5, 2, 4), (11, 3, 4)])
def test_each_panel_gets_its_share_of_the_picture(
    tmp_path: Path, count: int, rows: int, columns: int
) -> None:
    panels = {f"loss/l{i}": {"": ([0.0, 100000.0], [0.00012, 12345.6])} for i in range(count)}
    plot_panels(panels, tmp_path / "curves.png", "run", "step")
    picture = read_image(tmp_path / "curves.png")
    assert picture.shape[:2] == (round(PANEL_INCHES[1] * rows * DPI), round(PANEL_INCHES[0] * columns * DPI))
    assert np.ptp(picture) > 0
    layout = grid_layout(rows, columns)
    assert 0 < layout["left"] < layout["right"] < 1 and 0 < layout["bottom"] < layout["top"] < 1
    assert layout["wspace"] > 0 and layout["hspace"] > 0


def test_the_progress_bar_stays_out_of_redirected_output(monkeypatch):
    """``train.py > out.log``: no bar frames in the file (tqdm draws only on a terminal)."""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert Reporter(None, True, 0, 10).bar.disable
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert not Reporter(None, True, 0, 10).bar.disable
    assert Reporter(None, False, 0, 10).bar.disable  # the other processes of a multi-GPU run
