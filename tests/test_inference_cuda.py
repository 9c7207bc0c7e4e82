"""The tiler on CUDA: blending on the GPU, fp16/bf16 against fp32, real out-of-memory back-off, auto tiles."""

from __future__ import annotations

import logging

import pytest
import torch

from conftest import CUDA
from esrforge.inference import TileOptions, Upscaler, upscale
from esrforge.inference.seams import realish_rrdb
from esrforge.networks import RRDBNet, RRDBNetOptions
from esrforge.probes import psnr, smooth_image

pytestmark = CUDA


def test_tiles_blended_on_the_gpu_equal_the_untiled_output():
    model = realish_rrdb(nf=16, nb=1, gc=8, scale=2).cuda()
    image = smooth_image(70, 90, seed=3)
    whole = Upscaler(model, TileOptions(tile_size=None))(image)
    tiled = Upscaler(model, TileOptions(tile_size=32, tile_pad=24, tile_overlap=8, tile_batch_size=3))(image)
    assert whole.device.type == "cpu" and tiled.shape == (3, 140, 180)
    assert psnr(tiled, whole) > 60  # a 1-block model sees < 24 pixels: only float noise is left
    as_uint8 = Upscaler(model, TileOptions(tile_size=32))(image, torch.uint8)
    assert as_uint8.dtype == torch.uint8
    assert (as_uint8.float() - (whole.clamp(0, 1) * 255).round()).abs().max() <= 1
    on_gpu = upscale(model, image.cuda()[None], tile=32)  # validation passes images already on the GPU
    assert on_gpu.device.type == "cuda" and psnr(on_gpu[0].cpu(), whole) > 60


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precisions_are_close_to_float32(dtype):
    model = realish_rrdb(nf=32, nb=3, gc=16, scale=4).cuda()
    image = smooth_image(64, 64, seed=4)
    reference = Upscaler(model, TileOptions(tile_size=None))(image)
    half = Upscaler(model, TileOptions(tile_size=None), dtype=dtype)(image)
    assert psnr(half, reference) > (40 if dtype == torch.float16 else 30)


@pytest.mark.parametrize("compiled", [False, True])
def test_real_out_of_memory_shrinks_the_tile_and_finishes(caplog, compiled):
    total = torch.cuda.get_device_properties(0).total_memory
    model = RRDBNet(RRDBNetOptions(nf=64, nb=2, gc=32, scale=4)).eval().cuda()
    image = torch.rand(3, 768, 768)
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(3 * 2**30 / total)
    try:
        upscaler = Upscaler(model, TileOptions(tile_size=768, tile_batch_size=2), compiled=compiled)
        with caplog.at_level(logging.WARNING):
            out = upscaler(image, torch.uint8)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    assert out.shape == (3, 3072, 3072)
    assert upscaler.tile is not None and upscaler.tile < 768
    assert "out of memory" in caplog.text
    assert not upscaler.engine.graphs  # out of memory, CUDA graphs are dropped


def test_auto_tile_measures_the_model_and_fits(caplog):
    model = RRDBNet(RRDBNetOptions(nf=64, nb=2, gc=32, scale=4)).eval().cuda()
    upscaler = Upscaler(model, TileOptions(tile_size="auto"), dtype=torch.float16)
    with caplog.at_level(logging.INFO):
        out = upscaler(smooth_image(300, 200), torch.uint8)
    assert out.shape == (3, 1200, 800)
    assert isinstance(upscaler.tile, int) and upscaler.tile >= 32
    assert "tile_size auto" in caplog.text


def test_compiled_tiles_replay_cuda_graphs_and_equal_eager():
    model = realish_rrdb(nf=16, nb=1, gc=8, scale=2).cuda()
    image = smooth_image(70, 90, seed=3)
    options = TileOptions(tile_size=32, tile_pad=24, tile_overlap=8, tile_batch_size=2)
    eager = Upscaler(model, options)(image)
    compiled = Upscaler(model, options, compiled=True)
    assert compiled.engine.graphs
    for _ in range(3):  # later images replay the graphs
        assert psnr(compiled(image), eager) > 60
    engine = compiled.engine
    x1, x2 = torch.rand(2, 3, 40, 40), torch.rand(2, 3, 40, 40)
    with torch.no_grad():
        expected = model(x1.cuda())
    first = engine(x1)
    engine(x2)  # a later replay must not overwrite an earlier output: outputs are copied out
    torch.testing.assert_close(first, expected, atol=1e-4, rtol=1e-4)
    engine.max_batch = 1  # a split batch concatenates the outputs of consecutive replays
    torch.testing.assert_close(engine(x1), expected, atol=1e-4, rtol=1e-4)
