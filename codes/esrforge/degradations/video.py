"""Video codec artefacts: the sample as one H.264 or HEVC frame, encoded and decoded with FFmpeg.

A single frame is intra-coded only: this reproduces the codec's block transform and quantisation,
its deblocking (and HEVC's SAO) and the 4:2:0 chroma subsampling, not the artefacts of motion
compensation (smeared or dragged blocks, flicker between frames).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import av
import numpy as np
import torch
from av.video.codeccontext import VideoCodecContext
from torch import Tensor
from torch.nn import functional as F

from ..fields import option, require
from .base import DEGRADATIONS, Degradation, DegradationOptions, SampleRandom, require_range
from .noise import to_grey

Codec = Literal["libx264", "libx265"]
Preset = Literal[
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo"
]
DECODERS: dict[str, str] = {"libx264": "h264", "libx265": "hevc"}
MIN_SIDE: dict[str, int] = {"libx264": 2, "libx265": 16}
"""The smallest frame side each encoder opens with (x265 refuses frames under 16 x 16)."""
PIX_FMT = "yuv420p"


@dataclass(frozen=True, kw_only=True)
class VideoCodecOptions(DegradationOptions):
    """Encode with a codec drawn from ``codecs`` at a CRF drawn from ``crf_range`` and decode back."""

    codecs: list[Codec] = option(
        factory=lambda: ["libx264"], doc="encoders, one drawn uniformly: libx264 (H.264), libx265 (HEVC)"
    )
    crf_range: tuple[int, int] = option(
        (18, 32), doc="constant rate factor, an integer drawn in [a, b] (0 lossless, 51 worst)"
    )
    preset: Preset = option("medium", doc="encoder preset, ultrafast ... placebo (slower: better per bit)")
    threads: int = option(1, doc="encoder and decoder threads; 0: FFmpeg's choice (more is rarely faster)")

    def __post_init__(self) -> None:
        super().__post_init__()
        require(len(self.codecs) > 0, "codecs", "at least one encoder", self.codecs)
        require_range(self.crf_range, "crf_range", 0, 51)
        require(self.threads >= 0, "threads", "0 or a number of threads", self.threads)


def codec_round_trip(rgb: np.ndarray, codec: str, crf: int, preset: str, threads: int = 1) -> np.ndarray:
    """Encode ``H x W x 3`` uint8 RGB (even sides) as one ``yuv420p`` frame and decode it to RGB.

    The packets stay in memory: no container is written, the decoder reads the raw bitstream.
    """
    height, width = rgb.shape[:2]
    encoder = av.CodecContext.create(codec, "w")
    assert isinstance(encoder, VideoCodecContext)
    encoder.width, encoder.height, encoder.pix_fmt = width, height, PIX_FMT
    encoder.time_base = Fraction(1, 25)
    encoder.thread_count = threads
    settings = {"crf": str(crf), "preset": preset}
    if codec == "libx265":
        settings["x265-params"] = "log-level=error"  # x265 prints its settings to stderr otherwise
    encoder.options = settings
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=PIX_FMT)
    packets = [*encoder.encode(frame), *encoder.encode(None)]
    decoder = av.CodecContext.create(DECODERS[codec], "r")
    assert isinstance(decoder, VideoCodecContext)
    decoder.thread_count = threads
    frames = [f for packet in [*packets, None] for f in decoder.decode(packet)]
    if len(frames) != 1:
        raise RuntimeError(f"video_codec: {codec} gave back {len(frames)} frames for one")
    return frames[0].to_ndarray(format="rgb24")


@DEGRADATIONS.register(VideoCodecOptions, name="video_codec")
class VideoCodec(Degradation[VideoCodecOptions]):
    """An intra-coded H.264/HEVC round trip of the sample on the CPU (4:2:0, 8 bits).

    Odd sides (and x265's sides under 16) are padded by replication for the encoder and cropped
    back; a grey sample is coded as RGB and comes back as the decoded luma.
    """

    def apply(self, image: Tensor, rng: SampleRandom) -> Tensor:
        o = self.options
        codec = str(rng.choice(o.codecs))
        crf = int(rng.choice(range(o.crf_range[0], o.crf_range[1] + 1)))
        rng.note("video_codec", codec=codec, crf=crf)
        height, width = image.shape[-2:]
        side = MIN_SIDE[codec]
        pad_h, pad_w = max(side, height + height % 2) - height, max(side, width + width % 2) - width
        rgb = image.detach().float().clamp(0, 1)
        rgb = rgb.expand(-1, 3, -1, -1) if rgb.shape[1] == 1 else rgb
        if pad_h or pad_w:
            rgb = F.pad(rgb, (0, pad_w, 0, pad_h), mode="replicate")
        pixels = (rgb[0] * 255.0).round().to(torch.uint8).permute(1, 2, 0).contiguous().cpu().numpy()
        decoded = codec_round_trip(pixels, codec, crf, o.preset, o.threads)
        out = torch.from_numpy(decoded).permute(2, 0, 1)[None, :, :height, :width].float() / 255.0
        if image.shape[1] == 1:
            out = to_grey(out).clamp(0, 1)
        return out.to(image.device, image.dtype)
