"""The Real-ESRGAN recipe end to end on the CPU: degradation engine, pool, USM targets, U-Net D,
and the validation LR made once with the pipeline."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
import yaml

from conftest import REPO, tiny_realesrgan_config, write_blocky_images
from esrforge.cli.common import run_program
from esrforge.cli.train import main
from esrforge.data.imageio import read_image
from esrforge.degradations.pipeline import UsmOptions, unsharp_mask
from esrforge.fields.errors import OptionError
from esrforge.losses.gan import GanLoss
from esrforge.losses.pixel import PixelLoss
from esrforge.options.loader import load_config
from esrforge.training.degraded_validation import degraded_validation


@pytest.mark.slow
def test_a_scaled_down_realesrgan_config_trains_20_steps_and_makes_its_validation_lr_once(tmp_path, caplog):
    config = tiny_realesrgan_config(tmp_path, niter=20)
    sparse = ["train.val_freq=10", "logger.save_checkpoint_freq=10"]  # the steps are what is tested here
    assert run_program(lambda: main(["-opt", str(config), "--set", *sparse])) == 0
    run = tmp_path / "experiments" / "run"
    for name in ("20_G.pth", "20_G_ema.pth", "20_D.pth"):
        assert (run / "models" / name).is_file(), name
    state = torch.load(run / "training_state" / "20.state", weights_only=True)
    assert len(state["pools"]) == 1 and state["pools"][0]["filled"] == 4
    log = (run / "train.log").read_text()
    for term in ("pixel", "perceptual", "gan", "d_gan"):
        assert f" {term} " in log, term
    lr = [read_image(run / "val_lq" / "val" / f"img{i}.png") for i in range(2)]
    assert all(image.shape == (16, 16, 3) and image.dtype.name == "uint8" for image in lr)
    record = json.loads((run / "val_lq" / "val" / "degradation.json").read_text())
    assert record["seed"] == 0 and record["degradation"]["queue_size"] == 4

    # A resumed run reuses the saved LR; other degradation settings make it again.
    before = (run / "val_lq" / "val" / "img0.png").read_bytes()
    caplog.clear()
    assert (
        run_program(lambda: main(["-opt", str(config), "--set", "train.niter=21", "path.resume_state=auto"]))
        == 0
    )
    assert "validation LR: reusing" in caplog.text
    assert (run / "val_lq" / "val" / "img0.png").read_bytes() == before
    changed = [
        "train.niter=22",
        "path.resume_state=auto",
        "datasets.train.degradation.ops[3].quality_range=[10,12]",
    ]
    assert run_program(lambda: main(["-opt", str(config), "--set", *changed])) == 0
    assert "made from other settings or images" in caplog.text
    assert (run / "val_lq" / "val" / "img0.png").read_bytes() != before


def test_gt_usm_losses_see_the_sharpened_hr_and_the_others_the_hr(tmp_path, monkeypatch):
    config = tiny_realesrgan_config(tmp_path, niter=1)
    seen: dict[str, torch.Tensor] = {}
    pixel, gan = PixelLoss.forward, GanLoss.discriminator_loss

    def pixel_forward(self, ctx):
        seen["pixel"] = ctx.real.detach().clone()
        return pixel(self, ctx)

    def d_loss(self, ctx):
        seen["d_real"] = ctx.real.detach().clone()
        return gan(self, ctx)

    monkeypatch.setattr(PixelLoss, "forward", pixel_forward)
    monkeypatch.setattr(GanLoss, "discriminator_loss", d_loss)
    assert run_program(lambda: main(["-opt", str(config), "--set", "train.val_freq=0"])) == 0
    torch.testing.assert_close(seen["pixel"], unsharp_mask(seen["d_real"], UsmOptions()))  # l1_gt_usm
    assert not torch.equal(seen["pixel"], seen["d_real"])  # gan_gt_usm false: D sees the plain HR


@pytest.mark.parametrize("name", ["train_realesrnet_x4", "train_realesrgan_x4", "finetune_realesrgan_x4"])
def test_shipped_real_esrgan_configs_load_with_real_esrgans_values(name):
    config = load_config(REPO / "options" / f"{name}.yml", check_paths=False)
    data, train = config.datasets.train, config.train
    assert data is not None and data.degradation is not None and train is not None
    assert (data.target_size, data.crop_size, data.batch_size, data.degradation.queue_size) == (
        256,
        400,
        12,
        180,
    )
    assert data.use_flip and not data.use_rot and train.ema_decay == 0.999
    degradation = data.degradation
    assert degradation.sharpen_input and (degradation.usm.radius, degradation.usm.weight) == (50, 0.5)
    blur, resize, noise, jpeg, blur2, resize2, noise2, final = degradation.ops
    for first, kernel in ((True, blur), (False, blur2)):
        assert kernel.kernel_sizes == list(range(7, 22, 2)) and kernel.sinc_prob == 0.1
        assert kernel.kernel_prob == [0.45, 0.25, 0.12, 0.03, 0.12, 0.03]
        assert (kernel.betag_range, kernel.betap_range) == ((0.5, 4.0), (1.0, 2.0))
        assert kernel.sigma_range == ((0.2, 3.0) if first else (0.2, 1.5))
    assert (blur.probability, blur2.probability) == (1.0, 0.8)
    assert (resize.updown_prob, resize.factor_range, resize.relative_to) == (
        (0.2, 0.7, 0.1),
        (0.15, 1.5),
        "input",
    )
    assert (resize2.updown_prob, resize2.factor_range, resize2.relative_to) == (
        (0.3, 0.4, 0.3),
        (0.3, 1.2),
        "output",
    )
    for group, sigma, poisson in ((noise, (1.0, 30.0), (0.05, 3.0)), (noise2, (1.0, 25.0), (0.05, 2.5))):
        gaussian, shot = group.ops
        assert group.weights == [0.5, 0.5] and (gaussian.sigma_range, shot.scale_range) == (sigma, poisson)
        assert gaussian.gray_prob == shot.gray_prob == 0.4
    back_and_sinc, jpeg2 = final.ops
    assert final.type == "random_order" and [o.type for o in back_and_sinc.ops] == [
        "resize_to_output",
        "sinc",
    ]
    assert back_and_sinc.ops[1].probability == 0.8 and back_and_sinc.ops[1].cutoff_range[0] == pytest.approx(
        math.pi / 3
    )
    assert jpeg.quality_range == jpeg2.quality_range == (30.0, 95.0)
    perceptual = (
        next(loss for loss in train.losses if loss.type == "perceptual")
        if name != "train_realesrnet_x4"
        else None
    )
    if perceptual is not None:
        assert perceptual.layer_weights == {
            "conv1_2": 0.1,
            "conv2_2": 0.1,
            "conv3_4": 1.0,
            "conv4_4": 1.0,
            "conv5_4": 1.0,
        }
        assert (
            perceptual.gt_usm
            and perceptual.weight == 1.0
            and train.step_order == ("generator", "discriminator")
        )
    assert all(loss.gt_usm for loss in train.losses if loss.type == "pixel")
    gan = [loss for loss in train.losses if loss.type == "gan"]
    if name == "train_realesrnet_x4":
        assert (train.lr_G, train.niter, train.lr_steps, gan) == (2e-4, 1000000, [1000000], [])
    else:
        assert (train.lr_G, train.lr_D, train.niter, train.lr_steps) == (1e-4, 1e-4, 400000, [400000])
        assert gan[0].weight == 0.1 and gan[0].noise == 0 and not gan[0].gt_usm
        assert config.networks.discriminator is not None
        assert config.networks.discriminator.type == "UNetDiscriminatorSN"


def test_degradation_settings_that_contradict_are_config_errors(tmp_path):
    config = tiny_realesrgan_config(tmp_path)
    raw = yaml.safe_load(config.read_text())
    cases = [
        ("datasets.train.dataroot_lq", {"dataroot_lq": "data"}),
        (
            "datasets.train.degradation.patch_size",
            {"degradation": {**raw["datasets"]["train"]["degradation"], "patch_size": 50}},
        ),
        (
            "datasets.train.degradation.patch_size",
            {"degradation": {**raw["datasets"]["train"]["degradation"], "patch_size": 16}},
        ),
    ]
    for key, change in cases:
        broken = yaml.safe_load(yaml.safe_dump(raw))
        broken["datasets"]["train"].update(change)
        config.write_text(yaml.safe_dump(broken))
        with pytest.raises(OptionError) as caught:
            load_config(config)
        assert caught.value.key == key, str(caught.value)
    broken = yaml.safe_load(yaml.safe_dump(raw))
    broken["datasets"]["train"]["degradation"] = None
    config.write_text(yaml.safe_dump(broken))
    with pytest.raises(OptionError, match=r"needs datasets\.train\.degradation"):
        load_config(config)


def test_preview_writes_hr_beside_lr_and_logs_each_samples_draws(tmp_path, caplog):
    from esrforge.cli import preview_degradations

    config = tiny_realesrgan_config(tmp_path)
    out = tmp_path / "preview"
    args = ["-opt", str(config), "--count", "5", "--output", str(out)]
    assert run_program(lambda: preview_degradations.main(args)) == 0
    picture = read_image(out / "degradations.png")
    assert picture.shape == (2 * 32 + 4, 4 * (2 * 32 + 4) + 3 * 4, 3)  # 2 rows of 4 HR | LR pairs, 4 px gaps
    lines = [line for line in caplog.text.splitlines() if "sample " in line]
    assert len(lines) == 5 and all("resize_to_output" in line for line in lines)
    assert not torch.equal(torch.from_numpy(picture[:32, :32]), torch.from_numpy(picture[:32, 36:68]))
    no_degradation = [
        "-opt",
        str(config),
        "--set",
        "datasets.train.degradation=null",
        "datasets.val.degrade=false",
    ]
    assert run_program(lambda: preview_degradations.main(no_degradation)) == 2
    assert "has none to preview" in caplog.text


def test_the_dry_run_says_how_the_lr_is_made(tmp_path, caplog):
    config = tiny_realesrgan_config(tmp_path)
    assert run_program(lambda: main(["-opt", str(config), "--dry-run"])) == 0
    assert "LR made on the training device by 8 operations (blur, resize, one_of, jpeg," in caplog.text
    assert "from 48 px HR patches, cut to 32 / 8 px, a pool of 4 pairs" in caplog.text


def test_validation_lr_is_made_again_when_the_images_change(tmp_path, caplog):
    config = load_config(tiny_realesrgan_config(tmp_path))
    train_data, val = config.datasets.train, config.datasets.val
    assert train_data is not None and val is not None
    folder = tmp_path / "val_lq"

    def make(options):
        return degraded_validation(options, train_data, 4, 0, folder, torch.device("cpu"))

    paired = make(val)
    assert paired.dataroot_lq == folder and not paired.degrade
    assert sorted(p.name for p in folder.glob("*.png")) == ["img0.png", "img1.png"]
    first = (folder / "img0.png").read_bytes()
    caplog.clear()
    make(val)
    assert "reusing" in caplog.text
    write_blocky_images(tmp_path / "other", count=2, size=48)
    make(dataclasses.replace(val, dataroot=tmp_path / "other"))
    assert "made from other settings or images" in caplog.text
    assert (folder / "img0.png").read_bytes() != first
    assert read_image(folder / "img0.png").shape == (12, 12, 3)
