"""The degradation engine: each operation's statistics, kernels, sizes, probabilities and seeding."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from conftest import CUDA, REPO, tiny_realesrgan_config
from esrforge.cli import preview_degradations
from esrforge.cli.common import run_program
from esrforge.degradations import (
    DEGRADATIONS,
    DegradationSection,
    Degrader,
    SampleRandom,
    build_degradation,
    kernels,
)
from esrforge.degradations.blur import KERNEL_SIZES, Blur
from esrforge.degradations.jpeg import differentiable_jpeg, libjpeg
from esrforge.degradations.pipeline import PairPool, UsmOptions, unsharp_mask
from esrforge.fields.errors import OptionError
from esrforge.options.checks import check_config
from esrforge.options.loader import load_config_data, load_typed

CPU = torch.device("cpu")


def section(*ops: dict, **extra: object) -> DegradationSection:
    """A degradation section typed and checked by the config loader."""
    return load_typed(DegradationSection, {"ops": list(ops), **extra}, "test", Path())


def op_of(spec: dict):
    return build_degradation(section(spec).ops[0])


def rng_for(*key: int, size: tuple[int, int] = (64, 64), scale: int = 4) -> SampleRandom:
    return SampleRandom.seeded(key or (0,), CPU, size, scale)


def smooth_image(size: int = 64, channels: int = 3) -> torch.Tensor:
    """A smooth colourful gradient image ``1 x C x size x size`` in [0.2, 0.8]."""
    y, x = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    planes = [0.2 + 0.6 * x, 0.2 + 0.6 * y, 0.2 + 0.3 * (x + y)][:channels]
    return torch.stack(planes)[None]


@pytest.mark.parametrize(
    "family", ["iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso", "sinc"]
)
def test_blur_kernels_sum_to_one_and_have_the_drawn_size(family):
    sinc = 1.0 if family == "sinc" else 0.0
    families = ["iso"] if family == "sinc" else [family]
    blur = op_of({"type": "blur", "kernel_list": families, "kernel_prob": [1], "sinc_prob": sinc})
    assert isinstance(blur, Blur)
    for seed in range(5):
        rng = rng_for(seed)
        kernel = blur.draw_kernel(rng)
        drawn = rng.record[-1][1]
        assert drawn["family"] == family
        assert kernel.shape == (drawn["size"], drawn["size"])
        assert float(kernel.sum()) == pytest.approx(1.0, abs=1e-12)
        assert drawn["size"] in KERNEL_SIZES


def test_isotropic_gaussian_kernel_has_the_drawn_sigma():
    kernel = kernels.gaussian(21, 2.0, 2.0, 0.0)
    offsets = torch.arange(21, dtype=torch.float64) - 10
    variance_x = float((kernel.sum(0) * offsets**2).sum())
    assert math.sqrt(variance_x) == pytest.approx(2.0, rel=0.02)
    rotated = kernels.gaussian(21, 3.0, 1.0, math.pi / 2)
    assert float((rotated.sum(1) * offsets**2).sum()) == pytest.approx(9.0, rel=0.05)  # sigma_x along y


def test_sinc_kernel_passes_low_frequencies_and_cuts_high_ones():
    kernel = kernels.sinc(21, math.pi / 3)
    response = torch.fft.fft2(kernel, s=(64, 64)).abs()
    assert float(response[0, 0]) == pytest.approx(1.0, abs=1e-9)
    assert float(response[32, 32]) < 0.1  # the Nyquist corner is well above the cutoff


def test_filtering_keeps_constant_images_and_sizes():
    image = torch.full((1, 3, 30, 41), 0.4)
    for seed in range(3):
        out = op_of({"type": "blur"})(image, rng_for(seed))
        assert out.shape == image.shape
        torch.testing.assert_close(out, image)


@pytest.mark.parametrize("sigma", [5.0, 20.0])
def test_gaussian_noise_sigma_is_measured_back_within_ten_percent(sigma):
    noise = op_of({"type": "gaussian_noise", "sigma_range": [sigma, sigma], "gray_prob": 0})
    image = torch.full((1, 3, 128, 128), 0.5)
    rng = rng_for(1)
    measured = float((noise(image, rng) - image).std()) * 255
    assert measured == pytest.approx(sigma, rel=0.1)
    assert rng.record[-1] == ("gaussian_noise", {"sigma": sigma, "grey": False})


def test_grey_noise_is_the_same_in_every_channel_and_colour_noise_is_not():
    image = torch.full((1, 3, 32, 32), 0.5)
    for kind, extra in (("gaussian_noise", {"sigma_range": [10, 10]}), ("poisson_noise", {})):
        grey = op_of({"type": kind, "gray_prob": 1, **extra})(image, rng_for(2)) - image
        colour = op_of({"type": kind, "gray_prob": 0, **extra})(image, rng_for(2)) - image
        assert torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 1], grey[:, 2]), kind
        assert not torch.equal(colour[:, 0], colour[:, 1]), kind


def test_poisson_noise_variance_follows_the_signal_and_the_scale():
    scale = 2.0
    noise = op_of({"type": "poisson_noise", "scale_range": [scale, scale], "gray_prob": 0})
    levels = torch.arange(256, dtype=torch.float32).repeat(200)  # 256 levels: counts of 256
    image = (levels[torch.randperm(levels.numel(), generator=torch.Generator().manual_seed(0))] / 255).view(
        1, 1, 200, 256
    )
    bright = (image > 0.6)[:, 0]
    image = image.expand(1, 3, -1, -1).contiguous()
    delta = (noise(image, rng_for(3)) - image)[:, 0]
    expected = scale * math.sqrt(float(image[:, 0][bright].mean()) / 256)
    mask = bright & (image[:, 0] < 0.9)  # away from the clamp at 1
    assert float(delta[mask].std()) == pytest.approx(expected, rel=0.1)


def pil_jpeg(image: torch.Tensor, quality: int) -> torch.Tensor:
    pixels = (image[0] * 255).round().byte().permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality)
    return torch.from_numpy(np.array(Image.open(buffer))).permute(2, 0, 1)[None].float() / 255


@pytest.mark.parametrize("quality", [30, 60, 95])
def test_libjpeg_backend_equals_pillows_encode_at_the_drawn_quality(quality):
    image = (
        smooth_image(48) + 0.1 * torch.rand(1, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    ).clamp(0, 1)
    jpeg = op_of({"type": "jpeg", "quality_range": [quality, quality]})
    out = jpeg(image, rng_for(4))
    assert torch.equal(out, pil_jpeg(image, quality))
    assert libjpeg(image[:, :1], quality).shape == (1, 1, 48, 48)


def test_kornia_backend_is_close_to_libjpeg_and_differentiable():
    """Stated tolerance: mean absolute difference under 1.5 levels, PSNR to libjpeg above 38 dB."""
    image = (
        smooth_image(64) + 0.1 * torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    ).clamp(0, 1)
    for quality in (40, 90):
        reference = pil_jpeg(image, quality)
        out = differentiable_jpeg(image, float(quality))
        mean_levels = float((out - reference).abs().mean()) * 255
        psnr = -10 * math.log10(float(((out - reference) ** 2).mean()))
        assert mean_levels < 1.5 and psnr > 38, (quality, mean_levels, psnr)
    leaf = image.clone().requires_grad_(True)
    differentiable_jpeg(leaf, 50.0).sum().backward()
    assert leaf.grad is not None and float(leaf.grad.abs().sum()) > 0


def test_jpeg_preset_sets_the_quality_range():
    jpeg = op_of({"type": "jpeg", "preset": "jpeg-low"})
    for seed in range(10):
        rng = rng_for(seed)
        jpeg(smooth_image(16), rng)
        assert 15 <= rng.record[-1][1]["quality"] <= 24


def test_random_resize_sizes_follow_direction_and_order():
    image = smooth_image(64)
    first = op_of({"type": "resize", "updown_prob": [0, 1, 0], "factor_range": [0.5, 1.5]})
    for seed in range(5):
        out = first(image, rng_for(seed))
        assert 32 <= out.shape[-1] < 64 and out.shape[-2] == out.shape[-1]
    up = op_of({"type": "resize", "updown_prob": [1, 0, 0], "factor_range": [0.5, 1.5]})
    assert 64 <= up(image, rng_for(0)).shape[-1] <= 96
    second = op_of({"type": "resize", "updown_prob": [0, 0, 1], "relative_to": "output"})
    assert second(image, rng_for(0, size=(64, 64), scale=4)).shape[-2:] == (16, 16)
    back = op_of({"type": "resize_to_output"})
    assert back(smooth_image(40), rng_for(0, size=(96, 64), scale=4)).shape[-2:] == (24, 16)


def test_probability_zero_and_one_switch_an_operation_off_and_on():
    image = smooth_image(32)
    for spec in ({"type": "blur"}, {"type": "gaussian_noise"}, {"type": "jpeg"}, {"type": "sinc"}):
        assert op_of({**spec, "probability": 0.0})(image, rng_for(5)) is image
        assert not torch.equal(op_of({**spec, "probability": 1.0})(image, rng_for(5)), image), spec["type"]


OVERSHOOTING = {"blur", "sinc", "resize", "resize_to_output", "resampling"}
"""Leave [0, 1] on sharp edges, as in Real-ESRGAN (negative kernel lobes, bicubic); the next noise,
JPEG or the pipeline's end clamps."""


def test_every_registered_operation_keeps_range_and_is_reproducible_from_its_key():
    specs = {name: {"type": name} for name in DEGRADATIONS.names()}
    groups = [{"type": "gaussian_noise"}, {"type": "jpeg"}]
    for name in ("sequence", "one_of", "random_order"):
        specs[name]["ops"] = groups
    specs["resize"]["updown_prob"] = [1, 0, 0]  # bicubic up-sampling overshoots
    checks = torch.zeros(1, 3, 32, 32)
    checks[..., ::2, ::2] = checks[..., 1::2, 1::2] = 1.0  # 0/1 pixels: ringing and overshoot leave [0, 1]
    for name, spec in specs.items():
        op = op_of(spec)
        for seed in range(3):
            a = op(checks, rng_for(seed, size=(32, 32), scale=2))
            b = op(checks, rng_for(seed, size=(32, 32), scale=2))
            assert torch.equal(a, b), name
            assert bool(a.isfinite().all()), name
            if name not in OVERSHOOTING:
                assert float(a.min()) >= 0 and float(a.max()) <= 1, (name, seed)


def test_one_of_runs_exactly_one_and_random_order_draws_both_orders():
    one_of = op_of(
        {"type": "one_of", "weights": [1, 0], "ops": [{"type": "gaussian_noise"}, {"type": "jpeg"}]}
    )
    rng = rng_for(1)
    one_of(smooth_image(16), rng)
    assert [name for name, _ in rng.record] == ["gaussian_noise"]
    order = op_of({"type": "random_order", "ops": [{"type": "gaussian_noise"}, {"type": "jpeg"}]})
    seen = set()
    for seed in range(20):
        rng = rng_for(seed)
        order(smooth_image(16), rng)
        seen.add(tuple(rng.record[0][1]["order"]))
    assert seen == {(0, 1), (1, 0)}


def realesrgan_section(**extra: object) -> DegradationSection:
    """options/train_realesrgan_x4.yml's degradation section with ``extra`` changed."""
    raw = yaml.safe_load((REPO / "options" / "train_realesrgan_x4.yml").read_text())
    return load_typed(
        DegradationSection, {**raw["datasets"]["train"]["degradation"], **extra}, "test", Path()
    )


def test_the_realesrgan_pipeline_makes_lr_of_the_target_size_quantised_to_8_bits():
    degrader = Degrader(realesrgan_section(patch_size=64, queue_size=0), 4, 32, seed=0)
    hq = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    batch = degrader(hq, step=5)
    assert batch.lq.shape == (3, 3, 8, 8) and batch.hq.shape == (3, 3, 32, 32)
    assert float(batch.lq.min()) >= 0 and float(batch.lq.max()) <= 1
    assert torch.equal((batch.lq * 255).round() / 255, batch.lq)
    assert len(batch.drawn) == 3 and all(record for record in batch.drawn)


def test_each_sample_draws_from_its_own_key_whatever_batch_it_is_in():
    degrader = Degrader(realesrgan_section(patch_size=32, queue_size=0), 4, 32, seed=3, rank=1)
    hq = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    whole = degrader(hq, step=9).lq
    alone = degrader.degrade(hq[2:3], (3, 1, 9, 2))[0]
    assert torch.equal(whole[2:3], alone)
    assert not torch.equal(degrader(hq, step=10).lq, whole)  # another step draws anew
    other_rank = Degrader(realesrgan_section(patch_size=32, queue_size=0), 4, 32, seed=3, rank=0)
    assert not torch.equal(other_rank(hq, step=9).lq, whole)


def test_operations_that_miss_the_lr_size_get_a_one_line_error():
    degrader = Degrader(section({"type": "gaussian_noise"}), 4, 32, seed=0)
    with pytest.raises(ValueError, match=r"expected 8x8 .*resize_to_output"):
        degrader(torch.rand(1, 3, 32, 32), step=0)


def test_pair_pool_fills_then_exchanges_and_round_trips_its_state_exactly():
    pool = PairPool(4)
    generator = torch.Generator().manual_seed(0)
    batches = [
        (torch.full((2, 3, 2, 2), (i + 1) / 255), torch.full((2, 3, 8, 8), (i + 1) / 255)) for i in range(4)
    ]
    assert pool.exchange(*batches[0], generator)[0] is batches[0][0]  # filling: the batch goes through
    pool.exchange(*batches[1], generator)
    out_lq, out_hq = pool.exchange(*batches[2], generator)
    levels = (out_lq[:, 0, 0, 0] * 255).round().tolist()
    assert set(levels) <= {1.0, 2.0} and levels == (out_hq[:, 0, 0, 0] * 255).round().tolist()  # pairs kept
    assert sorted((pool.lq[:, 0, 0, 0] * 255).round().tolist()).count(3.0) == 2  # the batch went in
    state = pool.state_dict()
    assert state["lq"]["uint16_bytes"].dtype == torch.uint8  # 16-bit levels, 2 bytes a value
    copy = PairPool(4)
    copy.load_state_dict(state, CPU)
    assert torch.equal(copy.lq, pool.lq) and torch.equal(copy.hq, pool.hq) and copy.filled == pool.filled
    with pytest.raises(ValueError, match=r"multiple of datasets\.train\.batch_size 3"):
        PairPool(4).exchange(torch.zeros(3, 3, 2, 2), torch.zeros(3, 3, 8, 8), generator)


def test_a_pool_of_other_settings_is_refilled_with_a_warning(caplog):
    pool = PairPool(4)
    generator = torch.Generator().manual_seed(0)
    for _ in range(2):
        pool.exchange(torch.rand(2, 3, 2, 2), torch.rand(2, 3, 8, 8), generator)
    bigger = PairPool(6)
    bigger.load_state_dict(pool.state_dict(), CPU)
    assert bigger.filled == 0 and "queue_size is 6: the pool fills again" in caplog.text
    lq = torch.rand(2, 3, 4, 4)
    assert pool.exchange(lq, torch.rand(2, 3, 16, 16), generator)[0] is lq  # another patch size: refilling
    assert pool.filled == 2 and "the pool fills again" in caplog.text


def test_random_resize_of_a_tiny_image_keeps_at_least_one_pixel():
    down = op_of({"type": "resize", "updown_prob": [0, 1, 0], "factor_range": [0.15, 1.5]})
    assert down(torch.rand(1, 3, 1, 1), rng_for(0)).shape[-2:] == (1, 1)


def test_unsharp_mask_sharpens_edges_and_leaves_flat_areas():
    image = torch.full((1, 3, 64, 64), 0.3)
    image[..., 32:] = 0.7
    sharp = unsharp_mask(image, UsmOptions())
    assert float(sharp[..., 34].mean()) > 0.7 and float(sharp[..., 29].mean()) < 0.3  # overshoot at the edge
    flat = torch.full((1, 3, 64, 64), 0.5)
    torch.testing.assert_close(unsharp_mask(flat, UsmOptions()), flat)


@pytest.mark.parametrize(
    ("ops", "key"),
    [
        ([{"type": "blur", "kernel_sizes": [4]}], "ops[0].kernel_sizes"),
        ([{"type": "blur", "kernel_prob": [1, 2]}], "ops[0].kernel_prob"),
        ([{"type": "resize", "factor_range": [1.2, 1.5]}], "ops[0].factor_range"),
        ([{"type": "jpeg", "quality_range": [90, 10]}], "ops[0].quality_range"),
        ([{"type": "gaussian_noise", "probability": 2}], "ops[0].probability"),
        ([{"type": "one_of", "ops": [{"type": "jpeg"}], "weights": [1, 1]}], "ops[0].weights"),
        ([{"type": "blurr"}], "ops[0].type"),
    ],
)
def test_invalid_operations_are_config_errors_naming_the_key(ops, key):
    with pytest.raises(OptionError) as caught:
        section(*ops)
    assert caught.value.key == key, str(caught.value)


def config_error(ops: list[dict], scale: int = 4) -> str | None:
    """The config check's message for these operations, or None if they pass."""
    data = {
        "name": "x",
        "scale": scale,
        "datasets": {
            "train": {
                "type": "HRPatchDataset",
                "dataroot": ".",
                "target_size": 32,
                "degradation": {"ops": ops},
            }
        },
        "networks": {"generator": {"type": "RRDBNet", "scale": scale}},
    }
    try:
        check_config(load_config_data(data, "test", Path(), check_paths=False))
    except OptionError as err:
        assert err.key == "datasets.train.degradation.ops", err.key
        return str(err)
    return None


def test_operations_that_may_miss_the_lr_size_are_refused_when_the_config_loads():
    assert config_error([{"type": "resize", "relative_to": "output"}])  # "keep" would pass 1 time in 30
    assert config_error([{"type": "resize_to_output", "probability": 0.5}])
    assert config_error([{"type": "one_of", "ops": [{"type": "resize_to_output"}, {"type": "jpeg"}]}])
    assert config_error([{"type": "resize_to_output"}, {"type": "resize"}])
    assert config_error([{"type": "random_order", "ops": [{"type": "resize_to_output"}, {"type": "resize"}]}])
    assert config_error([{"type": "resize_to_output"}, {"type": "jpeg"}, {"type": "resampling"}]) is None
    assert config_error(yaml_ops()) is None
    assert config_error([{"type": "jpeg"}], scale=1) is None  # x1: the HR size is the LR size


def yaml_ops() -> list[dict]:
    raw = yaml.safe_load((REPO / "options" / "train_realesrgan_x4.yml").read_text())
    return raw["datasets"]["train"]["degradation"]["ops"]


@CUDA
def test_on_a_gpu_the_pipeline_draws_what_it_draws_on_the_cpu():
    section_ = realesrgan_section(patch_size=64, queue_size=4)
    hq = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    cpu, gpu = Degrader(section_, 4, 32, seed=1), Degrader(section_, 4, 32, seed=1)
    for step in range(4):
        a, b = cpu(hq, step), gpu(hq.cuda(), step)
        assert a.drawn == b.drawn, step
        assert b.lq.is_cuda and b.lq.shape == a.lq.shape == (2, 3, 8, 8)
    state = gpu.pool.state_dict()
    restored = PairPool(4)
    restored.load_state_dict(state, torch.device("cuda"))
    assert torch.equal(restored.lq, gpu.pool.lq)


def test_preview_checks_only_the_paths_it_reads_and_rejects_a_negative_step(tmp_path, logs):
    config = tiny_realesrgan_config(tmp_path)
    not_yet = ["path.pretrain_model_generator=not_trained_yet.pth", "datasets.val.dataroot=no_val"]
    args = ["-opt", str(config), "--count", "1", "--output", str(tmp_path / "p"), "--set", *not_yet]
    assert run_program(lambda: preview_degradations.main(args)) == 0
    assert (tmp_path / "p" / "degradations.png").is_file()
    missing = [*args, "datasets.train.dataroot=no_train"]
    assert run_program(lambda: preview_degradations.main(missing)) == 2
    assert "datasets.train.dataroot: path does not exist" in logs.records[-1].getMessage()
    assert run_program(lambda: preview_degradations.main([*args, "--step", "-5"])) == 2
    assert "--step: expected a training step of 0 or more" in logs.records[-1].getMessage()
