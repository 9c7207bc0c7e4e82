"""ONNX export of any generator esrforge loads, as graphs of 4-D tensors (onnxruntime, ncnn, TensorRT).

The exporter is ``torch.onnx.export(..., dynamo=False)``, the TorchScript-based tracer. With torch 2.14
it exports our networks and spandrel's convolutional ones in a fraction of a second, at opset 17
directly and silently. The default torch.export-based exporter took about 7 s for a one-block RRDBNet,
only implements opset 18 and up (opset 17 goes through a down-conversion with a fallback), prints
progress lines and needs onnxscript. The tracer is deprecated upstream; when it is removed,
``dynamo=True`` with ``dynamic_shapes`` replaces it (nothing below depends on which exporter traced).

A trace freezes Python decisions made on the example's shape, so a dynamic export is checked on a
second, non-square input size, not the traced one.

fp16: the fp32 graph is converted by onnxruntime's ``convert_float_to_float16`` (float16 weights and
arithmetic, ``keep_io_types``: a Cast at each end keeps the input and output float32; Resize's scales
stay float32 as ONNX requires). Tracing a ``.half()`` copy instead would run the network in PyTorch's
CPU fp16 kernels, about 140 times slower than fp32 (191 s against 1.4 s for one 64x64 forward of a
32/23 RRDBNet on 2 cores): minutes to hours for a real model at a fixed 256x256 size.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..fileio import atomic_write_bytes
from ..logs import first_line
from ..networks import Description, LoadedNetwork, SpandrelModel
from ..probes import probe_input, probe_side, psnr
from . import require_package
from .metadata import Precision, to_props
from .shuffle import four_d_unshuffle

OPSET = 17
MAX_RANK = 4
"""ncnn's limit on tensor dimensions (N, C, H, W)."""
DEFAULT_SIZE = (256, 256)
"""Fixed input (height, width) without ``--size`` / ``--dynamic``: test.py's CPU tile size."""
MIN_PSNR: dict[Precision, float] = {"fp32": 80.0, "fp16": 50.0}
"""Least PSNR (dB, peak 1) of onnxruntime's output from PyTorch's fp32 output that an export must reach."""
EXAMPLE_SIDE = 32
"""Side of the image a dynamic export is traced with (raised to the network's minimum and multiple)."""
INPUT, OUTPUT = "input", "output"
DYNAMIC_AXES = {
    INPUT: {0: "batch", 2: "height", 3: "width"},
    OUTPUT: {0: "batch", 2: "out_height", 3: "out_width"},
}


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote, and how close onnxruntime's output is to PyTorch's."""

    path: Path
    precision: Precision
    input_shape: str
    """``1x3x256x256`` (fixed) or ``Nx3xHxW`` (dynamic)."""
    max_rank: int
    psnr: float
    """dB (peak 1, in float64) of onnxruntime's output from PyTorch's fp32 output on a smooth image."""
    nbytes: int


def export_onnx(
    loaded: LoadedNetwork,
    output: Path,
    size: tuple[int, int] | None = DEFAULT_SIZE,
    fp16: bool = False,
    source: Path | None = None,
) -> ExportResult:
    """Write ``loaded`` (read from ``source``, named in errors) to ``output`` as an ONNX model.

    ``size`` ``(height, width)`` fixes the input shape (batch 1); None makes batch, height and width
    dynamic. ``fp16`` stores float16 weights and computes in float16 behind float32 input and output.
    Pixel unshuffles become 4-D convolutions (:mod:`.shuffle`); the graph's metadata describes the
    network (:mod:`.metadata`). A network that cannot be traced, a graph with a tensor of more than
    :data:`MAX_RANK` dimensions, or onnxruntime's output under :data:`MIN_PSNR` from PyTorch's is a
    one-line ValueError, and nothing is written; the write is atomic. ``loaded.module`` is put in eval mode.
    """
    onnx = require_package("onnx", "ONNX export")
    name = source or output
    precision: Precision = "fp16" if fp16 else "fp32"
    description = loaded.description
    module = loaded.module.eval()
    _check_request(loaded, size, fp16, name)
    traced, probe = (size, size) if size is not None else dynamic_sizes(description)
    data = _trace(module, probe_input(description, traced), size is None, name)
    model = onnx.load_from_string(data)
    if fp16:
        model = to_float16(model)
    rank = check_ranks(model, name)
    onnx.helper.set_model_props(model, to_props(loaded, precision, size))
    data = model.SerializeToString()
    quality = onnxruntime_psnr(module, data, probe_input(description, probe))
    if quality < MIN_PSNR[precision]:
        hint = "; it may overflow in fp16: export it without --fp16" if fp16 else ""
        raise ValueError(
            f"{name}: onnxruntime's output is {quality:.1f} dB PSNR from PyTorch's, under the "
            f"{MIN_PSNR[precision]:.0f} dB an {precision} export must reach{hint}"
        )
    atomic_write_bytes(output, data)
    c = description.in_channels
    shape = f"Nx{c}xHxW" if size is None else f"1x{c}x{size[0]}x{size[1]}"
    return ExportResult(output, precision, shape, rank, quality, len(data))


def to_float16(model: Any) -> Any:
    """``model`` with float16 weights and arithmetic behind float32 input and output (see the module doc)."""
    float16 = require_package("onnxruntime.transformers.float16", "fp16 export")
    return float16.convert_float_to_float16(model, keep_io_types=True)


def needs_square(module: nn.Module) -> bool:
    """Whether the network takes square inputs only (some spandrel architectures)."""
    return isinstance(module, SpandrelModel) and module.descriptor.size_requirements.square


def _check_request(loaded: LoadedNetwork, size: tuple[int, int] | None, fp16: bool, name: Path) -> None:
    d = loaded.description
    if fp16 and not d.supports(torch.float16):
        raise ValueError(f"{name}: {d.architecture} does not run correctly in fp16; export it without --fp16")
    square = needs_square(loaded.module)
    if size is None:
        if square:
            raise ValueError(
                f"{name}: {d.architecture} takes square inputs only; export a fixed size (--tile N)"
            )
        return
    height, width = size
    expected = []
    if height % d.size_multiple or width % d.size_multiple:
        expected.append(f"height and width multiples of {d.size_multiple}")
    if min(height, width) < max(d.min_size, 1):
        expected.append(f"height and width of at least {max(d.min_size, 1)}")
    if square and height != width:
        expected.append("a square input")
    if expected:
        raise ValueError(
            f"{name}: {d.architecture} cannot take a fixed {height}x{width} input: expected {', '.join(expected)}"
        )


def dynamic_sizes(description: Description) -> tuple[tuple[int, int], tuple[int, int]]:
    """The input size a dynamic export is traced at, and the other (non-square) one it is checked at."""
    m = description.size_multiple
    side = probe_side(description, EXAMPLE_SIDE)
    step = m * math.ceil(8 / m)
    return (side, side), (side + step, side + 2 * step)


def _trace(module: nn.Module, example: Tensor, dynamic: bool, name: Path) -> bytes:
    buffer = io.BytesIO()
    try:
        with four_d_unshuffle(), warnings.catch_warnings():
            # the tracer's notes on shape-dependent Python code (checked on a second size after the export)
            # and the deprecation notice of the TorchScript exporter (see the module doc)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                module,
                (example,),
                buffer,  # type: ignore[arg-type]  # the TorchScript exporter writes to file objects too
                opset_version=OPSET,
                input_names=[INPUT],
                output_names=[OUTPUT],
                dynamic_axes=DYNAMIC_AXES if dynamic else None,
                dynamo=False,
            )
    except Exception as error:  # the tracer and the ONNX symbolics raise many kinds of error
        raise ValueError(f"{name}: cannot be exported to ONNX: {first_line(error)}") from None
    return buffer.getvalue()


def tensor_ranks(model: Any) -> dict[str, int | None]:
    """The rank of every tensor of the graph (inputs, outputs, intermediates, weights; None: unknown),
    from ONNX shape inference."""
    onnx = require_package("onnx", "ONNX shape inference")
    graph = onnx.shape_inference.infer_shapes(model, strict_mode=True).graph
    ranks: dict[str, int | None] = {tensor.name: len(tensor.dims) for tensor in graph.initializer}
    for value in (*graph.input, *graph.value_info, *graph.output):
        tensor = value.type.tensor_type
        ranks[value.name] = len(tensor.shape.dim) if tensor.HasField("shape") else None
    return ranks


def check_ranks(model: Any, name: Path) -> int:
    """The largest tensor rank of ``model``'s graph; one-line ValueError when one is over :data:`MAX_RANK`."""
    onnx = require_package("onnx", "ONNX shape inference")
    try:
        ranks = tensor_ranks(model)
    except onnx.shape_inference.InferenceError as error:
        raise ValueError(
            f"{name}: ONNX shape inference fails on the exported graph: {first_line(error)}"
        ) from None
    bad = {tensor: rank for tensor, rank in ranks.items() if rank is None or rank > MAX_RANK}
    if bad:
        made_by = {out: node.op_type for node in model.graph.node for out in node.output}
        tensor, rank = next(iter(bad.items()))
        what = "of unknown rank" if rank is None else f"{rank}-D"
        raise ValueError(
            f"{name}: the exported graph has {len(bad)} tensor(s) of more than {MAX_RANK} dimensions (ncnn's "
            f"limit), e.g. {tensor} ({what}, from {made_by.get(tensor, 'an input')}); pixel (un)shuffles "
            "export as 4-D operations, this architecture's other reshapes do not"
        )
    return max(rank for rank in ranks.values() if rank is not None)


def onnxruntime_psnr(module: nn.Module, data: bytes, probe: Tensor) -> float:
    """PSNR (dB, peak 1, float64) of onnxruntime's output for ``probe`` from ``module``'s (CPU, fp32)."""
    ort = require_package("onnxruntime", "checking the exported model")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {INPUT: probe.numpy()})[0])
    with torch.inference_mode():
        expected = module(probe)
    return psnr(got, expected)
