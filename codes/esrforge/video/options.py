"""The schema of a process_video config: the network and tiling as in a test config, plus files and encoding.

Relative paths resolve against the config file's folder. The model keys (``scale``, ``gpu_ids``, ``fp16``,
``bf16``, ``channels_last``, ``networks``, ``path``) and the tiling keys of ``inference`` mean what they
mean in a test config (see :mod:`esrforge.inference.options`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

from ..inference.options import (
    InferenceSection,
    TestConfig,
    TestDatasetOptions,
    TestDatasetsSection,
    TestNetworksSection,
    TestPathSection,
)
from ..inference.tiling import TileOptions
from ..options.fields import InputPath, option, require
from ..options.loader import load_typed
from ..options.schema import SCALES
from ..options.yaml_io import read_yaml

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
class ModelPathSection:
    """Where the weights come from."""

    pretrain_model_generator: InputPath = option(
        doc="generator weights (ours, BasicSR, Real-ESRGAN params_ema, original ESRGAN, model.N)"
    )
    param_key: str | None = option(None, doc="checkpoint entry that holds the weights; null: params_ema, ...")
    strict_load: bool = option(True, doc="refuse weights with missing or unexpected keys")


@dataclass(frozen=True, kw_only=True)
class VideoConfig:
    """A whole process_video config."""

    scale: int | None = option(None, doc="expected upscaling factor; null: the checkpoint's")
    gpu_ids: list[int] = option(factory=lambda: [0], doc="CUDA device to use (the first); []: the CPU")
    fp16: bool = option(False, doc="float16 on CUDA (ignored with a warning on the CPU)")
    bf16: bool = option(False, doc="bfloat16 (CUDA, or CPUs with AVX-512-BF16/AMX; slower on others)")
    channels_last: bool = option(True, doc="run convolutions in channels_last memory format")
    networks: TestNetworksSection = option(factory=TestNetworksSection, doc="the network")
    path: ModelPathSection = option(doc="the generator weights")
    video: VideoFilesSection = option(doc="input, output, PNG frames and segments")
    encode: EncodeOptions = option(factory=EncodeOptions, doc="the video encoder")
    inference: VideoInferenceSection = option(factory=VideoInferenceSection, doc="tiling and frame batches")

    def __post_init__(self) -> None:
        if self.scale is not None:
            require(self.scale in SCALES, "scale", "one of 1, 2, 4, 8 or null", self.scale)
            scale = getattr(self.networks.generator, "scale", self.scale)
            require(
                scale == self.scale, "networks.generator.scale", f"the top-level scale {self.scale}", scale
            )
        require(all(i >= 0 for i in self.gpu_ids), "gpu_ids", "device indices >= 0", self.gpu_ids)
        require(not (self.fp16 and self.bf16), "bf16", "fp16 and bf16 not both true", self.bf16)

    def model_config(self) -> TestConfig:
        """The test config of the same network, device and tiling (for :func:`~esrforge.inference.runner.build_upscaler`)."""
        tiling = self.inference
        return TestConfig(
            name="video",
            scale=self.scale,
            gpu_ids=self.gpu_ids,
            fp16=self.fp16,
            bf16=self.bf16,
            channels_last=self.channels_last,
            datasets=TestDatasetsSection(test=TestDatasetOptions(dataroot=self.video.input)),
            networks=self.networks,
            path=TestPathSection(
                pretrain_model_generator=self.path.pretrain_model_generator,
                param_key=self.path.param_key,
                strict_load=self.path.strict_load,
            ),
            inference=InferenceSection(
                tile_size=tiling.tile_size,
                tile_pad=tiling.tile_pad,
                tile_overlap=tiling.tile_overlap,
                tile_batch_size=tiling.tile_batch_size,
            ),
        )


def video_config_from_data(
    data: dict[str, Any], source: str, base_dir: Path, overrides: Sequence[str] = ()
) -> VideoConfig:
    """Check raw config ``data`` (from ``source``; paths relative to ``base_dir``) and type it."""
    return load_typed(VideoConfig, data, source, base_dir, overrides)


def load_video_config(path: Path | str, overrides: Sequence[str] = ()) -> VideoConfig:
    """Read a process_video config file, apply ``--set`` overrides and return the checked config."""
    path = Path(path)
    return video_config_from_data(read_yaml(path), str(path), path.resolve().parent, overrides)
