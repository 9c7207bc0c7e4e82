"""ONNX export: every architecture esrforge runs, within 80 dB (fp32) / 50 dB (fp16) of PyTorch, graphs of
4-D tensors only, the metadata, and test.py running an .onnx file like its checkpoint."""

from __future__ import annotations

import io
import logging
import math
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from spandrel.architectures.SPAN import SPAN
from spandrel.architectures.SwinIR import SwinIR
from torch import nn
from torch.nn import functional as F

from esrforge.cli.common import run_program
from esrforge.cli.export import main as export_main
from esrforge.cli.inspect_model import main as inspect_main
from esrforge.cli.test import main as upscale_main
from esrforge.data.imageio import read_image, write_image
from esrforge.export.shuffle import four_d_unshuffle, pixel_unshuffle_4d
from esrforge.inference.onnx_model import load_onnx
from esrforge.inference.seams import realish_rrdb
from esrforge.networks import SRVGGNetCompact, SRVGGNetCompactOptions, load_generator
from esrforge.probes import smooth_image

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

MIN_DB = {"fp32": 80.0, "fp16": 50.0}


def compact(scale: int) -> nn.Module:
    torch.manual_seed(0)
    return SRVGGNetCompact(SRVGGNetCompactOptions(num_feat=8, num_conv=2, upscale=scale))


def span_x4() -> nn.Module:
    torch.manual_seed(0)
    return SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=4)


NETWORKS: dict[str, Callable[[], nn.Module]] = {
    "RRDBNet-x1": lambda: realish_rrdb(8, 1, 4, scale=1),  # pixel-unshuffle by 4 (Real-ESRGAN's layout)
    "RRDBNet-x2": lambda: realish_rrdb(8, 1, 4, scale=2),  # pixel-unshuffle by 2
    "RRDBNet-x4": lambda: realish_rrdb(8, 1, 4, scale=4),
    "RRDBNet-x8": lambda: realish_rrdb(8, 1, 4, scale=8),
    "SRVGGNetCompact-x2": lambda: compact(2),  # nn.PixelShuffle (DepthToSpace)
    "SRVGGNetCompact-x4": lambda: compact(4),
    "SPAN-x4": span_x4,  # spandrel's
}


def save(name: str, folder: Path) -> Path:
    path = folder / f"{name}.pth"
    torch.save(NETWORKS[name]().state_dict(), path)
    return path


def export(model: Path, output: Path, *flags: str) -> None:
    assert run_program(lambda: export_main(["--model", str(model), "--output", str(output), *flags])) == 0


def psnr_db(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    """PSNR with peak 1, in float64."""
    mse = float(np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def ranks(model: onnx.ModelProto) -> list[int]:
    """The rank of every tensor of the graph (inputs, outputs, intermediates and weights)."""
    graph = onnx.shape_inference.infer_shapes(model, strict_mode=True).graph
    values = [*graph.input, *graph.value_info, *graph.output]
    assert values and all(value.type.tensor_type.HasField("shape") for value in values)
    return [len(v.type.tensor_type.shape.dim) for v in values] + [len(t.dims) for t in graph.initializer]


def session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def error_line(caplog: pytest.LogCaptureFixture) -> str:
    line = next(r.getMessage() for r in caplog.records if r.levelname == "ERROR")
    assert "\n" not in line
    return line


@pytest.mark.parametrize("factor", [2, 3, 4])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_the_4d_unshuffle_equals_torch_bit_for_bit(factor: int, dtype: torch.dtype) -> None:
    x = torch.randn(2, 3, 5 * factor, 7 * factor).to(dtype)
    assert torch.equal(pixel_unshuffle_4d(x, factor), F.pixel_unshuffle(x, factor))


def test_the_swap_reaches_modules_and_both_names_and_is_undone_on_error() -> None:
    originals = (F.pixel_unshuffle, torch.pixel_unshuffle)
    x = torch.randn(1, 2, 6, 6)
    with pytest.raises(RuntimeError, match="inside"), four_d_unshuffle():
        assert F.pixel_unshuffle is torch.pixel_unshuffle is pixel_unshuffle_4d
        assert torch.equal(nn.PixelUnshuffle(2)(x), originals[0](x, 2))
        raise RuntimeError("inside")
    assert (F.pixel_unshuffle, torch.pixel_unshuffle) == originals


def test_a_plain_export_of_pixel_unshuffle_is_6d_ours_4d_and_pixel_shuffle_is_depth_to_space(
    tmp_path: Path,
) -> None:
    module = NETWORKS["RRDBNet-x2"]().eval()
    buffer = io.BytesIO()
    with pytest.warns((DeprecationWarning, torch.jit.TracerWarning)):
        torch.onnx.export(module, (torch.rand(1, 3, 16, 16),), buffer, opset_version=17, dynamo=False)
    assert max(ranks(onnx.load_from_string(buffer.getvalue()))) == 6  # what the rewrite avoids
    export(save("RRDBNet-x2", tmp_path), tmp_path / "rrdb.onnx", "--dynamic")
    assert max(ranks(onnx.load(tmp_path / "rrdb.onnx"))) == 4

    export(save("SRVGGNetCompact-x4", tmp_path), tmp_path / "compact.onnx", "--dynamic")
    model = onnx.load(tmp_path / "compact.onnx")
    assert max(ranks(model)) == 4
    (node,) = [n for n in model.graph.node if n.op_type == "DepthToSpace"]
    assert {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute} == {
        "blocksize": 4,
        "mode": b"CRD",
    }


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("name", list(NETWORKS))
def test_onnxruntime_matches_pytorch_at_any_size_and_batch(tmp_path: Path, name: str, precision: str) -> None:
    """Dynamic export; checked at sizes and a batch it was not traced at, against PyTorch's fp32 output."""
    checkpoint, output = save(name, tmp_path), tmp_path / "model.onnx"
    export(checkpoint, output, "--dynamic", *(["--fp16"] if precision == "fp16" else []))
    model = onnx.load(output)
    assert max(ranks(model)) <= 4
    assert model.opset_import[0].version >= 17
    props = {p.key: p.value for p in model.metadata_props}
    assert props["precision"] == precision and props["input_size"] == "dynamic"
    net = load_generator(checkpoint).module.eval()
    runner = session(output)
    torch.manual_seed(1)
    for shape in ((1, 3, 24, 24), (2, 3, 16, 40)):
        x = torch.rand(shape)
        got = runner.run(None, {"input": x.numpy()})[0]
        with torch.no_grad():
            expected = net(x)
        assert got.dtype == np.float32 and got.shape == tuple(expected.shape)
        assert psnr_db(got, expected) >= MIN_DB[precision]


def test_a_fixed_size_export_has_that_shape_and_describes_the_network(tmp_path: Path) -> None:
    checkpoint, output = save("RRDBNet-x2", tmp_path), tmp_path / "x2.onnx"
    export(checkpoint, output, "--size", "24", "32")
    runner = session(output)
    assert runner.get_inputs()[0].shape == [1, 3, 24, 32]
    assert runner.get_outputs()[0].shape == [1, 3, 48, 64]
    props = runner.get_modelmeta().custom_metadata_map
    assert props["architecture"] == "RRDBNet" and props["scale"] == "2" and props["size_multiple"] == "2"
    assert props["in_channels"] == props["out_channels"] == "3" and props["input_size"] == "24x32"
    assert props["precision"] == "fp32" and props["io_dtype"] == "float32"

    original = load_generator(checkpoint)
    loaded = load_onnx(output)
    assert loaded.options == original.options  # the generator options, rebuilt from the metadata
    assert loaded.description == original.description.__class__(
        **{**original.description.__dict__, "dtypes": (torch.float32,)}
    )
    x = torch.rand(2, 3, 20, 30)  # smaller than the fixed size, two at a time: padded, run one by one
    with torch.no_grad():
        out = loaded.module(x)
    assert out.shape == (2, 3, 40, 60)
    assert torch.equal(out[1:], loaded.module(x[1:]))
    with pytest.raises(ValueError, match="at most 24x32"):
        loaded.module(torch.rand(1, 3, 26, 32))


def write_input(folder: Path) -> Path:
    """A 16-bit 26x30 RGB PNG (16-bit outputs: rounding does not hide differences)."""
    image = np.random.default_rng(0).integers(0, 65536, (26, 30, 3), dtype=np.uint16)
    write_image(folder / "in" / "a.png", image)
    return folder / "in" / "a.png"


def upscale(model: Path, image: Path, out: Path, *flags: str) -> np.ndarray:
    tiling = ["--tile", "16", "--tile-pad", "4", "--tile-overlap", "4"]
    argv = ["--model", str(model), "--input", str(image), "--output", str(out), "--cpu", *tiling, *flags]
    assert run_program(lambda: upscale_main(argv)) == 0
    return read_image(out / "a_x2.png").astype(np.float64) / 65535


def test_test_py_runs_an_onnx_file_like_its_checkpoint(tmp_path: Path) -> None:
    checkpoint, image = save("RRDBNet-x2", tmp_path), write_input(tmp_path)
    export(checkpoint, tmp_path / "dynamic.onnx", "--dynamic")
    expected = upscale(checkpoint, image, tmp_path / "pth")
    got = upscale(tmp_path / "dynamic.onnx", image, tmp_path / "onnx")
    assert got.shape == expected.shape == (52, 60, 3)
    assert psnr_db(got, expected) >= 80

    # Fixed 32x32 inputs: tiles fit them, and crops smaller than 32x32 are padded with zeros. This
    # network's long-range context (see realish_rrdb) makes that padding cost much: 22.6 dB, where
    # tiling itself (pad 4) costs 37 dB against an untiled run.
    export(checkpoint, tmp_path / "fixed.onnx", "--tile", "32")
    fixed = upscale(tmp_path / "fixed.onnx", image, tmp_path / "fixed")
    assert fixed.shape == expected.shape and psnr_db(fixed, expected) >= 20


def test_inspect_model_reads_an_onnx_file_as_test_py_runs_it(tmp_path: Path, logs) -> None:
    export(save("RRDBNet-x2", tmp_path), tmp_path / "dynamic.onnx", "--dynamic")
    assert run_program(lambda: inspect_main([str(tmp_path / "dynamic.onnx"), "--check"])) == 0
    assert "dynamic.onnx: RRDBNet x2" in logs.text and "check: 192x192 -> 384x384" in logs.text
    assert "parameters" not in logs.text  # the graph holds its weights as constants
    assert run_program(lambda: inspect_main([str(tmp_path / "dynamic.onnx"), "--param-key", "params"])) == 2
    assert "is an ONNX file, which holds one network" in error_line(logs)


def test_a_fixed_size_too_small_for_the_tiling_is_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    checkpoint, image = save("RRDBNet-x2", tmp_path), write_input(tmp_path)
    export(checkpoint, tmp_path / "fixed.onnx", "--tile", "32")
    argv = ["--model", str(tmp_path / "fixed.onnx"), "--input", str(image), "--output", str(tmp_path / "o")]
    assert run_program(lambda: upscale_main([*argv, "--cpu"])) == 2  # default pad 16, overlap 64
    assert "fixed.onnx: takes fixed 32x32 inputs" in error_line(caplog)


def swinir() -> nn.Module:
    torch.manual_seed(0)
    return SwinIR(img_size=16, embed_dim=12, depths=[1], num_heads=[2], window_size=4, upscale=2)


@pytest.mark.parametrize(
    ("case", "flags", "expected"),
    [
        ("missing", [], "missing.pth: checkpoint file not found"),
        ("format", ["--format", "tflite"], "--format tflite: unknown format; expected onnx"),
        ("suffix", [], "model.pt: expected a file name ending in .onnx"),
        (
            "onnx-only",
            ["--format", "safetensors", "--fp16"],
            "model.safetensors: --fp16: only for --format onnx",
        ),
        (
            "multiple",
            ["--size", "30", "30"],
            "RRDBNet cannot take a fixed 30x30 input: expected height and width multiples of 4",
        ),
        ("6-D", ["--dynamic"], "swinir.pth: the exported graph has"),
    ],
)
def test_export_errors_are_one_line_naming_the_file_and_write_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, case: str, flags: list[str], expected: str
) -> None:
    model, output = tmp_path / "model.pth", tmp_path / "out" / "model.onnx"
    if case == "missing":
        model = tmp_path / "missing.pth"
    elif case == "6-D":
        model = tmp_path / "swinir.pth"
        torch.save(swinir().state_dict(), model)
    else:
        torch.save(NETWORKS["RRDBNet-x1"]().state_dict(), model)
    if case == "suffix":
        output = tmp_path / "out" / "model.pt"
    elif case == "onnx-only":
        output = tmp_path / "out" / "model.safetensors"
    argv = ["--model", str(model), "--output", str(output), *flags]
    assert run_program(lambda: export_main(argv)) == 2
    line = error_line(caplog)
    assert expected in line
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # no file, no temporary


def test_an_onnx_file_not_from_esrforge_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "plain.onnx"
    with pytest.warns(DeprecationWarning):
        torch.onnx.export(nn.Conv2d(3, 3, 3), (torch.rand(1, 3, 8, 8),), str(path), dynamo=False)
    with pytest.raises(ValueError, match=r"plain.onnx: not an ONNX file exported by esrforge"):
        load_onnx(path)


def test_without_onnxruntime_test_py_says_how_to_install_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails
    model, image = tmp_path / "model.onnx", write_input(tmp_path)
    model.write_bytes(b"not read")
    argv = ["--model", str(model), "--input", str(image), "--output", str(tmp_path / "o"), "--cpu"]
    with caplog.at_level(logging.ERROR):
        assert run_program(lambda: upscale_main(argv)) == 2
    line = error_line(caplog)
    assert str(model) in line and 'needs the onnxruntime package: pip install -e ".[export]"' in line


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (3, 40)])
def test_probe_images_come_in_any_size(size):
    image = smooth_image(*size)
    assert image.shape == (3, *size) and 0 <= float(image.min()) <= float(image.max()) <= 1
