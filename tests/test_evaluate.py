"""The evaluate CLI: file matching, cropping, error handling, CSV, and the published bicubic baselines."""

import csv
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from esrforge.cli.common import run_program
from esrforge.data.imageio import read_image, write_image
from esrforge.data.imresize import mod_crop
from esrforge.metrics import evaluate
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


def error_of(argv: list[str], logs: pytest.LogCaptureFixture) -> str:
    """The one ERROR line of an evaluate.py run that must exit 2."""
    logs.clear()
    assert run_program(lambda: main(argv)) == 2
    errors = [r.getMessage() for r in logs.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "\n" not in errors[0]
    return errors[0]


def test_missing_folder_exit_code_2(tmp_path, logs):
    assert error_of(["--gt", str(tmp_path / "nope"), "--bicubic", "--scale", "4"], logs) == (
        f"--gt {tmp_path / 'nope'}: folder not found"
    )
    assert "none" in error_of(["--gt", str(tmp_path), "--sr", str(tmp_path / "none"), "--scale", "4"], logs)


def test_unreadable_and_mismatched_files_exit_code_2(gt_dir, tmp_path, logs):
    sr_dir = tmp_path / "sr"
    _write_bicubic_sr(gt_dir, sr_dir)
    args = ["--gt", str(gt_dir), "--sr", str(sr_dir), "--scale", "4"]
    (sr_dir / "grey_x4.png").write_bytes(b"not a png")
    assert "grey_x4.png" in error_of(args, logs)

    write_image(sr_dir / "grey_x4.png", np.zeros((40, 32), dtype=np.uint8))  # taller than its GT
    error = error_of(args, logs)
    assert "grey_x4.png" in error and "larger" in error

    short = np.zeros((28, 32), dtype=np.uint8)  # 4 px short of its 32 px GT: more than the scale's crop
    write_image(sr_dir / "grey_x4.png", short)
    error = error_of(args, logs)
    assert "grey_x4.png (32x28) is smaller than GT" in error and "by more than the 3 px" in error
    write_image(sr_dir / "alpha_x4.png", np.zeros((31, 38, 3), dtype=np.uint8))  # GT 41x34: within 3 px
    write_image(sr_dir / "grey_x4.png", np.zeros((32, 32), dtype=np.uint8))
    assert run_program(lambda: main(args)) == 0


def test_bad_arguments_exit_code_2(gt_dir, tmp_path, logs):
    with pytest.raises(SystemExit) as raised:
        main(["--gt", str(gt_dir), "--scale", "4"])  # neither --sr nor --bicubic
    assert raised.value.code == 2
    bicubic = ["--gt", str(gt_dir), "--bicubic"]
    assert error_of([*bicubic, "--scale", "0"], logs) == "--scale: expected a positive integer, got 0"
    assert error_of([*bicubic, "--scale", "4", "--crop-border", "-1"], logs).startswith("--crop-border:")
    error = error_of([*bicubic, "--scale", "4", "--csv", str(tmp_path)], logs)
    assert error == f"--csv {tmp_path}: is a folder; expected the name of a CSV file"
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_progress_bar_counts_the_images(gt_dir, monkeypatch):
    bars = []

    def spy(items, **kwargs):
        bars.append((len(items), kwargs))
        return items

    monkeypatch.setattr(evaluate, "tqdm", spy)
    evaluate_folder(gt_dir, None, 4, 4)
    assert bars == [(2, {"desc": "evaluate", "unit": "img", "disable": None})]


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
    command = [sys.executable, str(script), "--gt", str(tmp_path / "nope"), "--bicubic", "--scale", "4"]
    failed = subprocess.run(
        command, capture_output=True, text=True, check=False, env={"PATH": "/usr/bin:/bin"}
    )
    assert failed.returncode == 2 and failed.stderr == f"ERROR --gt {tmp_path / 'nope'}: folder not found\n"


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
