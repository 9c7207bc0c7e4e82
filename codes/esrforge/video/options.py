"""The schema of a process_video config: the model keys every config shares, tiling, files and encoding.

Relative paths resolve against the config file's folder. The model keys (``scale``, ``gpu_ids``, ``fp16``,
``bf16``, ``channels_last``, ``networks``, ``path``) are :class:`~esrforge.options.model.ModelConfig`'s, and
the tiling keys of ``inference`` mean what they mean in a test config.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

from ..fields import InputPath, option, require
from ..fields.yaml_io import read_yaml
from ..inference.tiling import TileOptions
from ..options.loader import load_typed
from ..options.model import ModelConfig

BITRATE = re.compile(r"^(\d+(?:\.\d+)?)([kKmMgG]?)$")
BITRATE_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}


def parse_bitrate(text: str) -> int:
    """``8M`` -> 8000000 bits/s (suffixes k, M, G; decimal)."""
    match = BITRATE.match(text.strip())
    if match is None:
        raise ValueError(f"expected a bitrate such as 8M or 800k, got {text!r}")
    return round(float(match.group(1)) * BITRATE_UNITS[match.group(2).lower()])


def video_encoder(name: str) -> av.Codec | None:
    """FFmpeg's video encoder called ``name``, if there is one."""
    try:
        codec = av.Codec(name, "w")
    except ValueError:
        return None
    return codec if codec.type == "video" else None


def supported_formats(name: str) -> list[str]:
    """The pixel formats the encoder ``name`` takes (empty when it does not say)."""
    codec = video_encoder(name)
    return [f.name for f in (codec.video_formats or ())] if codec is not None else []


def _some(names: list[str], shown: int = 8) -> str:
    """The first names and how many more."""
    more = f", ... ({len(names) - shown} more)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


@dataclass(frozen=True, kw_only=True)
class VideoFilesSection:
    """The video read, the files written, and how the work is cut into resumable segments."""

    input: InputPath = option(doc="the video to upscale (any container and codec FFmpeg reads)")
    output: Path | None = option(
        None,
        doc="the upscaled video (.mkv, .mp4, .mov); null: <input stem>_x<scale> beside the input, with the "
        "input's suffix when it is .mkv, .mp4, .mov or .m4v, else .mkv",
    )
    frames_out: Path | None = option(
        None, doc="also write every output frame as a PNG into this folder (00000000.png, ...), as DLAS did"
    )
    segment_seconds: float = option(
        30.0, doc="encode in segments of about this many seconds; an interrupted run resumes at a segment"
    )
    work_dir: Path | None = option(
        None, doc="folder for segments and progress.json; null: .<output name>.parts beside the output"
    )
    keep_segments: bool = option(False, doc="keep the work folder once the output is complete")

    def __post_init__(self) -> None:
        require(self.segment_seconds > 0, "segment_seconds", "a positive duration", self.segment_seconds)


@dataclass(frozen=True, kw_only=True)
class EncodeOptions:
    """The video encoder; audio and subtitle streams are always copied without re-encoding."""

    codec: str = option(
        "libx264", doc="encoder: libx264, libx265, ffv1 (lossless), libsvtav1, h264_nvenc, ..."
    )
    crf: int | None = option(
        18, doc="constant rate factor for encoders that have one (x264/x265: 0 lossless, 18 near-transparent)"
    )
    bitrate: str | None = option(None, doc="target bitrate such as 8M instead of crf; null: use crf")
    preset: str | None = option(None, doc="encoder preset (x264/x265: ultrafast ... veryslow); null: default")
    pix_fmt: str = option(
        "yuv420p",
        doc="yuv420p (plays everywhere), yuv444p, yuv420p10le (10-bit), bgr0 (lossless RGB with ffv1)",
    )
    options: dict[str, str] = option(
        factory=dict, doc="more encoder options (FFmpeg AVOptions), e.g. {tune: animation}"
    )

    def __post_init__(self) -> None:
        require(video_encoder(self.codec) is not None, "codec", "a video encoder FFmpeg has", self.codec)
        formats = supported_formats(self.codec)
        require(
            not formats or self.pix_fmt in formats,
            "pix_fmt",
            f"a pixel format {self.codec} takes ({_some(formats)})",
            self.pix_fmt,
        )
        if self.crf is not None:
            require(self.crf >= 0, "crf", "0 or more", self.crf)
        if self.bitrate is not None:
            require(
                BITRATE.match(self.bitrate.strip()) is not None, "bitrate", "a rate such as 8M", self.bitrate
            )

    @property
    def bit_rate(self) -> int | None:
        """``bitrate`` in bits per second."""
        return None if self.bitrate is None else parse_bitrate(self.bitrate)

    def codec_options(self) -> dict[str, str]:
        """The AVOptions handed to the encoder (crf only without a bitrate)."""
        chosen = {"crf": str(self.crf)} if self.crf is not None and self.bitrate is None else {}
        if self.preset is not None:
            chosen["preset"] = self.preset
        return {**chosen, **self.options}


@dataclass(frozen=True, kw_only=True)
class VideoInferenceSection(TileOptions):
    """Tiling (see TileOptions) and frame batching."""

    frame_batch_size: int = option(
        1, doc="frames per forward pass when a whole frame fits one tile (small videos, tile_size null)"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.frame_batch_size >= 1, "frame_batch_size", "a positive count", self.frame_batch_size)


@dataclass(frozen=True, kw_only=True)
class VideoConfig(ModelConfig):
    """A whole process_video config (the model keys: see ModelConfig)."""

    video: VideoFilesSection = option(doc="input, output, PNG frames and segments")
    encode: EncodeOptions = option(factory=EncodeOptions, doc="the video encoder")
    inference: VideoInferenceSection = option(factory=VideoInferenceSection, doc="tiling and frame batches")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.require_weights()


def video_config_from_data(
    data: dict[str, Any], source: str, base_dir: Path, overrides: Sequence[str] = ()
) -> VideoConfig:
    """Check raw config ``data`` (from ``source``; paths relative to ``base_dir``) and type it."""
    return load_typed(VideoConfig, data, source, base_dir, overrides)


def load_video_config(path: Path | str, overrides: Sequence[str] = ()) -> VideoConfig:
    """Read a process_video config file, apply ``--set`` overrides and return the checked config."""
    path = Path(path)
    return video_config_from_data(read_yaml(path), str(path), path.resolve().parent, overrides)
