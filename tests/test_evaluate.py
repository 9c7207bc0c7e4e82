"""The evaluate CLI: file matching, cropping, error handling, CSV, and the published bicubic baselines."""

import csv
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from esrforge.data.imageio import read_image, write_image
from esrforge.data.imresize import mod_crop
from esrforge.metrics.evaluate import bicubic_baseline, evaluate_folder, main, match_sr_files

REPO = Path(__file__).resolve().parents[1]
BENCHMARK = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "benchmark"
RNG = np.random.default_rng(2)


def _smooth_image(height, width, channels):
    """A smooth random image (so bicubic x4 scores are meaningful)."""
    small = RNG.integers(0, 256, (height // 8 + 2, width // 8 + 2, channels)).astype(np.float32)
    big = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    big = big.reshape(height, width, channels)
    return np.clip(big, 0, 255).astype(np.uint8)


@pytest.fixture
def gt_dir(tmp_path):
    folder = tmp_path / "gt"
    write_image(folder / "alpha.png", _smooth_image(34, 41, 3))  # not a multiple of 4
    write_image(folder / "grey.png", _smooth_image(32, 32, 1)[:, :, 0])
    (folder / "notes.txt").write_text("not an image")
    return folder


def _write_bicubic_sr(gt_dir, sr_dir, suffix="_x4"):
    for path in sorted(gt_dir.glob("*.png")):
        gt = mod_crop(read_image(path), 4)
        write_image(sr_dir / f"{path.stem}{suffix}.png", bicubic_baseline(gt, 4))


def test_match_sr_files_by_stem(tmp_path):
    gt = [tmp_path / "baby.png", tmp_path / "baby_2.png", tmp_path / "bird.png"]
    sr = [Path("baby_x4.png"), Path("baby_2_SR.png"), Path("bird.jpg"), Path("other.png")]
    assert match_sr_files(gt, sr) == {gt[0]: sr[0], gt[1]: sr[1], gt[2]: sr[2]}
    with pytest.raises(ValueError, match=r"no SR image for GT file .*bird\.png"):
        match_sr_files(gt, sr[:2])
    with pytest.raises(ValueError, match=r"several SR images match GT file .*bird\.png"):
        match_sr_files(gt, [*sr, Path("bird_x4.png")])


def test_bicubic_and_sr_folder_give_the_same_scores(gt_dir, tmp_path, capsys):
    sr_dir = tmp_path / "sr"
    _write_bicubic_sr(gt_dir, sr_dir)
    bicubic = evaluate_folder(gt_dir, None, 4, 4)
    assert [s.name for s in bicubic] == ["alpha", "grey"]
    assert evaluate_folder(gt_dir, sr_dir, 4, 4) == bicubic
    grey = bicubic[1]
    assert (grey.psnr_y, grey.ssim_y) == (grey.psnr_rgb, grey.ssim_rgb)  # scored on its grey channel
    assert 15 < bicubic[0].psnr_y < 60 and 0 < bicubic[0].ssim_y <= 1

    out_csv = tmp_path / "out" / "scores.csv"
    assert main(["--gt", str(gt_dir), "--sr", str(sr_dir), "--scale", "4", "--csv", str(out_csv)]) == 0
    table = capsys.readouterr().out
    assert "PSNR_Y" in table and "alpha" in table and "mean" in table
    rows = list(csv.DictReader(out_csv.open()))
    assert [r["name"] for r in rows] == ["alpha", "grey", "mean"]
    assert float(rows[0]["psnr_y"]) == pytest.approx(bicubic[0].psnr_y, abs=1e-6)
    assert float(rows[2]["ssim_rgb"]) == pytest.approx((bicubic[0].ssim_rgb + grey.ssim_rgb) / 2, abs=1e-6)


def test_rgb_sr_of_grey_gt_is_scored_as_grey(gt_dir, tmp_path):
    sr_dir = tmp_path / "sr"
    _write_bicubic_sr(gt_dir, sr_dir)
    grey_sr = sr_dir / "grey_x4.png"
    write_image(grey_sr, np.dstack([read_image(grey_sr)] * 3))
    assert evaluate_folder(gt_dir, sr_dir, 4, 4) == evaluate_folder(gt_dir, None, 4, 4)


def test_missing_folder_exit_code_2(tmp_path, capsys):
    assert main(["--gt", str(tmp_path / "nope"), "--bicubic", "--scale", "4"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope" in err and "Traceback" not in err
    assert main(["--gt", str(tmp_path), "--sr", str(tmp_path / "none"), "--scale", "4"]) == 2


def test_unreadable_and_mismatched_files_exit_code_1(gt_dir, tmp_path, capsys):
    sr_dir = tmp_path / "sr"
    _write_bicubic_sr(gt_dir, sr_dir)
    (sr_dir / "grey_x4.png").write_bytes(b"not a png")
    assert main(["--gt", str(gt_dir), "--sr", str(sr_dir), "--scale", "4"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "grey_x4.png" in err

    write_image(sr_dir / "grey_x4.png", np.zeros((40, 32), dtype=np.uint8))  # taller than its GT
    assert main(["--gt", str(gt_dir), "--sr", str(sr_dir), "--scale", "4"]) == 1
    err = capsys.readouterr().err
    assert "grey_x4.png" in err and "larger" in err


def test_bad_arguments_exit_code_2(gt_dir):
    with pytest.raises(SystemExit) as raised:
        main(["--gt", str(gt_dir), "--scale", "4"])  # neither --sr nor --bicubic
    assert raised.value.code == 2
    with pytest.raises(SystemExit) as raised:
        main(["--gt", str(gt_dir), "--bicubic", "--scale", "0"])
    assert raised.value.code == 2


def test_script_runs_without_installation(gt_dir, tmp_path):
    script = REPO / "codes" / "scripts" / "evaluate.py"
    result = subprocess.run(
        [sys.executable, str(script), "--gt", str(gt_dir), "--bicubic", "--scale", "4"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert "alpha" in result.stdout and "mean" in result.stdout


@pytest.mark.shared
@pytest.mark.slow
@pytest.mark.skipif(not BENCHMARK.is_dir(), reason="needs ../shared/datasets/benchmark")
@pytest.mark.parametrize(("name", "psnr", "ssim"), [("Set5", 28.42, 0.8104), ("Set14", 26.00, 0.7027)])
def test_published_bicubic_x4_baselines(name, psnr, ssim):
    scores = evaluate_folder(BENCHMARK / name, None, 4, 4)
    mean_psnr = float(np.mean([s.psnr_y for s in scores]))
    mean_ssim = float(np.mean([s.ssim_y for s in scores]))
    assert mean_psnr == pytest.approx(psnr, abs=0.02)
    assert mean_ssim == pytest.approx(ssim, abs=0.002)
