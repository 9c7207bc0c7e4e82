"""``python codes/test.py -opt options/test_esrgan_x4.yml [--set key=value ...]``, or without a config:
``python codes/test.py --model FILE --input FILE_OR_DIR [--output DIR] [--tile 256 --tile-pad 16 --half]``.

Exit codes: 0 done, 1 some images failed (each is reported, the rest still run), 2 a bad config,
argument, checkpoint or input folder (one line on stderr).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from ..inference.options import OUTPUT_FORMATS, config_from_data, load_test_config
from ..inference.runner import run_test
from .common import add_overrides_argument, exit_with
from .direct import MODEL_FLAGS, add_model_arguments, config_from_args

FLAGS = {
    **MODEL_FLAGS,
    "input": "datasets.test.dataroot",
    "output": "path.output",
    "recursive": "datasets.test.recursive",
    "gt": "datasets.test.dataroot_GT",
    "downscale_gt": "datasets.test.downscale_gt",
    "suffix": "inference.suffix",
    "ext": "inference.ext",
    "alpha_upsampler": "inference.alpha_upsampler",
}
"""The direct form's flags and the config keys they set."""


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser of ``test.py``."""
    parser = argparse.ArgumentParser(
        description="Upscale images with an ESRGAN generator, tile by tile; with ground truth, report PSNR/SSIM-Y."
    )
    parser.add_argument("-opt", "--opt", type=Path, help="a test config (e.g. options/test_esrgan_x4.yml)")
    add_overrides_argument(parser, "inference.tile_size=128 gpu_ids=[]")
    direct = parser.add_argument_group("without a config")
    direct.add_argument("--input", "-i", type=Path, help="an image or a folder of images")
    direct.add_argument("--output", "-o", type=Path, help="output folder (default: results/<model name>)")
    direct.add_argument("--recursive", action="store_true", help="also read sub-folders of --input")
    direct.add_argument(
        "--gt",
        type=Path,
        help="folder of ground-truth images (same names), or one for one input image: report PSNR/SSIM",
    )
    direct.add_argument(
        "--downscale-gt",
        action="store_true",
        help="--input holds GT images: upscale their MATLAB bicubic downscales and score them (DLAS)",
    )
    add_model_arguments(direct, "images")
    direct.add_argument("--suffix", help="outputs are <stem>_<suffix>.<ext> (default: x<scale>)")
    direct.add_argument("--ext", choices=OUTPUT_FORMATS, default="png", help="output format")
    direct.add_argument(
        "--alpha-upsampler", choices=("bicubic", "model"), default="bicubic", help="how alpha is enlarged"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    base = {"name": Path(args.model or "model").stem or "model", "path": {"results_root": "results"}}
    config = config_from_args(
        args, parser, FLAGS, load_test_config, config_from_data, base, "IMAGE_OR_FOLDER"
    )
    return run_test(config)


def run() -> None:
    """Console-script entry point."""
    exit_with(main)
