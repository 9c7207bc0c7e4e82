"""A shortened `make demo`: built-in photos -> chunks -> training -> test.py -> side-by-side picture."""

from __future__ import annotations

import numpy as np
import pytest

from esrforge.cli.common import run_program
from esrforge.cli.demo import main
from esrforge.data.imageio import read_image

pytest.importorskip("skimage")


@pytest.mark.slow
def test_short_demo_runs_end_to_end(tmp_path, caplog):
    caplog.set_level("INFO", logger="esrforge")
    overrides = [
        f"datasets.train.dataroot={tmp_path / 'demo' / 'chunks'}",
        f"path.experiments_root={tmp_path / 'experiments'}",
        "train.niter=4",
        "train.val_freq=4",
        "networks.generator.nb=1",
    ]
    status = run_program(lambda: main(["--output", str(tmp_path / "results"), "--set", *overrides]))
    assert status in (0, 1)  # 1: no gain over bicubic after only 4 steps
    assert len(list((tmp_path / "demo" / "chunks").glob("*.png"))) > 100
    assert (tmp_path / "experiments" / "demo_x4" / "models" / "4_G.pth").is_file()
    picture = read_image(tmp_path / "results" / "hubble_deep_field_bicubic_model_original.png")
    original = read_image(tmp_path / "demo" / "test" / "hubble_deep_field.png")
    sr = read_image(next((tmp_path / "results").glob("hubble_deep_field_x4.png")))
    # Under the shrunk whole photos, two rows of 128 px crops at 2x: bicubic | model | original.
    assert picture.shape[1] == 3 * 256 + 2 * 4 and picture.shape[0] > 2 * 256
    crop = picture[-256:, 260 : 260 + 256]  # the model's panel of the last crop row
    hits = [
        (top, left)
        for top in range(0, sr.shape[0] - 127, 64)
        for left in range(0, sr.shape[1] - 127, 64)
        if np.array_equal(sr[top : top + 128 : 1, left : left + 128].repeat(2, 0).repeat(2, 1), crop)
    ]
    assert hits  # a native-resolution crop of the model's output, not a rescaled one
    assert original.shape[0] >= 512
    assert "gain" in caplog.text and "PSNR-Y" in caplog.text
