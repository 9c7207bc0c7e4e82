"""The DLAS corruptions (degradations/dlas.py) and the video codec round trip (degradations/video.py)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from kornia.color import rgb_to_hsv

from conftest import CUDA
from esrforge.degradations import DegradationSection, SampleRandom, build_degradation
from esrforge.degradations.base import Degradation
from esrforge.degradations.dlas import motion_kernel
from esrforge.degradations.noise import to_grey
from esrforge.fields.errors import OptionError
from esrforge.options.loader import load_typed

CPU = torch.device("cpu")
OPS = [
    "color_quantization",
    "motion_blur",
    "resampling",
    "saturation",
    "color_jitter",
    "greyscale",
    "video_codec",
]
RANDOM_OPS = [op for op in OPS if op != "greyscale"]


def section(**op: Any) -> DegradationSection:
    return load_typed(DegradationSection, {"ops": [op]}, "test", Path())


def build(**op: Any) -> Degradation[Any]:
    return build_degradation(section(**op).ops[0])


def rng_of(image: torch.Tensor, key: tuple[int, ...] = (0, 1, 2)) -> SampleRandom:
    return SampleRandom.seeded(key, image.device, (image.shape[-2], image.shape[-1]), 4)


def run(op: Degradation[Any], image: torch.Tensor, key: tuple[int, ...] = (0, 1, 2)) -> torch.Tensor:
    return op.apply(image, rng_of(image, key))


def colourful(height: int = 48, width: int = 48, device: torch.device = CPU) -> torch.Tensor:
    """Smooth hues at moderate saturation with some texture: an image every op visibly changes."""
    y = torch.linspace(0, 1, height, device=device)[:, None]
    x = torch.linspace(0, 1, width, device=device)[None]
    texture = 0.1 * torch.sin(x * 40) * torch.cos(y * 30)
    channels = [0.5 + 0.3 * torch.sin(2 * math.pi * (x + y) + phase) + texture for phase in (0.0, 2.1, 4.2)]
    return torch.stack(channels)[None].clamp(0, 1)


def smooth(height: int = 64, width: int = 64) -> torch.Tensor:
    """A gentle colour gradient, which a codec at a low CRF keeps nearly exactly."""
    y = torch.linspace(0, 1, height)[:, None]
    x = torch.linspace(0, 1, width)[None]
    return torch.stack([0.2 + 0.6 * x + 0 * y, 0.3 + 0.4 * y + 0 * x, 0.5 + 0.2 * (x - y)])[None]


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / ((a - b) ** 2).mean()))


# --- colour quantization ------------------------------------------------------------------------


def test_color_quantization_output_is_multiples_of_the_drawn_step():
    image = colourful()
    op = build(type="color_quantization")
    seen = set()
    for sample in range(12):
        rng = rng_of(image, (0, 0, sample))
        out = op.apply(image, rng)
        step = rng.record[0][1]["step"]
        seen.add(step)
        levels = out * 255
        assert torch.allclose(levels, levels.round(), atol=1e-3)
        assert (levels.round().long() % step == 0).all()
        # Floored: never above the input's level, less than one step below it.
        original = (image * 255).round()
        assert (levels.round() <= original).all() and (original - levels.round() < step).all()
    assert seen == {4, 8, 16}


def test_color_quantization_of_exact_levels():
    # 128 / 255 * 255 is 127.99999 in float32: it must stay 128 with step 16, not drop to 112.
    image = torch.tensor([0, 15, 16, 128, 255], dtype=torch.float32).view(1, 1, 1, 5) / 255
    out = run(build(type="color_quantization", steps=[16]), image)
    assert (out * 255).round().flatten().tolist() == [0, 0, 16, 128, 240]


# --- motion blur --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "angle"), [(0.0, 0.0), (1.0, 30.0), (3.0, 0.0), (4.5, 77.0), (9.0, 135.0)]
)
def test_motion_kernel_is_normalised_odd_and_symmetric(length, angle):
    kernel = motion_kernel(length, angle)
    assert kernel.shape[0] == kernel.shape[1] and kernel.shape[0] % 2 == 1
    assert kernel.shape[0] == 2 * math.ceil(length / 2) + 1
    assert kernel.sum().item() == pytest.approx(1.0, abs=1e-12)
    assert (kernel >= 0).all()
    assert torch.allclose(kernel, kernel.flip(0, 1), atol=1e-12)  # a line through the centre


def test_motion_kernel_direction_and_extent():
    assert motion_kernel(0.0, 40.0).tolist() == [[1.0]]
    horizontal = motion_kernel(4.0, 0.0)
    centre = horizontal.shape[0] // 2
    assert horizontal[centre].sum().item() == pytest.approx(1.0)  # all weight in the middle row
    assert (horizontal[centre] > 0).all()  # spread over the whole length
    vertical = motion_kernel(4.0, 90.0)
    assert torch.allclose(vertical, horizontal.T, atol=1e-9)
    # 45 degrees: rising to the right (rows grow downwards), along the anti-diagonal.
    diagonal = motion_kernel(6.0, 45.0)
    assert diagonal.flip(1).diagonal().sum() > 0.5 > diagonal.diagonal().sum() - diagonal[3, 3]


def test_motion_blur_keeps_a_constant_image_and_blurs_along_its_direction():
    constant = torch.full((1, 3, 32, 32), 0.37)
    op = build(type="motion_blur", length_range=[5, 9])
    assert torch.allclose(run(op, constant), constant, atol=1e-6)
    # Vertical stripes: a vertical line blur leaves them, a horizontal one smears them.
    stripes = (torch.arange(32) % 4 < 2).float().expand(1, 1, 32, 32).contiguous()
    along = run(build(type="motion_blur", length_range=[6, 6], angle_range=[90, 90]), stripes)
    across = run(build(type="motion_blur", length_range=[6, 6], angle_range=[0, 0]), stripes)
    assert torch.allclose(along, stripes, atol=1e-5)
    assert (across - stripes).abs().mean() > 0.2


# --- resampling ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(32, 32), (30, 45), (7, 5)])
def test_resampling_keeps_the_size_and_a_constant_image(size):
    op = build(type="resampling")
    constant = torch.full((1, 3, *size), 0.6)
    for sample in range(8):
        out = run(op, constant, (1, 2, sample))
        assert out.shape == constant.shape
        assert torch.allclose(out, constant, atol=1e-6)


def test_resampling_loses_the_detail_of_the_factor():
    image = colourful(32, 32)
    out = run(build(type="resampling", factors=[4], modes=["nearest"]), image)
    # Nearest down then nearest up: constant 4 x 4 blocks, each a pixel of the input.
    blocks = out.view(1, 3, 8, 4, 8, 4)
    assert torch.equal(blocks, blocks[:, :, :, :1, :, :1].expand_as(blocks))
    assert torch.equal(out[..., ::4, ::4], image[..., ::4, ::4])


# --- saturation and colour jitter ---------------------------------------------------------------


def mean_saturation(image: torch.Tensor) -> float:
    return float(rgb_to_hsv(image)[:, 1].mean())


def test_saturation_increases_saturation_and_keeps_grey_grey():
    image = colourful()
    image[..., :8, :] = 0.5  # a grey band
    op = build(type="saturation", amount_range=[0.1, 0.27])
    rng = rng_of(image)
    out = op.apply(image, rng)
    amount = rng.record[0][1]["amount"]
    assert 0.1 <= amount <= 0.27
    assert mean_saturation(out) > mean_saturation(image) + 0.02
    # Hue and value (the largest channel) are kept; grey stays grey.
    assert torch.allclose(out.amax(1), image.amax(1), atol=1e-5)
    assert torch.allclose(out[..., :8, :], image[..., :8, :], atol=1e-6)


def test_saturation_leaves_single_channel_images():
    grey = torch.rand(1, 1, 16, 16)
    assert torch.equal(run(build(type="saturation"), grey), grey)


def test_color_jitter_neutral_amounts_are_the_identity():
    image = colourful()
    neutral = build(
        type="color_jitter",
        brightness_range=[0, 0],
        contrast_range=[0, 0],
        saturation_range=[0, 0],
        hue_range=[0, 0],
    )
    assert torch.allclose(run(neutral, image), image, atol=1e-5)


def test_color_jitter_each_adjustment():
    image = colourful() * 0.8
    zero = {
        "brightness_range": [0, 0],
        "contrast_range": [0, 0],
        "saturation_range": [0, 0],
        "hue_range": [0, 0],
    }
    brighter = run(build(type="color_jitter", **{**zero, "brightness_range": [0.1, 0.1]}), image)
    assert torch.allclose(brighter, (image + 0.1).clamp(0, 1), atol=1e-6)
    flatter = run(build(type="color_jitter", **{**zero, "contrast_range": [-0.5, -0.5]}), image)
    assert flatter.std() == pytest.approx(0.5 * image.std().item(), rel=1e-3)
    assert flatter.mean() == pytest.approx(image.mean().item(), abs=0.02)
    hue = run(build(type="color_jitter", **{**zero, "hue_range": [0.25, 0.25]}), image)
    shift = (rgb_to_hsv(hue)[:, 0] - rgb_to_hsv(image)[:, 0]) % (2 * math.pi)
    assert shift.median().item() == pytest.approx(math.pi / 2, abs=1e-3)
    out = run(build(type="color_jitter"), image)
    assert out.min() >= 0 and out.max() <= 1 and not torch.allclose(out, image, atol=1e-3)


def test_color_jitter_single_channel():
    grey = torch.rand(1, 1, 16, 16)
    out = run(build(type="color_jitter", brightness_range=[0.05, 0.05]), grey)
    assert out.shape == grey.shape and not torch.equal(out, grey)


# --- greyscale ----------------------------------------------------------------------------------


def test_greyscale_is_the_luma_in_every_channel():
    image = colourful()
    out = run(build(type="greyscale"), image)
    assert out.shape == image.shape
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])
    assert torch.allclose(out[:, :1], to_grey(image))
    grey = torch.rand(1, 1, 8, 8)
    assert torch.equal(run(build(type="greyscale"), grey), grey)


# --- video codec --------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["libx264", "libx265"])
def test_video_codec_quality_follows_the_crf(codec):
    image = smooth()
    good = run(build(type="video_codec", codecs=[codec], crf_range=[18, 18]), image)
    bad = run(build(type="video_codec", codecs=[codec], crf_range=[45, 45]), image)
    assert good.shape == image.shape and good.dtype == image.dtype
    assert psnr(good, image) > 35
    assert psnr(bad, image) < psnr(good, image) - 1
    textured = colourful(64, 64)
    assert psnr(run(build(type="video_codec", codecs=[codec], crf_range=[40, 40]), textured), textured) < 40


@pytest.mark.parametrize("codec", ["libx264", "libx265"])
@pytest.mark.parametrize(
    "shape", [(1, 3, 16, 16), (1, 3, 24, 40), (1, 3, 17, 23), (1, 1, 24, 40), (1, 1, 9, 5)]
)
def test_video_codec_keeps_odd_small_and_grey_shapes(codec, shape, capfd):
    image = smooth(*shape[2:])[:, : shape[1]]
    out = run(build(type="video_codec", codecs=[codec], crf_range=[20, 20]), image)
    assert out.shape == image.shape
    assert out.min() >= 0 and out.max() <= 1
    error = (out - image).abs().mean()
    assert error < 0.02  # the picture itself, not one cropped from the wrong corner
    assert error < (out - image.flip(-1, -2)).abs().mean() / 3
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""  # x265 (and x264) print nothing


def test_video_codec_draws_codec_and_crf():
    op = build(type="video_codec", codecs=["libx264", "libx265"], crf_range=[20, 23])
    image = smooth(32, 32)
    drawn = set()
    for sample in range(16):
        rng = rng_of(image, (5, 0, sample))
        op.apply(image, rng)
        name, values = rng.record[0]
        assert name == "video_codec" and isinstance(values["crf"], int)
        drawn.add((values["codec"], values["crf"]))
    assert {codec for codec, _ in drawn} == {"libx264", "libx265"}
    assert {crf for _, crf in drawn} <= {20, 21, 22, 23} and len({crf for _, crf in drawn}) >= 3


# --- shared behaviour ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", OPS)
def test_probability(name):
    image = colourful(32, 32)
    never = build(type=name, probability=0.0)
    assert never(image, rng_of(image)) is image
    always = build(type=name, probability=1.0)
    out = always(image, rng_of(image))
    assert out.shape == image.shape and out.dtype == image.dtype
    assert out.min() >= 0 and out.max() <= 1
    assert not torch.allclose(out, image, atol=1e-4)


@pytest.mark.parametrize("name", RANDOM_OPS)
def test_same_key_same_output_other_key_other_draws(name):
    image = colourful(32, 32)
    op = build(type=name)
    first, second = rng_of(image, (3, 0, 7)), rng_of(image, (3, 0, 7))
    assert torch.equal(op(image, first), op(image, second))
    assert first.record == second.record
    records = []
    for sample in range(6):
        rng = rng_of(image, (3, 0, sample))
        op(image, rng)
        records.append(rng.record)
    assert len({repr(r) for r in records}) > 1


@pytest.mark.parametrize(
    ("op", "key"),
    [
        ({"type": "video_codec", "crf_range": [40, 10]}, "crf_range"),
        ({"type": "video_codec", "crf_range": [18, 60]}, "crf_range"),
        ({"type": "video_codec", "codecs": []}, "codecs"),
        ({"type": "video_codec", "codecs": ["libvpx"]}, "codecs[0]"),
        ({"type": "video_codec", "preset": "quick"}, "preset"),
        ({"type": "color_quantization", "steps": []}, "steps"),
        ({"type": "color_quantization", "steps": [0, 8]}, "steps"),
        ({"type": "motion_blur", "length_range": [-1, 3]}, "length_range"),
        ({"type": "resampling", "factors": [0]}, "factors"),
        ({"type": "resampling", "modes": ["lanczos"]}, "modes[0]"),
        ({"type": "saturation", "amount_range": [0.3, 0.1]}, "amount_range"),
        ({"type": "color_jitter", "hue_range": [-0.7, 0.1]}, "hue_range"),
        ({"type": "greyscale", "probability": 1.5}, "probability"),
        ({"type": "greyscale", "amount": 1}, "amount"),
    ],
)
def test_invalid_options_name_the_key(op, key):
    with pytest.raises(OptionError) as info:
        section(**op)
    assert info.value.key == f"ops[0].{key}"
    assert f"ops[0].{key}" in str(info.value)


@CUDA
@pytest.mark.parametrize("name", OPS)
def test_ops_on_cuda_match_the_cpu(name):
    image = colourful(32, 32)
    op = build(type=name)
    on_cpu = run(op, image)
    on_gpu = run(op, image.cuda())
    assert on_gpu.device.type == "cuda" and on_gpu.shape == image.shape
    assert torch.allclose(on_gpu.cpu(), on_cpu, atol=1e-4)
