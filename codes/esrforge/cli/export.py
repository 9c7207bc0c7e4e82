"""``python codes/scripts/export.py --model FILE --output FILE.onnx [--fp16] [--dynamic | --size H W | --tile N]``.

``--format safetensors --output FILE.safetensors`` writes the weights instead as a safetensors file whose
metadata holds the architecture, scale and ``networks.generator`` options (the loader builds the network
from them without inferring it), and for a checkpoint train.py saved (``experiments/<name>/models/<step>_<tag>.pth``)
the training step and the experiment's name.

Writes any checkpoint test.py runs (every RRDB layout, SRVGGNetCompact, spandrel's architectures) as an
ONNX model that onnxruntime, ncnn or TensorRT run, and that test.py and process_video.py run like a
checkpoint (``--model FILE.onnx``). Every tensor of the graph is at most 4-D (pixel unshuffles become
one-hot convolutions, pixel shuffles DepthToSpace); the file's metadata holds the architecture, scale, channels, size multiple,
precision and the ``networks.generator`` options. The export is checked in onnxruntime against PyTorch
before it is written (atomically).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from ..export.onnx import DEFAULT_SIZE, MAX_RANK, MIN_PSNR, OPSET, export_onnx
from ..networks import LoadedNetwork, load_generator
from ..networks.saved import save_generator
from ..training.experiment import ExperimentDirs
from ..training.state import saved_models
from .common import exit_with

log = logging.getLogger("esrforge")
FORMATS = {"onnx": ".onnx", "safetensors": ".safetensors"}
ONNX_FLAGS = {"--fp16": "fp16", "--dynamic": "dynamic", "--size": "size", "--tile": "tile"}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            f"Export a generator checkpoint to ONNX (opset {OPSET}, tensors of at most {MAX_RANK} dimensions) "
            "for onnxruntime, ncnn or TensorRT; test.py runs the file with --model FILE.onnx."
        )
    )
    parser.add_argument("--model", type=Path, required=True, help="a .pth or .safetensors checkpoint")
    parser.add_argument(
        "--output", "-o", type=Path, required=True, help="the .onnx (.safetensors) file to write"
    )
    parser.add_argument(
        "--format",
        default="onnx",
        help="onnx (default), or safetensors: the weights with metadata (architecture, options, scale, step)",
    )
    parser.add_argument("--param-key", help="checkpoint entry holding the weights (default: params_ema, ...)")
    parser.add_argument(
        "--fp16",
        action="store_true",
        help="float16 weights and arithmetic inside the graph, float32 input and output (a cast at each end); "
        f"checked to stay within {MIN_PSNR['fp16']:.0f} dB PSNR of PyTorch's fp32 output (fp32: {MIN_PSNR['fp32']:.0f} dB)",
    )
    shape = parser.add_mutually_exclusive_group()
    shape.add_argument(
        "--dynamic", action="store_true", help="dynamic batch, height and width (default: a fixed input size)"
    )
    shape.add_argument(
        "--size",
        nargs=2,
        type=int,
        metavar=("H", "W"),
        help="fixed LR input height and width, batch 1 (default: {} {}); test.py feeds such a model tiles "
        "of at most this size, padded up to it".format(*DEFAULT_SIZE),
    )
    shape.add_argument("--tile", type=int, metavar="N", help="fixed N x N input, the same as --size N N")
    return parser.parse_args(argv)


def input_size(args: argparse.Namespace) -> tuple[int, int] | None:
    """The fixed (height, width) the arguments ask for, or None with ``--dynamic``."""
    if args.dynamic:
        return None
    if args.tile is not None:
        return args.tile, args.tile
    return tuple(args.size) if args.size is not None else DEFAULT_SIZE


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    suffix = FORMATS.get(args.format)
    if suffix is None:
        raise ValueError(
            f"{args.output}: --format {args.format}: unknown format; expected {', '.join(FORMATS)}"
        )
    if args.output.suffix.lower() != suffix:
        raise ValueError(f"{args.output}: expected a file name ending in {suffix} for --format {args.format}")
    onnx_only = [flag for flag, value in ONNX_FLAGS.items() if getattr(args, value)]
    if args.format != "onnx" and onnx_only:
        raise ValueError(f"{args.output}: {', '.join(onnx_only)}: only for --format onnx")
    loaded = load_generator(args.model, key=args.param_key)
    if args.format == "safetensors":
        write_safetensors(loaded, args.model, args.output)
        return 0
    result = export_onnx(loaded, args.output, input_size(args), args.fp16, source=args.model)
    log.info(
        "wrote %s (%.2f MiB): %s x%d, %s inside, float32 input %s, tensors at most %d-D; onnxruntime's "
        "output is %.1f dB PSNR from PyTorch's",
        result.path,
        result.nbytes / 2**20,
        loaded.description.architecture,
        loaded.description.scale,
        result.precision,
        result.input_shape,
        result.max_rank,
        result.psnr,
    )
    return 0


def training_origin(model: Path) -> tuple[int | None, str | None]:
    """The step and experiment name of a generator train.py saved, ``experiments/<name>/models/<step>_<tag>.pth``."""
    dirs = ExperimentDirs(model.resolve().parent.parent)
    if model.resolve().parent != dirs.models.resolve() or not any(dirs.root.glob("config_*.yml")):
        return None, None
    steps = {path.resolve(): step for saved in saved_models(dirs).values() for step, path in saved}
    return steps.get(model.resolve()), dirs.root.name


def write_safetensors(loaded: LoadedNetwork, model: Path, output: Path) -> None:
    """``loaded``'s weights as ``output`` with the metadata the loader reads back."""
    step, experiment = training_origin(model)
    save_generator(output, loaded.module.state_dict(), loaded.options, step, experiment)
    origin = f", step {step} of {experiment}" if step is not None else ""
    log.info("wrote %s: %s x%d%s", output, loaded.description.architecture, loaded.description.scale, origin)


def run() -> None:
    """Console-script entry point."""
    exit_with(main)
