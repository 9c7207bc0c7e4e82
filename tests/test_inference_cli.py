"""test.py as a user runs it: config and direct forms, failures, outputs that never replace inputs, metrics."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import tiny_gan_config
from esrforge.cli.common import run_program
from esrforge.cli.test import main
from esrforge.data.imageio import read_image, write_image
from esrforge.data.imresize import imresize
from esrforge.fields.errors import OptionError
from esrforge.inference import DEFAULT_OVERLAP
from esrforge.inference.jobs import plan_jobs
from esrforge.inference.options import load_test_config
from esrforge.metrics import calculate_psnr, calculate_ssim
from esrforge.networks import RRDBNet, RRDBNetOptions

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny x4 RRDBNet saved as Real-ESRGAN does: ``{'params_ema': ...}``."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny_x4.pth"
    torch.save({"params_ema": RRDBNet(RRDBNetOptions(nf=8, nb=1, gc=4)).state_dict()}, path)
    return path


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "lr"
    rng = np.random.default_rng(0)
    write_image(folder / "a.png", rng.integers(0, 256, (24, 36, 3), dtype=np.uint8))
    write_image(folder / "sub" / "b.jpg", rng.integers(0, 256, (20, 20, 3), dtype=np.uint8))
    return folder


def run(*argv: str | Path) -> int:
    return run_program(lambda: main([str(a) for a in argv]))


def test_direct_form_as_a_subprocess(tmp_path, checkpoint, images):
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = tmp_path / "out"
    command = [sys.executable, REPO / "codes" / "test.py", "--model", checkpoint, "--input", images]
    result = subprocess.run(
        [str(c) for c in [*command, "--output", out, "--tile", "16", "--recursive"]],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1, result.stderr  # 1: an image failed, the others were written
    assert read_image(out / "a_x4.png").shape == (96, 144, 3)
    # One line of ours for the broken file, none of OpenCV's decoder messages.
    assert "broken.png: skipped: cannot decode" in result.stderr
    assert "IHDR" not in result.stderr and "WARN" not in result.stderr
    assert read_image(out / "sub" / "b_x4.png").shape == (80, 80, 3)


def test_bad_model_path_is_one_line_and_exit_code_2(tmp_path, images):
    command = [
        sys.executable,
        REPO / "codes" / "test.py",
        "--model",
        tmp_path / "none.pth",
        "--input",
        images,
    ]
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--model" in lines[0] and "none.pth" in lines[0], result.stderr
    debug = subprocess.run(
        [str(c) for c in command],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "ESRFORGE_DEBUG": "1"},
    )
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "none.pth" in debug.stderr


def write_config(tmp_path: Path, checkpoint: Path, dataset: dict[str, object], **extra: object) -> Path:
    raw = {
        "name": "tiny",
        "scale": 4,
        "gpu_ids": [],
        "datasets": {"test": dataset},
        "path": {"pretrain_model_generator": str(checkpoint), "results_root": "results"},
        "inference": {"tile_size": 16, "tile_pad": 4, "tile_overlap": 4},
        **extra,
    }
    path = tmp_path / "test.yml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_config_form_with_set_overrides(tmp_path, checkpoint, images):
    config = write_config(tmp_path, checkpoint, {"dataroot": "lr"})
    assert run("-opt", config, "--set", "inference.suffix=sr", "inference.tile_size=null") == 0
    assert read_image(tmp_path / "results" / "tiny" / "a_sr.png").shape == (96, 144, 3)
    assert not (tmp_path / "results" / "tiny" / "sub").exists()  # not recursive


def test_shipped_config_parses(checkpoint, images):
    shipped = REPO / "options" / "test_esrgan_x4.yml"
    with pytest.raises(
        OptionError, match=r"test_esrgan_x4\.yml: path\.pretrain_model_generator: path does not exist"
    ):
        load_test_config(shipped)
    with pytest.raises(
        OptionError, match=r"test_esrgan_x4\.yml: datasets\.test\.dataroot: path does not exist"
    ):
        load_test_config(shipped, [f"path.pretrain_model_generator={checkpoint}"])
    config = load_test_config(
        shipped, [f"datasets.test.dataroot={images}", f"path.pretrain_model_generator={checkpoint}"]
    )
    assert config.inference.tile_size == "auto" and config.inference.tile_overlap == DEFAULT_OVERLAP
    assert config.output_dir == REPO / "results" / "test_esrgan_x4"
    assert config.networks.generator is None and config.scale == 4


def test_recursive_input_skips_earlier_results_inside_it(tmp_path, images):
    write_image(images / "results" / "a_x4.png", np.zeros((8, 8, 3), np.uint8))
    jobs = plan_jobs(images, images / "results", "x4", "png", recursive=True)
    assert sorted(job.name for job in jobs) == ["a.png", "sub/b.jpg"]
    assert jobs[0].output == images / "results" / "a_x4.png"


def test_config_errors_are_one_line(tmp_path, checkpoint, images, caplog):
    config = write_config(tmp_path, checkpoint, {"dataroot": "lr"}, scale=2)
    assert run("-opt", config) == 2
    assert "config says 2, the checkpoint is a x4 model" in caplog.text
    assert run("-opt", config, "--model", checkpoint) == 2
    assert "--model: not used with -opt" in caplog.text
    assert run("--input", images) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 3 and all("\n" not in e for e in errors)


def test_unreadable_file_is_skipped_reported_and_exit_code_1(tmp_path, checkpoint, images, caplog):
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = tmp_path / "out"
    assert run("--model", checkpoint, "--input", images, "--output", out, "--tile", "16") == 1
    assert (out / "a_x4.png").is_file() and not (out / "broken_x4.png").exists()
    assert "broken.png: skipped: cannot decode" in caplog.text
    assert "1 image(s) failed: broken.png" in caplog.text


def test_an_unwritable_output_is_reported_and_the_rest_are_written(tmp_path, checkpoint, images, caplog):
    out = tmp_path / "out"
    (out / "a_x4.png").mkdir(parents=True)  # a folder where the output file should go
    assert run("--model", checkpoint, "--input", images, "--output", out, "--recursive", "--tile", "16") == 1
    assert read_image(out / "sub" / "b_x4.png").shape == (80, 80, 3)
    assert f"not written to {out / 'a_x4.png'}" in caplog.text
    assert "1 image(s) failed: a.png" in caplog.text
    assert not [p for p in out.rglob("*.tmp")]  # no temporary file left behind


def test_never_writes_over_an_input(tmp_path, checkpoint, images, caplog):
    before = (images / "a.png").read_bytes()
    assert run("--model", checkpoint, "--input", images, "--output", images, "--suffix", "") == 2
    assert "would overwrite the input" in caplog.text
    assert (images / "a.png").read_bytes() == before
    assert sorted(p.name for p in images.iterdir()) == ["a.png", "sub"]


def read_scores(path: Path) -> dict[str, dict[str, float]]:
    with path.open() as handle:
        return {
            row["name"]: {k: float(v) for k, v in row.items() if k != "name"}
            for row in csv.DictReader(handle)
        }


def test_gt_metrics_equal_esrforge_metrics(tmp_path, checkpoint):
    rng = np.random.default_rng(3)
    gt_dir, lr_dir, out = tmp_path / "gt", tmp_path / "lr", tmp_path / "out"
    for name in ("x", "y"):
        gt = rng.integers(0, 256, (40, 44, 3), dtype=np.uint8)
        write_image(gt_dir / f"{name}.png", gt)
        write_image(lr_dir / f"{name}.png", imresize(gt, 0.25))
    assert run("--model", checkpoint, "--input", lr_dir, "--output", out, "--gt", gt_dir, "--tile", "16") == 0
    scores = read_scores(out / "metrics.csv")
    for name in ("x", "y"):
        sr, gt = read_image(out / f"{name}_x4.png"), read_image(gt_dir / f"{name}.png")
        assert scores[f"{name}.png"]["psnr_y"] == pytest.approx(
            calculate_psnr(sr, gt, 4, y_channel=True), abs=1e-5
        )
        assert scores[f"{name}.png"]["ssim_y"] == pytest.approx(
            calculate_ssim(sr, gt, 4, y_channel=True), abs=1e-5
        )
    assert scores["mean"]["psnr_y"] == pytest.approx(
        (scores["x.png"]["psnr_y"] + scores["y.png"]["psnr_y"]) / 2
    )


def test_downscale_gt_makes_the_input_with_matlab_imresize(tmp_path, checkpoint):
    gt = np.random.default_rng(4).integers(0, 256, (42, 45, 3), dtype=np.uint8)  # not a multiple of 4
    write_image(tmp_path / "hr" / "z.png", gt)
    out = tmp_path / "out"
    assert run("--model", checkpoint, "--input", tmp_path / "hr", "--output", out, "--downscale-gt") == 0
    sr = read_image(out / "z_x4.png")
    assert sr.shape == (40, 44, 3)
    cropped = gt[:40, :44]
    direct = tmp_path / "direct"
    write_image(tmp_path / "lr" / "z.png", imresize(cropped, 0.25))
    assert run("--model", checkpoint, "--input", tmp_path / "lr", "--output", direct, "--tile", "0") == 0
    assert np.abs(sr.astype(int) - read_image(direct / "z_x4.png").astype(int)).max() <= 1  # tiled vs whole
    scores = read_scores(out / "metrics.csv")
    assert scores["z.png"]["psnr_y"] == pytest.approx(
        calculate_psnr(sr, cropped, 4, y_channel=True), abs=1e-5
    )


def test_half_precision_flags_on_the_cpu(tmp_path, checkpoint, images, caplog):
    image = images / "a.png"
    assert run("--model", checkpoint, "--input", image, "-o", tmp_path / "h", "--half", "--cpu") == 0
    assert "fp16 needs CUDA: running in fp32" in caplog.text
    assert run("--model", checkpoint, "--input", image, "-o", tmp_path / "b", "--bf16", "--cpu") == 0
    half, full = read_image(tmp_path / "b" / "a_x4.png"), read_image(tmp_path / "h" / "a_x4.png")
    assert np.abs(half.astype(int) - full.astype(int)).max() <= 2  # bf16 vs fp32 on the tiny model


def test_a_training_config_runs_as_dlas_test_py_reads_it(tmp_path, caplog):
    """-opt TRAINING_CONFIG --set path.pretrain_model_generator=M: the generator and validation images."""
    config = tiny_gan_config(tmp_path)
    torch.manual_seed(0)
    model = tmp_path / "G.pth"
    torch.save(RRDBNet(RRDBNetOptions(nf=8, nb=1, gc=4)).state_dict(), model)
    assert run("-opt", config, "--set", f"path.pretrain_model_generator={model}") == 0
    results = tmp_path / "results" / "run"  # results/ beside experiments/
    assert sorted(p.name for p in results.glob("*.png")) == ["img0_x4.png", "img1_x4.png", "img2_x4.png"]
    assert read_image(results / "img0_x4.png").shape == (100, 100, 3)  # HR size: LR made from the val images
    assert (results / "metrics.csv").is_file()
    ignored = "ignored: train, logger, datasets.train, networks.discriminator, path.experiments_root"
    assert "a training config: test.py upscales datasets.val" in caplog.text and ignored in caplog.text
    # A datasets.test entry takes the images from elsewhere; errors name the key as the file has it.
    photos = tmp_path / "photos"
    write_image(photos / "p.png", np.zeros((10, 12, 3), np.uint8))
    model_set = f"path.pretrain_model_generator={model}"
    assert run("-opt", config, "--set", model_set, f"datasets.test.dataroot={photos}") == 0
    assert read_image(results / "p_x4.png").shape == (40, 48, 3)
    assert run("-opt", config, "--set", model_set, "datasets.val.dataroot=missing") == 2
    assert "datasets.val.dataroot: path does not exist" in caplog.text


def test_images_whose_outputs_would_share_a_name_are_all_upscaled(tmp_path, checkpoint, caplog):
    folder = tmp_path / "in"
    write_image(folder / "photo.jpg", np.full((8, 8, 3), 200, np.uint8))
    write_image(folder / "photo.png", np.full((8, 8, 3), 20, np.uint8))
    write_image(folder / "other.png", np.zeros((8, 8, 3), np.uint8))
    out = tmp_path / "out"
    assert run("--model", checkpoint, "--input", folder, "--output", out) == 0
    names = ["other_x4.png", "photo.jpg_x4.png", "photo.png_x4.png"]
    assert sorted(p.name for p in out.iterdir()) == names
    assert read_image(out / "photo.jpg_x4.png").mean() > read_image(out / "photo.png_x4.png").mean()
    assert "photo.jpg -> photo.jpg_x4.png, photo.png -> photo.png_x4.png" in caplog.text
    assert "2 named <name>.<source ext>_<suffix> as their names collide" in caplog.text


def test_bf16_is_picked_by_itself_on_cpus_that_have_it_when_close_to_fp32(
    tmp_path, checkpoint, images, caplog, monkeypatch
):
    image = images / "a.png"
    monkeypatch.setattr("esrforge.inference.precision.cpu_has_bf16", lambda: True)
    assert run("--model", checkpoint, "--input", image, "-o", tmp_path / "auto", "--cpu") == 0
    assert re.search(
        r"bf16 on this CPU \(AVX-512-BF16/AMX\): [0-9.]+ dB PSNR from fp32 on a probe image", caplog.text
    )
    assert run("--model", checkpoint, "--input", image, "-o", tmp_path / "bf16", "--bf16", "--cpu") == 0
    assert np.array_equal(
        read_image(tmp_path / "auto" / "a_x4.png"), read_image(tmp_path / "bf16" / "a_x4.png")
    )
    caplog.clear()
    assert run("--model", checkpoint, "--input", image, "-o", tmp_path / "fp32", "--fp32", "--cpu") == 0
    assert "probe image" not in caplog.text  # no probe: fp32 as asked
    # a model that bf16 changes too much stays in fp32, and the log says why
    monkeypatch.setattr("esrforge.inference.precision.MIN_AUTO_BF16_PSNR", 500.0)
    assert run("--model", checkpoint, "--input", image, "-o", tmp_path / "strict", "--cpu") == 0
    assert "fp32: bf16 would be" in caplog.text and "under 500 dB (--bf16 forces it)" in caplog.text
    assert np.array_equal(
        read_image(tmp_path / "strict" / "a_x4.png"), read_image(tmp_path / "fp32" / "a_x4.png")
    )
    assert (
        run("--model", checkpoint, "--input", image, "-o", tmp_path / "x", "--fp32", "--bf16", "--cpu") == 2
    )
    assert "fp32: expected fp32 without fp16 or bf16" in caplog.text


def test_compiled_inference_matches_eager_and_compiles_per_shape_not_per_tile(
    tmp_path, checkpoint, images, caplog
):
    import torch._dynamo

    torch._dynamo.reset()
    common = ["--model", checkpoint, "--input", images, "--cpu", "--tile", "16", "--tile-overlap", "4"]
    assert run(*common, "-o", tmp_path / "eager") == 0
    compiles = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    assert run(*common, "-o", tmp_path / "compiled", "--compile") == 0
    assert "torch.compile: the first tile compiles the network" in caplog.text
    # every image's tiles share one shape: no more graphs than dynamic shapes need (static, then dynamic)
    assert 1 <= torch._dynamo.utils.counters["stats"]["unique_graphs"] - compiles <= 2
    for output in (tmp_path / "eager").glob("*.png"):
        eager, compiled = read_image(output), read_image(tmp_path / "compiled" / output.name)
        assert np.abs(eager.astype(int) - compiled.astype(int)).max() <= 1, output.name


def test_an_output_that_is_a_file_or_holds_every_input_is_refused(tmp_path, checkpoint, images, logs):
    image = images / "a.png"
    assert run("--model", checkpoint, "--input", image, "--output", image) == 2
    assert f"{image}: the output is a file; expected a folder for the upscaled images" in logs.text
    assert run("--model", checkpoint, "--input", images, "--output", images / "sub", "--recursive") == 0
    only = tmp_path / "only"  # its one image lies in the output folder: earlier results are not inputs
    write_image(only / "out" / "b.png", np.zeros((8, 8, 3), np.uint8))
    assert run("--model", checkpoint, "--input", only, "--output", only / "out", "--recursive") == 2
    assert f"{only}: every image is in the output folder {only / 'out'}; choose another one" in logs.text


def test_an_image_that_cannot_be_scored_is_still_written(tmp_path, checkpoint, logs):
    lr, gt = tmp_path / "lr", tmp_path / "gt"
    write_image(lr / "small.png", np.zeros((3, 5, 3), np.uint8))  # too small for SSIM once cropped
    write_image(gt / "small.png", np.zeros((12, 20, 3), np.uint8))
    write_image(lr / "fine.png", np.zeros((10, 10, 3), np.uint8))
    write_image(gt / "fine.png", np.zeros((40, 40, 3), np.uint8))
    out = tmp_path / "out"
    assert run("--model", checkpoint, "--input", lr, "--gt", gt, "--output", out) == 0
    assert read_image(out / "small_x4.png").shape == (12, 20, 3)
    assert f"{lr / 'small.png'}: upscaled but not scored: " in logs.text
    assert set(read_scores(out / "metrics.csv")) == {"fine.png", "mean"}


def test_transparency_written_to_jpeg_is_dropped_with_a_warning(tmp_path, checkpoint, logs):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 3] = 128
    write_image(tmp_path / "in" / "t.png", rgba)
    assert run("--model", checkpoint, "--input", tmp_path / "in", "-o", tmp_path / "out", "--ext", "jpg") == 0
    assert "stores no transparency; the alpha channel is dropped (--ext png keeps it)" in logs.text
    assert read_image(tmp_path / "out" / "t_x4.jpg").shape == (32, 32, 3)


def test_one_ground_truth_image_scores_one_input_image(tmp_path, checkpoint, images, logs):
    gt = tmp_path / "gt.png"
    write_image(gt, np.zeros((96, 144, 3), np.uint8))  # a.png is 24x36
    out = tmp_path / "out"
    assert run("--model", checkpoint, "--input", images / "a.png", "--gt", gt, "--output", out) == 0
    assert set(read_scores(out / "metrics.csv")) == {"a.png", "mean"}
    assert run("--model", checkpoint, "--input", images, "--gt", gt, "--output", out) == 2
    assert (
        f"{gt}: the ground truth is one image; expected a folder for the input folder {images}" in logs.text
    )
