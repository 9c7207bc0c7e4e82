"""Community models: spandrel's architectures through test.py bit for bit, Compact checkpoints, fine-tuning."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file
from spandrel import ModelLoader
from spandrel.architectures.Compact import Compact
from spandrel.architectures.SPAN import SPAN
from spandrel.architectures.SwinIR import SwinIR
from torch import nn

from conftest import tiny_gan_config, tiny_realesrgan_config
from esrforge.cli.common import run_program
from esrforge.cli.inspect_model import main as inspect_main
from esrforge.cli.test import main as upscale_main
from esrforge.cli.train import main as train_main
from esrforge.data.imageio import read_image, write_image
from esrforge.fields.convert import Resolver, convert
from esrforge.networks import (
    NetworkOptions,
    RRDBNet,
    RRDBNetOptions,
    SpandrelOptions,
    SRVGGNetCompact,
    SRVGGNetCompactOptions,
    load_generator,
    recognise,
)
from esrforge.networks.saved import save_generator


def swinir() -> nn.Module:
    return SwinIR(
        img_size=16,
        embed_dim=12,
        depths=[1],
        num_heads=[2],
        window_size=4,
        upscale=2,
        upsampler="pixelshuffle",
    )


MODELS = {
    "SwinIR-x2": swinir,
    "SPAN-x4": lambda: SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=4),
    "SPAN-x3": lambda: SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=3),
    "Compact-x3": lambda: Compact(num_feat=8, num_conv=2, upscale=3),
}


def write_test_config(root: Path, model: Path) -> Path:
    image = np.random.default_rng(0).integers(0, 256, (22, 30, 3), dtype=np.uint8)
    write_image(root / "in" / "a.png", image)
    raw: dict[str, Any] = {
        "name": "foreign",
        "gpu_ids": [],
        "channels_last": False,  # a direct forward runs contiguous; channels_last convolutions round differently
        "datasets": {"test": {"dataroot": "in"}},
        "path": {"pretrain_model_generator": str(model), "output": "out"},
        "inference": {"tile_size": None, "suffix": ""},
    }
    path = root / "test.yml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("name", list(MODELS))
def test_test_py_output_equals_a_direct_spandrel_forward_bit_for_bit(tmp_path: Path, name: str) -> None:
    torch.manual_seed(0)
    original = MODELS[name]()
    model = tmp_path / "model.pth"
    torch.save({"params_ema": original.state_dict()}, model)  # the original key names, as they ship
    assert run_program(lambda: upscale_main(["-opt", str(write_test_config(tmp_path, model))])) == 0
    ours = read_image(tmp_path / "out" / "a.png")

    descriptor = ModelLoader().load_from_state_dict(original.state_dict())
    image = torch.from_numpy(read_image(tmp_path / "in" / "a.png")).permute(2, 0, 1)[None].float() / 255
    expected = descriptor(image)[0].permute(1, 2, 0).mul(255).round().to(torch.uint8).numpy()
    assert ours.shape == expected.shape == (22 * descriptor.scale, 30 * descriptor.scale, 3)
    np.testing.assert_array_equal(ours, expected)


def test_compact_checkpoints_load_strictly_into_ours_with_basicsr_keys(tmp_path: Path) -> None:
    """realesr-general-x4v3's layout (64 features, 32 convs, x4), read from a safetensors file."""
    torch.manual_seed(0)
    theirs = Compact(num_feat=64, num_conv=32, upscale=4).eval()
    save_file(theirs.state_dict(), tmp_path / "realesr-general-x4v3.safetensors")
    loaded = load_generator(tmp_path / "realesr-general-x4v3.safetensors")
    assert isinstance(loaded.module, SRVGGNetCompact)
    assert loaded.options == SRVGGNetCompactOptions(num_feat=64, num_conv=32, upscale=4)
    assert list(loaded.module.state_dict()) == list(theirs.state_dict())
    x = torch.rand(1, 3, 12, 10)
    with torch.no_grad():
        assert torch.equal(loaded.module(x), theirs(x))


def test_a_spandrel_model_loaded_knows_how_to_build_itself_again(tmp_path: Path) -> None:
    torch.manual_seed(0)
    loaded = recognise(swinir().state_dict(), tmp_path / "swinir.pth")
    assert isinstance(loaded.options, SpandrelOptions) and loaded.options.arch == "SwinIR"
    assert loaded.options.params["embed_dim"] == 12 and loaded.options.params["upscale"] == 2
    assert loaded.description.scale == 2 and loaded.description.tiling == "discouraged"
    assert loaded.options.describe() == loaded.description


def test_a_model_nobody_knows_is_one_line_naming_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "mystery.pth"
    torch.save({"encoder.weight": torch.zeros(4, 4), "decoder.bias": torch.zeros(4)}, path)
    config = write_test_config(tmp_path, path)
    assert run_program(lambda: upscale_main(["-opt", str(config)])) == 2
    line = next(r.getMessage() for r in caplog.records if r.levelname == "ERROR")
    assert str(path) in line and "not a model esrforge or spandrel recognises" in line and "\n" not in line


def test_spandrel_params_are_checked_like_our_options(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = tiny_gan_config(tmp_path, niter=2)
    generator = "networks.generator={type: spandrel, arch: SPAN, params: {num_in_ch: 3, num_out_ch: 3, feature_channel: 8}}"
    assert run_program(lambda: train_main(["-opt", str(config), "--dry-run", "--set", generator])) == 2
    assert (
        "networks.generator.params.feature_channel: unknown key; did you mean 'feature_channels'?"
        in caplog.text
    )
    wrong = (
        "networks.generator={type: spandrel, arch: SPAN, params: {num_in_ch: 3, num_out_ch: 3, upscale: 2}}"
    )
    assert run_program(lambda: train_main(["-opt", str(config), "--dry-run", "--set", wrong])) == 2
    assert "networks.generator: expected a x4 network (the top-level scale), got 'x2'" in caplog.text


def test_the_shipped_compact_video_config_trains_scaled_down_with_its_video_codec_stage(
    tmp_path: Path,
) -> None:
    config = tiny_realesrgan_config(tmp_path, niter=3, name="train_compact_video_x4")
    raw = yaml.safe_load(config.read_text())
    final = raw["datasets"]["train"]["degradation"]["ops"][-1]["ops"][1]
    assert [op["type"] for op in final["ops"]] == ["jpeg", "video_codec"]
    final["weights"] = [0.0, 1.0]  # every sample through the video codec
    config.write_text(yaml.safe_dump(raw))
    assert run_program(lambda: train_main(["-opt", str(config)])) == 0
    loaded = load_generator(tmp_path / "experiments" / "run" / "models" / "3_G.pth")
    assert isinstance(loaded.module, SRVGGNetCompact) and loaded.description.scale == 4


@pytest.mark.parametrize(
    ("recipe", "generator"),
    [
        ("esrgan", {"type": "SRVGGNetCompact", "num_feat": 8, "num_conv": 2}),
        ("esrgan-x3", {"type": "SRVGGNetCompact", "num_feat": 8, "num_conv": 2}),
        ("realesrgan", {"type": "SRVGGNetCompact", "num_feat": 8, "num_conv": 2}),
        (
            "esrgan",
            {
                "type": "spandrel",
                "arch": "SPAN",
                "params": {"num_in_ch": 3, "num_out_ch": 3, "feature_channels": 8},
            },
        ),
    ],
    ids=["compact-esrgan", "compact-x3-esrgan", "compact-realesrgan", "span-esrgan"],
)
def test_other_generators_train_with_both_gan_recipes_and_fine_tune(
    tmp_path: Path, recipe: str, generator: dict[str, Any]
) -> None:
    config = (tiny_realesrgan_config if recipe == "realesrgan" else tiny_gan_config)(tmp_path, niter=3)
    raw = yaml.safe_load(config.read_text())
    scale = 3 if recipe == "esrgan-x3" else 4
    raw.update(scale=scale)
    if scale == 3:  # the translational loss's 64 px window is not a multiple of 3: D sees whole 96 px tiles
        raw["train"]["losses"] = [loss for loss in raw["train"]["losses"] if loss["type"] != "translational"]
        raw["networks"]["discriminator"]["image_size"] = 96
    raw["networks"]["generator"] = generator
    raw["train"]["val_freq"] = 3
    config.write_text(yaml.safe_dump(raw))
    assert run_program(lambda: train_main(["-opt", str(config)])) == 0
    weights = tmp_path / "experiments" / "run" / "models" / "3_G.pth"
    loaded = load_generator(weights)  # test.py recognises what was trained, without a config
    assert loaded.description.scale == scale
    raw.update(name="tuned")
    raw["path"]["pretrain_model_generator"] = str(weights)
    config.write_text(yaml.safe_dump(raw))
    assert run_program(lambda: train_main(["-opt", str(config), "--set", "train.niter=1"])) == 0


def test_inspect_model_says_what_a_checkpoint_is_and_prints_the_section_that_rebuilds_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    torch.manual_seed(0)
    torch.save(MODELS["SPAN-x3"]().state_dict(), tmp_path / "span.pth")
    caplog.set_level(logging.INFO, logger="esrforge")
    assert run_program(lambda: inspect_main([str(tmp_path / "span.pth"), "--check"])) == 0
    assert "SPAN x3, 3 -> 3 channels" in caplog.text and "check: 192x192 -> 576x576" in caplog.text
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("  ")]
    section = yaml.safe_load("\n".join(line[2:] for line in lines))
    options = convert(
        NetworkOptions, section["networks"]["generator"], "networks.generator", Resolver(tmp_path)
    )
    assert options == load_generator(tmp_path / "span.pth").options


def test_a_precision_the_network_does_not_support_falls_back_to_fp32_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from esrforge.inference.precision import compute_dtype
    from esrforge.networks import Description
    from esrforge.options.model import ModelConfig

    caplog.set_level(logging.INFO, logger="esrforge")
    fp32_only = Description("Strict", 2, 3, 3, dtypes=(torch.float32,))
    bf16 = ModelConfig(bf16=True, gpu_ids=[])
    assert compute_dtype(bf16, torch.device("cpu"), fp32_only) == torch.float32
    assert "Strict does not run correctly in torch.bfloat16: running in fp32" in caplog.text
    assert compute_dtype(bf16, torch.device("cpu"), Description("Any", 2, 3, 3)) == torch.bfloat16


@pytest.mark.parametrize(("model", "key"), [("RRDBNet", "conv_last.bias"), ("SPAN-x4", "conv_1.conv.1.bias")])
def test_a_checkpoint_missing_a_tensor_is_one_line_naming_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, model: str, key: str
) -> None:
    torch.manual_seed(0)
    network = RRDBNet(RRDBNetOptions(nf=8, nb=1, gc=4)) if model == "RRDBNet" else MODELS[model]()
    state = network.state_dict()
    del state[key]  # spandrel still knows the architecture, and its loader raises on the gap
    path = tmp_path / "missing.pth"
    torch.save({"params_ema": state}, path)
    config = write_test_config(tmp_path, path)
    for run in (lambda: inspect_main([str(path)]), lambda: upscale_main(["-opt", str(config)])):
        caplog.clear()
        assert run_program(run) == 2
        line = next(r.getMessage() for r in caplog.records if r.levelname == "ERROR")
        assert line.startswith(str(path)) and "spandrel could not load it" in line and "\n" not in line


def test_inspect_model_describes_our_safetensors_with_their_origin_and_checks_4_channel_models(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="esrforge")
    options = RRDBNetOptions(nf=8, nb=1, gc=4)
    path = tmp_path / "ours.safetensors"
    save_generator(path, RRDBNet(options).state_dict(), options, step=30, config="tinyrun")
    assert run_program(lambda: inspect_main([str(path)])) == 0
    assert f"{path}: RRDBNet x4, 3 -> 3 channels" in caplog.text
    assert f"{path}: saved by esrforge at step 30, experiment tinyrun" in caplog.text
    rgba = RRDBNetOptions(in_nc=4, out_nc=4, nf=8, nb=1, gc=4, scale=2)
    torch.save(RRDBNet(rgba).state_dict(), tmp_path / "rgba.pth")
    assert run_program(lambda: inspect_main([str(tmp_path / "rgba.pth"), "--check"])) == 0
    assert "4 -> 4 channels" in caplog.text and "check: 192x192 -> 384x384" in caplog.text
