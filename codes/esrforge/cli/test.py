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
from .common import exit_with

# Config keys of the direct form's flags, for error messages that name the flag the user typed.
FLAGS = {
    "path.pretrain_model_generator": "--model",
    "datasets.test.dataroot": "--input",
    "datasets.test.dataroot_GT": "--gt",
    "path.output": "--output",
    "scale": "--scale",
    "inference.tile_size": "--tile",
    "inference.tile_pad": "--tile-pad",
    "inference.tile_overlap": "--tile-overlap",
    "inference.tile_batch_size": "--tile-batch",
    "inference.suffix": "--suffix",
}


DIRECT_ONLY = (
    "model", "input", "output", "recursive", "gt", "downscale_gt", "scale", "param_key", "tile", "tile_pad",
    "tile_overlap", "tile_batch", "half", "bf16", "cpu", "suffix", "ext", "alpha_upsampler",
)  # fmt: skip


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
    parser.add_argument(
        "--set",
        dest="overrides",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="override config values, e.g. --set inference.tile_size=128 gpu_ids=[]",
    )
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
    model: Path = args.model
    dataset: dict[str, Any] = {"dataroot": str(args.input), "downscale_gt": args.downscale_gt}
    dataset.update(recursive=args.recursive, dataroot_GT=None if args.gt is None else str(args.gt))
    return {
        "name": model.stem or "model",
        "scale": args.scale,
        "gpu_ids": [0] if torch.cuda.is_available() and not args.cpu else [],
        "fp16": args.half,
        "bf16": args.bf16,
        "datasets": {"test": dataset},
        "path": {
            "pretrain_model_generator": str(model),
            "param_key": args.param_key,
            "results_root": "results",
            "output": None if args.output is None else str(args.output),
        },
        "inference": {
            "tile_size": args.tile,
            "tile_pad": args.tile_pad,
            "tile_overlap": args.tile_overlap,
            "tile_batch_size": args.tile_batch,
            "suffix": args.suffix,
            "ext": args.ext,
            "alpha_upsampler": args.alpha_upsampler,
        },
    }


def config_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> TestConfig:
    """The config of ``-opt`` (with ``--set``), or the one the direct form's flags describe."""
    direct = [f"--{d.replace('_', '-')}" for d in DIRECT_ONLY if getattr(args, d) != parser.get_default(d)]
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
        err.key = FLAGS.get(err.key, err.key)
        raise


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_test(config_from_args(args, parser))


def run() -> None:
    """Console-script entry point."""
    exit_with(main)
