"""The tiler: geometry, exact blending, batching, pixel-unshuffle alignment, OOM back-off and the upscale API."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from esrforge.fields.errors import OptionError
from esrforge.inference import TileGrid, TileOptions, Upscaler, plan_axis, upscale
from esrforge.inference.grid import feather, window_weights
from esrforge.networks import RRDBNet, RRDBNetOptions


class LocalNet(nn.Module):
    """x2 upscaler whose output depends on LR pixels at most 3 away: tiles with pad >= 3 are exact."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 12, 3, padding=1))
        self.tail = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.tail(F.pixel_shuffle(self.body(x), 2))


def test_feather_weights_of_a_band_sum_to_one():
    for width in (1, 2, 7, 64):
        rising = feather(width)
        assert torch.allclose(rising + rising.flip(0), torch.ones(width))
        assert bool((rising > 0).all() and (rising < 1).all())


@pytest.mark.parametrize("length", [1, 7, 16, 63, 64, 65, 100, 129, 257, 1000])
@pytest.mark.parametrize(
    ("tile", "overlap", "pad", "multiple"), [(16, 4, 2, 1), (32, 8, 4, 4), (8, 64, 0, 2)]
)
def test_plan_axis_covers_with_weights_summing_to_one(length, tile, overlap, pad, multiple):
    length = max(multiple, length - length % multiple)  # the Upscaler pads images to the multiple
    spans = plan_axis(length, tile, overlap, pad, multiple)
    total = torch.zeros(length * 4)
    for span in spans:
        assert 0 <= span.crop_start <= span.window_start < span.window_end <= span.crop_end <= length
        assert span.crop_start % multiple == 0
        total[span.window_start * 4 : span.window_end * 4] += window_weights(span, 4)
    torch.testing.assert_close(total, torch.ones_like(total))
    assert len({span.crop_end - span.crop_start for span in spans}) == 1  # one crop size: batchable
    if len(spans) == 1:  # a crop would have covered the whole axis
        assert (spans[0].crop_start, spans[0].crop_end) == (0, length)
    else:
        assert len(spans) == -(-length // tile)


def test_plan_axis_keeps_pad_pixels_of_context_inside_the_image():
    spans = plan_axis(300, 64, 16, 10)
    for span in spans:
        assert span.window_start - span.crop_start >= min(10, span.window_start)
        assert span.crop_end - span.window_end >= min(10, 300 - span.window_end)


@pytest.mark.parametrize("batch", [1, 3, 16])
def test_tiles_reproduce_a_local_network_exactly(batch):
    model = LocalNet().eval()
    image = torch.rand(3, 45, 61)
    whole = upscale(model, image)
    options = TileOptions(tile_size=16, tile_pad=4, tile_overlap=6, tile_batch_size=batch)
    tiled = Upscaler(model, options)(image)
    assert tiled.shape == (3, 90, 122)
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-5)


def test_output_is_a_view_of_an_hwc_buffer_in_the_requested_dtype():
    model = LocalNet().eval()
    image = torch.rand(3, 20, 24)
    out = Upscaler(model, TileOptions(tile_size=16))(image, torch.uint8)
    assert out.dtype == torch.uint8 and out.permute(1, 2, 0).is_contiguous()
    expected = (upscale(model, image).clamp(0, 1) * 255).round().to(torch.uint8)
    assert (out.int() - expected.int()).abs().max() <= 1
    deep = Upscaler(model, TileOptions(tile_size=16))(image, torch.uint16)
    assert deep.dtype == torch.uint16


@pytest.mark.parametrize("scale", [1, 2])
def test_pixel_unshuffle_models_get_aligned_crops_and_padded_sizes(scale):
    torch.manual_seed(0)
    options = RRDBNetOptions(nf=8, nb=1, gc=4, scale=scale)
    model, description = RRDBNet(options).eval(), options.describe()
    image = torch.rand(3, 37, 50)  # not a multiple of the unshuffle factor
    whole = upscale(model, image, description=description)
    assert whole.shape == (3, 37 * scale, 50 * scale)
    tiled = upscale(model, image, tile=16, pad=24, overlap=8, description=description)
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-4)


def test_upscale_keeps_rank_and_device_and_leaves_the_model_alone():
    model = LocalNet().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batch = torch.rand(1, 3, 10, 12)
    out = upscale(model, batch, tile=16, dtype=torch.bfloat16)
    assert out.shape == (1, 3, 20, 24) and out.dtype == torch.float32 and out.device == batch.device
    assert (out - upscale(model, batch)).abs().max() < 0.05  # bf16 autocast, fp32 weights untouched
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert next(model.parameters()).dtype == torch.float32
    with pytest.raises(ValueError, match="shape"):
        upscale(model, torch.rand(2, 3, 8, 8))


def test_fp16_on_the_cpu_is_refused_with_a_clear_message():
    with pytest.raises(ValueError, match="fp16 inference needs a CUDA device"):
        Upscaler(LocalNet(), dtype=torch.float16)


class OutOfMemoryAbove(nn.Module):
    """Nearest x2 that raises CUDA's out-of-memory error for batches above ``limit`` input pixels."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.weight = nn.Parameter(torch.ones(()))
        self.sizes: list[tuple[int, ...]] = []

    def forward(self, x: Tensor) -> Tensor:
        self.sizes.append(tuple(x.shape))
        if x.shape[0] * x.shape[2] * x.shape[3] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return F.interpolate(x, scale_factor=2, mode="nearest") * self.weight


def test_out_of_memory_halves_the_batch_then_shrinks_tiles_and_still_finishes(caplog):
    model = OutOfMemoryAbove(limit=60 * 60)
    image = torch.rand(3, 150, 150)
    upscaler = Upscaler(model, TileOptions(tile_size=96, tile_pad=4, tile_overlap=8, tile_batch_size=4))
    out = upscaler(image)
    torch.testing.assert_close(out, F.interpolate(image[None], scale_factor=2, mode="nearest")[0])
    assert upscaler.engine.max_batch == 1
    assert upscaler.tile is not None and upscaler.tile < 96
    assert "out of memory" in caplog.text
    with pytest.raises(RuntimeError, match="out of memory even with"):
        Upscaler(OutOfMemoryAbove(limit=10), TileOptions(tile_size=64))(torch.rand(3, 64, 64))


def test_tile_options_are_checked():
    with pytest.raises(OptionError, match="tile_size"):
        TileOptions(tile_size=4)
    with pytest.raises(OptionError, match="tile_overlap"):
        TileOptions(tile_overlap=-1)


def test_only_two_rows_of_tiles_are_held_in_float32():
    """Memory is bounded by the tile size: row buffers are dropped as soon as their rows are finished."""
    from esrforge.inference.grid import _RowAccumulator

    grid = TileGrid.plan(200, 40, 32, 8, 4)
    accumulator = _RowAccumulator(grid, channels=3, scale=2)
    most = 0
    for i, j in grid.tiles():
        row, col = grid.rows[i], grid.cols[j]
        accumulator.add(
            i, j, torch.zeros(3, (row.crop_end - row.crop_start) * 2, (col.crop_end - col.crop_start) * 2)
        )
        most = max(most, len(accumulator.buffers))
    assert len(grid.rows) > 4 and most == 2 and not accumulator.buffers


def test_auto_tile_is_sized_from_the_memory_on_the_cpu_and_on_cuda(monkeypatch):
    from esrforge.inference import engine as engine_module
    from esrforge.inference.engine import CPU_AUTO_TILE, Engine

    engine = Engine(LocalNet())
    per_pixel = engine.measure_cpu_bytes_per_pixel(3)
    # LocalNet's peak, per LR pixel, in float32: the input (3 values), the pixel-shuffled map (12) and the
    # tail's output (12) alive at once
    assert per_pixel == (3 + 12 + 12) * 4
    monkeypatch.setattr(engine_module, "available_memory", lambda: None)
    assert engine.auto_tile(3, margin=96, batch=1) == CPU_AUTO_TILE  # unknown memory: the fixed tile
    monkeypatch.setattr(engine_module, "available_memory", lambda: 2**30)
    monkeypatch.setattr(engine, "measure_cpu_bytes_per_pixel", lambda channels: 9216.0)
    side = int((0.5 * 2**30 / 9216.0) ** 0.5)  # 1 GiB available: half of it
    assert engine.auto_tile(3, margin=96, batch=1) == (side - 96) // 16 * 16
    monkeypatch.setattr(engine_module, "available_memory", lambda: 64 * 2**30)
    assert engine.auto_tile(3, margin=96, batch=1) == (int((32 * 2**30 / 9216.0) ** 0.5) - 96) // 16 * 16
    engine.device = torch.device("cuda", 0)  # what a CUDA model would report; the probe is faked
    monkeypatch.setattr(engine, "measure_bytes_per_pixel", lambda channels: 40_000.0)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (10 * 2**30, 80 * 2**30))
    side = int((0.6 * 10 * 2**30 / 40_000.0) ** 0.5)  # crop side that fits 60% of the free memory
    assert engine.auto_tile(3, margin=96, batch=1) == (side - 96) // 16 * 16
    assert engine.auto_tile(3, margin=96, batch=4) == (int(side / 2) - 96) // 16 * 16


@pytest.mark.slow
def test_compiled_auto_tiles_compile_once_and_not_for_the_memory_probe(monkeypatch):
    import torch._dynamo

    from esrforge.inference import engine as engine_module

    monkeypatch.setattr(engine_module, "available_memory", lambda: 2**30)  # auto measures a probe tile

    torch._dynamo.reset()
    counters = torch._dynamo.utils.counters["stats"]
    before = counters["unique_graphs"]
    image = torch.rand(3, 40, 56)
    compiled = Upscaler(LocalNet(), TileOptions(tile_size="auto"), compiled=True)
    assert compiled.engine.graphs is False  # CUDA graphs are for CUDA models only
    out = compiled(image)
    assert isinstance(compiled.tile, int) and compiled.tile > 56  # the probe sized the tile: one crop
    assert counters["unique_graphs"] - before == 1
    assert torch.allclose(out, Upscaler(LocalNet(), TileOptions(tile_size=None))(image), atol=1e-5)


def test_out_of_memory_with_cuda_graphs_drops_them_and_runs_uncompiled(caplog):
    from esrforge.inference.engine import Engine

    engine = Engine(LocalNet())

    def out_of_memory(x: Tensor) -> Tensor:
        raise torch.OutOfMemoryError("CUDA out of memory (faked)")

    engine.graphs, engine.forward_model = True, out_of_memory  # what a CUDA model's graphs would meet
    batch = torch.rand(2, 3, 8, 8)
    with caplog.at_level("WARNING"):
        out = engine(batch)
    assert not engine.graphs and engine.forward_model is engine.model
    assert engine.max_batch is None  # the batch was not halved: dropping the graphs was enough
    torch.testing.assert_close(out, LocalNet()(batch).detach())
    assert "out of memory with CUDA graphs: running the network uncompiled" in caplog.text
