"""Picking and shipping a GAN model: network interpolation, interpolation sweeps, checkpoint sweeps,
and generator files that record the options that build them."""

from __future__ import annotations

import csv
import importlib.util
import json
import re
from pathlib import Path

import cv2
import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import save_file

from conftest import tensors_equal, tiny_gan_config, to_esrgan_names, write_blocky_images
from esrforge.cli import export, interpolate, sweep_checkpoints
from esrforge.cli.common import run_program
from esrforge.cli.test import main as upscale_main
from esrforge.cli.train import main as train
from esrforge.data.imageio import read_image, write_image
from esrforge.fields.errors import OptionError
from esrforge.inference.scoring import folder_set, means, score_set, val_loader
from esrforge.metrics import build_metric, metric_named
from esrforge.metrics.evaluate import evaluate_folder
from esrforge.networks import RRDBNet, RRDBNetOptions, SRVGGNetCompactOptions, build_network, load_generator
from esrforge.networks.saved import read_metadata, save_generator
from esrforge.options.loader import load_config_data
from esrforge.training.curves import History

TINY = RRDBNetOptions(nf=8, nb=1, gc=4, scale=2)


def tiny_checkpoint(path: Path, seed: int, options=TINY) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    state = build_network(options).state_dict()
    torch.save(state, path)
    return state


def test_interpolation_at_0_and_1_is_each_input_and_blends_between(tmp_path):
    a = tiny_checkpoint(tmp_path / "a.pth", 0)
    b = tiny_checkpoint(tmp_path / "b.pth", 1)
    torch.save(to_esrgan_names(b), tmp_path / "b_esrgan.pth")  # B in another layout: read all the same
    for alpha, expected in ((0.0, a), (1.0, b)):
        out = tmp_path / f"out{alpha}.pth"
        args = ["--a", str(tmp_path / "a.pth"), "--b", str(tmp_path / "b_esrgan.pth"), "--alpha", str(alpha)]
        assert interpolate.main([*args, "--output", str(out)]) == 0
        assert tensors_equal(torch.load(out, weights_only=True), expected)
    out = tmp_path / "out.safetensors"
    assert (
        interpolate.main(
            [
                "--a",
                str(tmp_path / "a.pth"),
                "--b",
                str(tmp_path / "b.pth"),
                "--alpha",
                "0.8",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    loaded = load_generator(out)
    assert loaded.options == TINY
    for key, value in loaded.module.state_dict().items():
        torch.testing.assert_close(value, 0.2 * a[key] + 0.8 * b[key], atol=1e-6, rtol=1e-6)


def test_interpolation_needs_two_networks_of_one_architecture(tmp_path, caplog):
    tiny_checkpoint(tmp_path / "a.pth", 0)
    tiny_checkpoint(tmp_path / "x4.pth", 1, RRDBNetOptions(nf=8, nb=1, gc=4, scale=4))
    args = [
        "--a",
        str(tmp_path / "a.pth"),
        "--b",
        str(tmp_path / "x4.pth"),
        "--alpha",
        "0.5",
        "--output",
        str(tmp_path / "o.pth"),
    ]
    assert run_program(lambda: interpolate.main(args)) == 2
    message = caplog.records[-1].getMessage()
    assert (
        message.startswith("--b ") and "x4.pth" in message and "RRDBNet x2" in message and "\n" not in message
    )
    assert not (tmp_path / "o.pth").exists()
    with pytest.raises(ValueError, match="START:STOP:STEP"):
        interpolate.alphas("0:1")
    assert interpolate.alphas("0:1:0.25") == [0, 0.25, 0.5, 0.75, 1]


@pytest.mark.usefixtures("random_imagenet")
def test_interpolation_sweep_scores_every_alpha_and_draws_plot_and_crops(tmp_path):
    write_blocky_images(tmp_path / "gt", count=2, size=48)
    tiny_checkpoint(tmp_path / "a.pth", 0)
    tiny_checkpoint(tmp_path / "b.pth", 1)
    out = tmp_path / "sweep"
    args = ["--a", str(tmp_path / "a.pth"), "--b", str(tmp_path / "b.pth"), "--sweep", "0:1:0.25"]
    assert interpolate.main([*args, "--gt", str(tmp_path / "gt"), "--out", str(out), "--device", "cpu"]) == 0
    rows = list(csv.DictReader((out / "interpolation.csv").open()))
    assert [r["alpha"] for r in rows] == ["0", "0.25", "0.5", "0.75", "1"]
    assert set(rows[0]) == {"series", "alpha", "gt/psnr_y", "gt/ssim_y", "gt/lpips_alex"}
    options = folder_set(tmp_path / "gt", name="gt")
    metrics = [build_metric(metric_named(n), 2) for n in ("psnr_y", "ssim_y", "lpips_alex")]
    # Each alpha scores exactly as the blend written with --alpha, scored directly.
    for row in rows:
        blend = tmp_path / f"blend_{row['alpha']}.pth"
        assert interpolate.main([*args[:4], "--alpha", row["alpha"], "--output", str(blend)]) == 0
        model = load_generator(blend)
        direct = means(
            score_set(model.module, val_loader(options, 2), metrics, model.description, 512), metrics
        )
        for name, value in direct.items():
            assert float(row[f"gt/{name}"]) == pytest.approx(value, abs=1e-5), (row["alpha"], name)
    assert float(rows[0]["gt/psnr_y"]) != pytest.approx(float(rows[4]["gt/psnr_y"]), abs=1e-3)
    plot, crops = read_image(out / "interpolation.png"), read_image(out / "crops.png")
    assert plot.ndim == 3 and plot.shape[0] > 100
    assert crops.shape[1] >= 6 * 48 and crops.shape[0] >= 2 * 48  # 5 alphas and the HR, 2 images


@pytest.mark.slow
def test_sweep_checkpoints_scores_each_saved_step_as_validation_did(tmp_path):
    config = tiny_gan_config(tmp_path, niter=6)
    assert run_program(lambda: train(["-opt", str(config)])) == 0
    run = tmp_path / "experiments" / "run"
    assert sweep_checkpoints.main([str(run), "--device", "cpu"]) == 0
    rows = list(csv.DictReader((run / "sweep" / "checkpoints.csv").open()))
    assert [(r["series"], r["step"]) for r in rows] == [("G_ema", "3"), ("G_ema", "6")]
    log = (run / "train.log").read_text()
    for row in rows:  # validation scored the EMA model of the same steps on the same set
        logged = f"validation at step {row['step']} on data: psnr_y {float(row['data/psnr_y']):.4f}"
        assert logged in log
    assert read_image(run / "sweep" / "checkpoints.png").ndim == 3
    assert run_program(lambda: sweep_checkpoints.main([str(run), "--tags", "G_final"])) == 2

    # a saved checkpoint exported as safetensors records the step and the run it comes from
    shipped = tmp_path / "shipped.safetensors"
    argv = [
        "--model",
        str(run / "models" / "6_G_ema.pth"),
        "--format",
        "safetensors",
        "--output",
        str(shipped),
    ]
    assert run_program(lambda: export.main(argv)) == 0
    meta = read_metadata(shipped)
    assert meta["step"] == "6" and meta["config"] == "run" and meta["architecture"] == "RRDBNet"
    original = load_generator(run / "models" / "6_G_ema.pth")
    loaded = load_generator(shipped)
    assert loaded.options == original.options
    assert tensors_equal(loaded.module.state_dict(), original.module.state_dict())


def test_safetensors_generators_record_the_options_that_build_them(tmp_path):
    options = SRVGGNetCompactOptions(num_feat=8, num_conv=2, upscale=3)
    net = build_network(options)
    path = tmp_path / "compact.safetensors"
    save_generator(path, net.state_dict(), options, step=1200, config="train_compact_video_x4")
    meta = read_metadata(path)
    assert meta["architecture"] == "SRVGGNetCompact" and meta["scale"] == "3" and meta["step"] == "1200"
    assert meta["config"] == "train_compact_video_x4" and json.loads(meta["options"])["num_feat"] == 8
    with safe_open(str(path), "pt") as handle:
        assert handle.metadata()["esrforge.architecture"] == "SRVGGNetCompact"
    loaded = load_generator(path)
    assert loaded.options == options and tensors_equal(loaded.module.state_dict(), net.state_dict())
    broken = tmp_path / "broken.safetensors"
    wrong = {"type": "SRVGGNetCompact", "num_feats": 8}
    save_file(net.state_dict(), str(broken), metadata={"esrforge.options": json.dumps(wrong)})
    with pytest.raises(
        ValueError, match=r"broken.safetensors: its esrforge.options metadata is unusable .*num_feats"
    ):
        load_generator(broken)
    with pytest.raises(ValueError, match=r"expected a \.pth or \.safetensors"):
        save_generator(tmp_path / "x.bin", net.state_dict())


def test_rrdb_checkpoint_without_metadata_still_recognised(tmp_path):
    net = RRDBNet(TINY)
    save_generator(tmp_path / "plain.safetensors", net.state_dict())
    assert read_metadata(tmp_path / "plain.safetensors") == {}
    assert load_generator(tmp_path / "plain.safetensors").options == TINY


def gan_phase_config(root: Path, wandb: bool) -> Path:
    """The tiny GAN recipe with its GAN phase from step 4, validated every 2 steps on two sets by PSNR and
    LPIPS (random backbone)."""
    raw = yaml.safe_load(tiny_gan_config(root, niter=6).read_text())
    write_blocky_images(root / "second", count=2, size=64)
    for loss in raw["train"]["losses"]:
        if loss["type"] in ("gan", "gradient_penalty"):
            loss["after"] = 4
    raw["train"]["val_freq"] = 2
    raw["datasets"]["val"] = [
        raw["datasets"]["val"],
        {"type": "FullImageDataset", "name": "second", "dataroot": "second"},
    ]
    raw["validation"] = {"metrics": [{"type": "psnr"}, {"type": "lpips", "net": "alex", "pretrained": False}]}
    if wandb:
        raw["logger"]["wandb"] = {"mode": "offline", "project": "tests"}
    path = root / "config.yml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.slow
def test_a_gan_run_keeps_best_models_per_metric_from_its_gan_phase_only(tmp_path, monkeypatch):
    wandb = importlib.util.find_spec("wandb") is not None
    monkeypatch.setenv("WANDB_SILENT", "true")
    config = gan_phase_config(tmp_path, wandb)
    assert run_program(lambda: train(["-opt", str(config)])) == 0
    run = tmp_path / "experiments" / "run"
    log = (run / "train.log").read_text()
    for step in (2, 4):  # L1 phase (and the step at which the GAN phase begins): not candidates
        assert f"step {step} is before the GAN phase (from step 4): not a candidate for best models" in log
        assert f"validation at step {step} on second: psnr_y" in log
    state = torch.load(run / "training_state" / "6.state", weights_only=True)
    assert state["best"] == {
        "psnr_y": {"value": pytest.approx(state["best"]["psnr_y"]["value"]), "step": 6.0},
        "lpips_alex": {"value": pytest.approx(state["best"]["lpips_alex"]["value"]), "step": 6.0},
    }
    ema = torch.load(run / "models" / "6_G_ema.pth", weights_only=True)
    for name in ("best_psnr_y_G.pth", "best_lpips_alex_G.pth"):
        assert tensors_equal(torch.load(run / "models" / name, weights_only=True), ema)
    lpips = state["best"]["lpips_alex"]["value"]
    assert re.search(
        rf"best validation lpips_alex {lpips:.4f} on data at step 6 \(.*best_lpips_alex_G\.pth\)", log
    )
    tags = {k for r in History(run / "history.jsonl").read() for k in r}
    assert {"val/data/lpips_alex", "val/second/psnr_y", "loss/gan", "loss/pixel"} <= tags
    assert read_image(run / "curves.png").ndim == 3
    assert sorted(p.name for p in (run / "val_images").iterdir()) == ["data", "second"]
    if wandb:  # the offline wandb run is kept under the experiment, under the id a resume continues
        run_id = (run / "wandb" / "run_id").read_text()
        assert list((run / "wandb" / "wandb").glob(f"offline-run-*-{run_id}"))


def test_validation_sets_and_metrics_are_checked_when_the_config_loads(tmp_path, monkeypatch):
    raw = yaml.safe_load(tiny_gan_config(tmp_path).read_text())
    val = raw["datasets"]["val"]

    def error(**changes) -> str:
        data = {**raw, **changes}
        with pytest.raises(OptionError) as err:
            load_config_data(data, "c.yml", tmp_path)
        return str(err.value)

    config = load_config_data(
        {**raw, "datasets": {**raw["datasets"], "val": [val, {**val, "name": "b"}]}}, "c.yml", tmp_path
    )
    assert [v.label for v in config.datasets.val_sets] == ["data", "b"]
    assert [m.name for m in config.validation.metrics] == ["psnr_y", "ssim_y"]
    assert "datasets.val[1].name: expected a name other than 'data' (taken)" in error(
        datasets={**raw["datasets"], "val": [val, val]}
    )
    assert "validation.report: expected auto or one of psnr_y, ssim_y" in error(
        validation={"report": "lpips_alex"}
    )
    assert "validation.metrics[0].type: unknown metric type 'lpip' (did you mean 'lpips'?)" in error(
        validation={"metrics": [{"type": "lpip"}]}
    )
    assert "validation.metrics[1]: expected a metric other than psnr_y" in error(
        validation={"metrics": [{"type": "psnr"}, {"type": "psnr"}]}
    )
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert "logger.wandb: needs the wandb package: pip install wandb" in error(
        logger={"wandb": {"mode": "offline"}}
    )


def test_validation_scores_a_set_as_test_py_and_evaluate_do_grey_images_included(tmp_path):
    """The published protocol scores a single-channel GT (Set14's bridge) on its one channel, as
    test.py's grey output; validation and sweeps must give the same figures, not the Y of three copies."""
    write_blocky_images(tmp_path / "gt", count=2, size=48)
    colour = read_image(tmp_path / "gt" / "img0.png")
    write_image(tmp_path / "gt" / "grey.png", cv2.cvtColor(colour, cv2.COLOR_RGB2GRAY))
    model = tmp_path / "model.pth"
    tiny_checkpoint(model, seed=3)
    argv = ["--model", str(model), "--input", str(tmp_path / "gt"), "--output", str(tmp_path / "sr")]
    assert run_program(lambda: upscale_main([*argv, "--downscale-gt", "--cpu"])) == 0
    published = {s.name: s for s in evaluate_folder(tmp_path / "gt", tmp_path / "sr", 2, 2)}
    loaded = load_generator(model)
    metrics = [build_metric(metric_named(name), 2) for name in ("psnr_y", "ssim_y", "psnr_rgb")]
    for name in ("grey.png", "img0.png", "img1.png"):
        (tmp_path / "one").mkdir(exist_ok=True)
        for old in (tmp_path / "one").iterdir():
            old.unlink()
        (tmp_path / "one" / name).write_bytes((tmp_path / "gt" / name).read_bytes())
        loader = val_loader(folder_set(tmp_path / "one"), 2)
        scores = means(score_set(loaded.module, loader, metrics, loaded.description, None), metrics)
        expected = published[Path(name).stem]
        assert scores["psnr_y"] == pytest.approx(expected.psnr_y, abs=1e-4), name
        assert scores["ssim_y"] == pytest.approx(expected.ssim_y, abs=1e-5), name
        assert scores["psnr_rgb"] == pytest.approx(expected.psnr_rgb, abs=1e-4), name


def fake_run(root: Path, broken: dict[int, bytes] | None = None) -> Path:
    """A run folder as train.py leaves it (config and ``models/<step>_G_ema.pth``), without training it;
    ``broken`` replaces the file of a step with other bytes."""
    run = root / "run"
    tiny_gan_config(run).rename(run / "config_20260101-000000.yml")
    (run / "models").mkdir()
    options = RRDBNetOptions(nf=8, nb=1, gc=4)
    for step in (10, 20, 30):
        path = run / "models" / f"{step}_G_ema.pth"
        tiny_checkpoint(path, step, options)
        if step in (broken or {}):
            path.write_bytes((broken or {})[step])
    return run


def sweep_args(tool: str, tmp_path: Path) -> list[str]:
    if tool == "interpolate":
        tiny_checkpoint(tmp_path / "a.pth", 0)
        tiny_checkpoint(tmp_path / "b.pth", 1)
        write_blocky_images(tmp_path / "gt", count=1, size=32)
        a, b, gt = (str(tmp_path / name) for name in ("a.pth", "b.pth", "gt"))
        return ["--a", a, "--b", b, "--sweep", "0:1:1", "--gt", gt, "--metrics", "psnr_y"]
    return [str(fake_run(tmp_path)), "--metrics", "psnr_y"]


TOOLS = {"interpolate": interpolate.main, "sweep_checkpoints": sweep_checkpoints.main}


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--device", "foo"], "--device: expected cpu or cuda, got 'foo'"),
        (["--device", "cuda:99"], "--device cuda:99: this machine has"),
        (["--tile", "8"], "--tile: expected auto, 0 or a size of at least 16, got 8"),
        (["--tile", "-16"], "--tile: expected auto, 0 or a size of at least 16, got -16"),
        (["--metrics", ""], "--metrics: expected comma-separated metric names, got ''"),
        (["--out", "{file}"], "--out {file}: expected a folder for the results, found a file"),
    ],
)
def test_scoring_flags_are_checked_in_one_line_before_anything_is_scored(
    tmp_path, logs, monkeypatch, tool, flags, expected
):
    (tmp_path / "afile").write_text("")
    args = sweep_args(tool, tmp_path) + [f.replace("{file}", str(tmp_path / "afile")) for f in flags]
    monkeypatch.setattr("esrforge.inference.sweeps.score_set", pytest.fail)  # nothing may be scored
    assert run_program(lambda: TOOLS[tool](args)) == 2
    assert logs.records[-1].getMessage().startswith(expected.replace("{file}", str(tmp_path / "afile")))


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize(
    ("flags", "tile"), [([], 512), (["--tile", "0"], None), (["--tile", "auto"], "auto")]
)
def test_scoring_uses_the_tile_flag_else_the_sets_tile_size(tmp_path, monkeypatch, tool, flags, tile):
    from esrforge.inference import sweeps

    tiles = []

    def spy(*args, **kwargs):
        tiles.append(args[4])
        return score_set(*args, **kwargs)

    monkeypatch.setattr(sweeps, "score_set", spy)
    out = ["--out", str(tmp_path / "out"), "--device", "cpu"]
    assert run_program(lambda: TOOLS[tool]([*sweep_args(tool, tmp_path), *out, *flags])) == 0
    assert tiles and set(tiles) == {tile}


def test_a_checkpoint_that_does_not_fit_or_read_is_skipped_with_a_warning(tmp_path, logs):
    x2 = tmp_path / "x2.pth"
    tiny_checkpoint(x2, 0, TINY)
    run = fake_run(tmp_path, broken={20: x2.read_bytes(), 30: b"PK\x03\x04 torn"})
    scored = [str(run), "--metrics", "psnr_y", "--device", "cpu"]
    assert run_program(lambda: sweep_checkpoints.main(scored)) == 0
    rows = list(csv.DictReader((run / "sweep" / "checkpoints.csv").open()))
    assert [r["step"] for r in rows] == ["10"]
    warnings = [r.getMessage() for r in logs.records if r.levelname == "WARNING"]
    assert any(f"{run / 'models' / '20_G_ema.pth'}: checkpoint does not" in w for w in warnings)
    assert any(str(run / "models" / "30_G_ema.pth") in w for w in warnings)
    (run / "models" / "10_G_ema.pth").write_bytes(b"")
    assert run_program(lambda: sweep_checkpoints.main([str(run), "--metrics", "psnr_y"])) == 2
    assert "none of the 3 checkpoints could be loaded" in logs.records[-1].getMessage()
    for every in ("0", "-3"):
        assert run_program(lambda e=every: sweep_checkpoints.main([str(run), "--every", e])) == 2
        assert logs.records[-1].getMessage() == f"--every: expected 1 or more, got {every}"


def test_alphas_must_be_finite_and_few_and_extrapolation_warns(tmp_path, logs):
    tiny_checkpoint(tmp_path / "a.pth", 0)
    tiny_checkpoint(tmp_path / "b.pth", 1)
    ab = ["--a", str(tmp_path / "a.pth"), "--b", str(tmp_path / "b.pth")]
    out = tmp_path / "o.pth"
    assert run_program(lambda: interpolate.main([*ab, "--alpha", "nan", "--output", str(out)])) == 2
    assert logs.records[-1].getMessage() == "--alpha nan: expected finite numbers" and not out.exists()
    assert run_program(lambda: interpolate.main([*ab, "--alpha", "1.5", "--output", str(out)])) == 0
    assert "--alpha 1.5: alphas below 0 or above 1 extrapolate" in logs.text and out.exists()
    for text, message in [
        ("0:inf:0.1", "expected finite numbers"),
        ("nan:1:0.1", "expected finite numbers"),
        ("0:1:1e-12", "expected at most 1000 alphas"),
        ("-1e308:1e308:1e-300", "expected at most 1000 alphas"),
    ]:
        with pytest.raises(ValueError, match=re.escape(f"--sweep {text}: {message}")):
            interpolate.alphas(text)
    logs.clear()
    assert interpolate.alphas("-1:2:1") == [-1, 0, 1, 2]
    assert "--sweep -1:2:1: alphas below 0 or above 1 extrapolate" in logs.text
