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

from ..video.options import load_video_config, video_config_from_data
from ..video.pipeline import run_video
from .common import add_overrides_argument, exit_with
from .direct import MODEL_FLAGS, add_model_arguments, config_from_args

FLAGS = {
    **MODEL_FLAGS,
    "input": "video.input",
    "output": "video.output",
    "frames_out": "video.frames_out",
    "segment_seconds": "video.segment_seconds",
    "keep_segments": "video.keep_segments",
    "batch": "inference.frame_batch_size",
    "codec": "encode.codec",
    "crf": "encode.crf",
    "bitrate": "encode.bitrate",
    "preset": "encode.preset",
    "pix_fmt": "encode.pix_fmt",
}
"""The direct form's flags and the config keys they set."""


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser of ``process_video.py``."""
    parser = argparse.ArgumentParser(
        description="Upscale a video with an ESRGAN generator, keeping its timing, audio and subtitles."
    )
    parser.add_argument("-opt", "--opt", type=Path, help="a config (e.g. options/rrdb_process_video.yml)")
    add_overrides_argument(parser, "encode.crf=16 gpu_ids=[]")
    direct = parser.add_argument_group("without a config")
    direct.add_argument("--input", "-i", type=Path, help="the video to upscale")
    direct.add_argument("--output", "-o", type=Path, help="output video (default: <input>_x<scale>.mkv/.mp4)")
    direct.add_argument(
        "--frames-out", type=Path, help="also write every output frame as PNG into this folder"
    )
    direct.add_argument(
        "--segment-seconds", type=float, default=30.0, help="length of the resumable segments"
    )
    direct.add_argument("--keep-segments", action="store_true", help="keep the segment files when done")
    add_model_arguments(direct, "frames")
    direct.add_argument(
        "--batch", type=int, default=1, help="frames per forward pass (frames that fit one tile)"
    )
    direct.add_argument("--codec", default="libx264", help="video encoder: libx264, libx265, ffv1, ...")
    direct.add_argument("--crf", type=int, default=18, help="constant rate factor (x264/x265)")
    direct.add_argument("--bitrate", help="target bitrate such as 8M, instead of --crf")
    direct.add_argument("--preset", help="encoder preset, e.g. slow")
    direct.add_argument(
        "--pix-fmt", default="yuv420p", help="pixel format: yuv420p, yuv444p, yuv420p10le, ..."
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    config = config_from_args(args, parser, FLAGS, load_video_config, video_config_from_data, {}, "VIDEO")
    return run_video(config)


def run() -> None:
    """Console-script entry point."""
    exit_with(main)
