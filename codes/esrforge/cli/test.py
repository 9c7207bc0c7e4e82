"""``python codes/test.py -opt options/test_esrgan_x4.yml [--set key=value ...]``, or without a config:
``python codes/test.py --model FILE --input FILE_OR_DIR [--output DIR] [--tile 256 --tile-pad 16 --half]``.

Exit codes: 0 done, 1 some images failed (each is reported, the rest still run), 2 a bad config,
argument, checkpoint or input folder (one line on stderr).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..inference.options import OUTPUT_FORMATS, TestConfig, config_from_data, load_test_config
from ..inference.runner import run_test
from ..inference.tiling import DEFAULT_OVERLAP, DEFAULT_PAD
from ..options.errors import OptionError
from .common import add_overrides_argument, exit_with

# The direct form's flags (argparse names) and the config keys they set: used to build its config, to
# refuse them beside -opt, and to name the flag the user typed in error messages.
DIRECT_FLAGS = {
    "model": "path.pretrain_model_generator",
    "input": "datasets.test.dataroot",
    "output": "path.output",
    "recursive": "datasets.test.recursive",
    "gt": "datasets.test.dataroot_GT",
    "downscale_gt": "datasets.test.downscale_gt",
    "scale": "scale",
    "param_key": "path.param_key",
    "tile": "inference.tile_size",
    "tile_pad": "inference.tile_pad",
    "tile_overlap": "inference.tile_overlap",
    "tile_batch": "inference.tile_batch_size",
    "half": "fp16",
    "bf16": "bf16",
    "cpu": "gpu_ids",
    "suffix": "inference.suffix",
    "ext": "inference.ext",
    "alpha_upsampler": "inference.alpha_upsampler",
}


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def parse_tile(text: str) -> str | int | None:
    """``auto``, ``0`` (whole images) or a tile size."""
    if text == "auto":
        return text
    try:
        size = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto, 0 or a size in pixels, got {text!r}") from None
    return size or None


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser of ``test.py``."""
    parser = argparse.ArgumentParser(
        description="Upscale images with an ESRGAN generator, tile by tile; with ground truth, report PSNR/SSIM-Y."
    )
    parser.add_argument("-opt", "--opt", type=Path, help="a test config (e.g. options/test_esrgan_x4.yml)")
    add_overrides_argument(parser, "inference.tile_size=128 gpu_ids=[]")
    direct = parser.add_argument_group("without a config")
    direct.add_argument(
        "--model", type=Path, help="generator checkpoint (.pth or .safetensors, any RRDB layout)"
    )
    direct.add_argument("--input", "-i", type=Path, help="an image or a folder of images")
    direct.add_argument("--output", "-o", type=Path, help="output folder (default: results/<model name>)")
    direct.add_argument("--recursive", action="store_true", help="also read sub-folders of --input")
    direct.add_argument(
        "--gt", type=Path, help="folder of ground-truth images (same names): report PSNR/SSIM"
    )
    direct.add_argument(
        "--downscale-gt",
        action="store_true",
        help="--input holds GT images: upscale their MATLAB bicubic downscales and score them (DLAS)",
    )
    direct.add_argument(
        "--scale", type=int, help="expected upscaling factor (checked against the checkpoint)"
    )
    direct.add_argument(
        "--param-key", help="checkpoint entry holding the weights (default: params_ema, params, ...)"
    )
    direct.add_argument(
        "--tile", type=parse_tile, default="auto", help="tile size, auto, or 0 for whole images"
    )
    direct.add_argument("--tile-pad", type=int, default=DEFAULT_PAD, help="context pixels per tile side")
    direct.add_argument(
        "--tile-overlap", type=int, default=DEFAULT_OVERLAP, help="feathered pixels between tiles"
    )
    direct.add_argument("--tile-batch", type=int, default=1, help="tiles per forward pass")
    direct.add_argument("--half", action="store_true", help="float16 on CUDA")
    direct.add_argument(
        "--bf16", action="store_true", help="bfloat16 (only fast on GPUs and AVX-512-BF16/AMX CPUs)"
    )
    direct.add_argument("--cpu", action="store_true", help="run on the CPU even when CUDA is available")
    direct.add_argument("--suffix", help="outputs are <stem>_<suffix>.<ext> (default: x<scale>)")
    direct.add_argument("--ext", choices=OUTPUT_FORMATS, default="png", help="output format")
    direct.add_argument(
        "--alpha-upsampler", choices=("bicubic", "model"), default="bicubic", help="how alpha is enlarged"
    )
    return parser


def direct_data(args: argparse.Namespace) -> dict[str, Any]:
    """The config (as raw data) that the direct form's flags describe."""
    data: dict[str, Any] = {"name": args.model.stem or "model", "path": {"results_root": "results"}}
    for dest, key in DIRECT_FLAGS.items():
        value = getattr(args, dest)
        if dest == "cpu":
            value = [0] if torch.cuda.is_available() and not value else []
        *parents, last = key.split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = str(value) if isinstance(value, Path) else value
    return data


def config_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> TestConfig:
    """The config of ``-opt`` (with ``--set``), or the one the direct form's flags describe."""
    direct = [_flag(d) for d in DIRECT_FLAGS if getattr(args, d) != parser.get_default(d)]
    if args.opt is not None:
        if direct:
            raise ValueError(
                f"{', '.join(direct)}: not used with -opt; change the config with --set key=value"
            )
        return load_test_config(args.opt, args.overrides)
    if args.overrides:
        raise ValueError("--set needs -opt CONFIG")
    if args.model is None or args.input is None:
        raise ValueError("give -opt CONFIG, or --model CHECKPOINT and --input IMAGE_OR_FOLDER")
    try:
        return config_from_data(direct_data(args), "", Path.cwd())
    except OptionError as err:
        err.key = next((_flag(d) for d, key in DIRECT_FLAGS.items() if key == err.key), err.key)
        raise


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_test(config_from_args(args, parser))


def run() -> None:
    """Console-script entry point."""
    exit_with(main)
