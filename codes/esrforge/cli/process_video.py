"""``python codes/process_video.py -opt options/rrdb_process_video.yml [--set key=value ...]``, or without a
config: ``python codes/process_video.py --model FILE --input in.mp4 [--output out.mp4] [--tile 256 --half]``.

Decodes, upscales and encodes in one stream (no frames on disk), keeps every frame's timestamp, copies
audio and subtitles, and resumes an interrupted job at its last finished segment when run again.
Exit codes: 0 done, 2 a bad config, argument, checkpoint or input (one line on stderr).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..inference.tiling import DEFAULT_OVERLAP, DEFAULT_PAD
from ..options.errors import OptionError
from ..video.options import VideoConfig, load_video_config, video_config_from_data
from ..video.pipeline import run_video
from .common import add_overrides_argument, exit_with
from .test import parse_tile

# Config keys of the direct form's flags, for error messages that name the flag the user typed.
FLAGS = {
    "path.pretrain_model_generator": "--model",
    "video.input": "--input",
    "video.output": "--output",
    "video.frames_out": "--frames-out",
    "video.segment_seconds": "--segment-seconds",
    "scale": "--scale",
    "inference.tile_size": "--tile",
    "inference.tile_pad": "--tile-pad",
    "inference.tile_overlap": "--tile-overlap",
    "inference.tile_batch_size": "--tile-batch",
    "inference.frame_batch_size": "--batch",
    "encode.codec": "--codec",
    "encode.crf": "--crf",
    "encode.bitrate": "--bitrate",
    "encode.preset": "--preset",
    "encode.pix_fmt": "--pix-fmt",
}

DIRECT_ONLY = (
    "model", "input", "output", "frames_out", "segment_seconds", "keep_segments", "scale", "param_key", "tile",
    "tile_pad", "tile_overlap", "tile_batch", "batch", "half", "bf16", "cpu", "codec", "crf", "bitrate", "preset",
    "pix_fmt",
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser of ``process_video.py``."""
    parser = argparse.ArgumentParser(
        description="Upscale a video with an ESRGAN generator, keeping its timing, audio and subtitles."
    )
    parser.add_argument("-opt", "--opt", type=Path, help="a config (e.g. options/rrdb_process_video.yml)")
    add_overrides_argument(parser, "encode.crf=16 gpu_ids=[]")
    direct = parser.add_argument_group("without a config")
    direct.add_argument(
        "--model", type=Path, help="generator checkpoint (.pth or .safetensors, any RRDB layout)"
    )
    direct.add_argument("--input", "-i", type=Path, help="the video to upscale")
    direct.add_argument("--output", "-o", type=Path, help="output video (default: <input>_x<scale>.mkv/.mp4)")
    direct.add_argument(
        "--frames-out", type=Path, help="also write every output frame as PNG into this folder"
    )
    direct.add_argument(
        "--segment-seconds", type=float, default=30.0, help="length of the resumable segments"
    )
    direct.add_argument("--keep-segments", action="store_true", help="keep the segment files when done")
    direct.add_argument(
        "--scale", type=int, help="expected upscaling factor (checked against the checkpoint)"
    )
    direct.add_argument("--param-key", help="checkpoint entry holding the weights (default: params_ema, ...)")
    direct.add_argument(
        "--tile", type=parse_tile, default="auto", help="tile size, auto, or 0 for whole frames"
    )
    direct.add_argument("--tile-pad", type=int, default=DEFAULT_PAD, help="context pixels per tile side")
    direct.add_argument(
        "--tile-overlap", type=int, default=DEFAULT_OVERLAP, help="feathered pixels between tiles"
    )
    direct.add_argument("--tile-batch", type=int, default=1, help="tiles per forward pass")
    direct.add_argument(
        "--batch", type=int, default=1, help="frames per forward pass (frames that fit one tile)"
    )
    direct.add_argument("--half", action="store_true", help="float16 on CUDA")
    direct.add_argument(
        "--bf16", action="store_true", help="bfloat16 (only fast on GPUs and AVX-512-BF16/AMX CPUs)"
    )
    direct.add_argument("--cpu", action="store_true", help="run on the CPU even when CUDA is available")
    direct.add_argument("--codec", default="libx264", help="video encoder: libx264, libx265, ffv1, ...")
    direct.add_argument("--crf", type=int, default=18, help="constant rate factor (x264/x265)")
    direct.add_argument("--bitrate", help="target bitrate such as 8M, instead of --crf")
    direct.add_argument("--preset", help="encoder preset, e.g. slow")
    direct.add_argument(
        "--pix-fmt", default="yuv420p", help="pixel format: yuv420p, yuv444p, yuv420p10le, ..."
    )
    return parser


def direct_data(args: argparse.Namespace) -> dict[str, Any]:
    """The config (as raw data) that the direct form's flags describe."""
    return {
        "scale": args.scale,
        "gpu_ids": [0] if torch.cuda.is_available() and not args.cpu else [],
        "fp16": args.half,
        "bf16": args.bf16,
        "path": {"pretrain_model_generator": str(args.model), "param_key": args.param_key},
        "video": {
            "input": str(args.input),
            "output": None if args.output is None else str(args.output),
            "frames_out": None if args.frames_out is None else str(args.frames_out),
            "segment_seconds": args.segment_seconds,
            "keep_segments": args.keep_segments,
        },
        "encode": {
            "codec": args.codec,
            "crf": args.crf,
            "bitrate": args.bitrate,
            "preset": args.preset,
            "pix_fmt": args.pix_fmt,
        },
        "inference": {
            "tile_size": args.tile,
            "tile_pad": args.tile_pad,
            "tile_overlap": args.tile_overlap,
            "tile_batch_size": args.tile_batch,
            "frame_batch_size": args.batch,
        },
    }


def config_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> VideoConfig:
    """The config of ``-opt`` (with ``--set``), or the one the direct form's flags describe."""
    direct = [f"--{d.replace('_', '-')}" for d in DIRECT_ONLY if getattr(args, d) != parser.get_default(d)]
    if args.opt is not None:
        if direct:
            raise ValueError(
                f"{', '.join(direct)}: not used with -opt; change the config with --set key=value"
            )
        return load_video_config(args.opt, args.overrides)
    if args.overrides:
        raise ValueError("--set needs -opt CONFIG")
    if args.model is None or args.input is None:
        raise ValueError("give -opt CONFIG, or --model CHECKPOINT and --input VIDEO")
    try:
        return video_config_from_data(direct_data(args), "", Path.cwd())
    except OptionError as err:
        err.key = FLAGS.get(err.key, err.key)
        raise


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_video(config_from_args(args, parser))


def run() -> None:
    """Console-script entry point."""
    exit_with(main)
