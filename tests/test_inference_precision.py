"""The precision inference runs in: half precision checked on a probe, autocast where a cast network
fails, float32 where neither runs, and float32 for images of more than 8 bits beside automatic bf16."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from esrforge.cli.common import run_program
from esrforge.cli.test import main
from esrforge.data.imageio import read_image, write_image
from esrforge.inference.precision import ComputePrecision, choose_precision, probe_size
from esrforge.networks import Description, RRDBNet, RRDBNetOptions
from esrforge.options.model import ModelConfig

CPU = torch.device("cpu")
DESCRIPTION = Description("Probe", 2, 3, 3)


class SwinLike(nn.Module):
    """Like spandrel's Swin networks: at its training size (square 64) it uses a mask in the input's
    dtype; at any other size it builds one in float32, which a bf16-cast network cannot multiply."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        dtype = x.dtype if x.shape[-2:] == (64, 64) else torch.float32
        mask = torch.eye(x.shape[-1], dtype=dtype, device=x.device)
        return F.interpolate(self.conv(x) @ mask, scale_factor=2)


class Float32Only(nn.Module):
    """Refuses to run in anything but float32."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype != torch.float32 or torch.is_autocast_enabled("cpu"):
            raise RuntimeError("float32 only")
        return F.interpolate(self.conv(x), scale_factor=2)


def test_the_probe_is_not_square():
    height, width = probe_size(DESCRIPTION)
    assert height != width and height >= 64


def test_a_network_that_fails_cast_to_bf16_runs_under_autocast(monkeypatch, logs):
    model = SwinLike().eval()
    bf16 = ModelConfig(bf16=True, gpu_ids=[])
    assert choose_precision(bf16, model, DESCRIPTION, CPU) == ComputePrecision(torch.bfloat16, autocast=True)
    assert "bf16 (autocast): " in logs.text and "dB PSNR from fp32 on a probe image" in logs.text
    monkeypatch.setattr("esrforge.inference.precision.cpu_has_bf16", lambda: True)
    assert choose_precision(ModelConfig(gpu_ids=[]), model, DESCRIPTION, CPU) == ComputePrecision(
        torch.bfloat16, autocast=True, automatic=True
    )


def test_a_network_that_runs_in_no_half_precision_stays_in_fp32(monkeypatch, logs):
    model = Float32Only().eval()
    assert choose_precision(ModelConfig(bf16=True, gpu_ids=[]), model, DESCRIPTION, CPU) == ComputePrecision()
    assert "Probe fails in bf16 on a probe image: running in fp32" in logs.text
    monkeypatch.setattr("esrforge.inference.precision.cpu_has_bf16", lambda: True)
    assert choose_precision(ModelConfig(gpu_ids=[]), model, DESCRIPTION, CPU) == ComputePrecision()
    assert "fp32: Probe does not run in bf16 on this CPU" in logs.text


def test_sixteen_bit_images_run_in_fp32_beside_automatic_bf16(tmp_path: Path, monkeypatch, logs):
    torch.manual_seed(0)
    model = tmp_path / "x4.pth"
    torch.save(RRDBNet(RRDBNetOptions(nf=8, nb=1, gc=4)).state_dict(), model)
    rng = np.random.default_rng(0)
    write_image(tmp_path / "in" / "deep.png", rng.integers(0, 65536, (20, 24, 3), dtype=np.uint16))
    write_image(tmp_path / "in" / "flat.png", rng.integers(0, 256, (20, 24, 3), dtype=np.uint8))

    def upscale(out: str, *flags: str) -> dict[str, np.ndarray]:
        argv = ["--model", str(model), "--input", str(tmp_path / "in"), "-o", str(tmp_path / out), *flags]
        assert run_program(lambda: main(argv)) == 0
        return {name: read_image(tmp_path / out / f"{name}_x4.png") for name in ("deep", "flat")}

    monkeypatch.setattr("esrforge.inference.precision.cpu_has_bf16", lambda: True)
    automatic, fp32, bf16 = upscale("auto"), upscale("fp32", "--fp32"), upscale("bf16", "--bf16")
    assert "images and frames of more than 8 bits run in fp32" in logs.text
    assert automatic["deep"].dtype == np.uint16 and np.array_equal(automatic["deep"], fp32["deep"])
    assert not np.array_equal(bf16["deep"], fp32["deep"])  # what automatic bf16 would have lost
    assert np.array_equal(automatic["flat"], bf16["flat"])


@pytest.mark.parametrize("channels", [1, 4])
def test_a_model_that_is_not_rgb_is_refused_in_one_line(tmp_path: Path, channels: int, logs):
    model = tmp_path / "grey.pth"
    torch.save(RRDBNet(RRDBNetOptions(in_nc=channels, out_nc=channels, nf=8, nb=1, gc=4)).state_dict(), model)
    write_image(tmp_path / "a.png", np.zeros((8, 8), np.uint8))
    argv = ["--model", str(model), "--input", str(tmp_path / "a.png"), "-o", str(tmp_path / "out")]
    assert run_program(lambda: main(argv)) == 2
    errors = [r.getMessage() for r in logs.records if r.levelno == logging.ERROR]
    assert errors == [
        f"{model}: a {channels} -> {channels} channel RRDBNet; test.py and process_video.py run RGB models "
        "(3 -> 3 channels)"
    ]
    assert not (tmp_path / "out").exists()
