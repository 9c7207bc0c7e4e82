"""Encode upscaled RGB frames into a segment file, keeping each frame's timestamp and duration exactly."""

from __future__ import annotations

import io
import logging
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.container import OutputContainer
from av.stream import Stream
from av.video.reformatter import Colorspace
from av.video.stream import VideoStream

from .options import EncodeOptions
from .source import RGB_FORMATS, Colour

log = logging.getLogger(__name__)

SWS_COLORSPACES = {
    1: Colorspace.ITU709,
    4: Colorspace.FCC,
    5: Colorspace.ITU601,
    6: Colorspace.SMPTE170M,
    7: Colorspace.SMPTE240M,
    9: Colorspace.BT2020,
    10: Colorspace.BT2020,
}
"""FFmpeg's AVColorSpace values and the swscale matrices that convert RGB to them."""
MAX_REORDER = 16
"""The longest B-frame reordering FFmpeg supports (MAX_REORDER_DELAY)."""


@dataclass(frozen=True)
class VideoSpec:
    """What the encoder must know about the output video stream."""

    width: int
    height: int
    time_base: Fraction
    rate: Fraction
    sample_aspect_ratio: Fraction | None = None
    colour: Colour | None = None
    display_matrix: tuple[int, ...] | None = None
    """The source's rotation and flips (see :func:`~esrforge.video.source.display_matrix`)."""


def pixel_depth(pix_fmt: str) -> int:
    """8 or 16: the RGB bits per channel the frames should carry to fill ``pix_fmt``."""
    try:
        bits = max(c.bits for c in av.VideoFormat(pix_fmt).components)
    except ValueError:
        raise ValueError(f"encode.pix_fmt: unknown pixel format {pix_fmt!r}") from None
    return 8 if bits <= 8 else 16


def even_size(pix_fmt: str, width: int, height: int) -> tuple[int, int]:
    """The frame size ``pix_fmt`` can store: odd sides grow by one where chroma is subsampled."""
    probe = av.VideoFormat(pix_fmt, 2, 2)
    return width + width % (2 // probe.chroma_width()), height + height % (2 // probe.chroma_height())


def add_video_encoder(container: OutputContainer, options: EncodeOptions, spec: VideoSpec) -> VideoStream:
    """A video stream of ``container`` with the configured encoder (checked by :class:`EncodeOptions`)."""
    try:
        stream = container.add_stream(options.codec, rate=spec.rate, options=options.codec_options())
    except ValueError as err:  # the container format cannot hold this codec
        raise ValueError(f"encode.codec: {err}") from None
    assert isinstance(stream, VideoStream)
    stream.width, stream.height = spec.width, spec.height
    stream.pix_fmt = options.pix_fmt
    stream.time_base = spec.time_base
    context = stream.codec_context
    context.time_base = spec.time_base
    if options.bit_rate is not None:
        context.bit_rate = options.bit_rate
    if spec.sample_aspect_ratio:
        context.sample_aspect_ratio = spec.sample_aspect_ratio
    if spec.display_matrix is not None:
        stream.set_display_matrix(spec.display_matrix)
    if spec.colour is not None and not av.VideoFormat(options.pix_fmt).is_rgb:
        context.colorspace, context.color_range = spec.colour.space, spec.colour.range
        context.color_primaries, context.color_trc = spec.colour.primaries, spec.colour.trc
    return stream


def check_output(format_name: str, options: EncodeOptions, spec: VideoSpec, copied: list[Stream]) -> None:
    """Open the encoder and write a header in memory: bad codecs, options, formats fail before any work."""
    container = av.open(io.BytesIO(), "w", format=format_name)
    try:
        stream = add_video_encoder(container, options, spec)
        for original in copied:
            add_copy(container, original)
        try:
            container.start_encoding()
        except av.FFmpegError as err:
            raise ValueError(
                f"encode: {options.codec} refuses these settings ({err.strerror or err})"
            ) from None
        unused = sorted(stream.codec_context.options)
        if unused:
            log.info("%s has no option %s: ignored", options.codec, ", ".join(unused))
    finally:
        container.close()


def add_copy(container: OutputContainer, original: Stream) -> Stream:
    """An output stream that takes ``original``'s packets as they are (with its language and title)."""
    try:
        stream = container.add_stream_from_template(original)
    except ValueError:
        name = original.codec_context.name if original.codec_context else "?"
        raise ValueError(
            f"a {container.format.name} file cannot hold the {original.type} stream #{original.index} "
            f"({name}); choose another output container, such as .mkv"
        ) from None
    for key in ("language", "title"):
        if key in original.metadata:
            stream.metadata[key] = original.metadata[key]
    stream.disposition = original.disposition
    return stream


def encoder_frame(image: np.ndarray, pix_fmt: str, colour: Colour | None) -> av.VideoFrame:
    """An ``H x W x 3`` RGB array as a frame of ``pix_fmt``, converted with the source's colour matrix."""
    frame = av.VideoFrame.from_ndarray(image, format=RGB_FORMATS[8 if image.dtype == np.uint8 else 16])
    if colour is None:
        return frame.reformat(format=pix_fmt)
    return frame.reformat(
        format=pix_fmt,
        dst_colorspace=SWS_COLORSPACES.get(colour.space),
        dst_color_range=colour.range or None,
    )


class ReorderDepth:
    """The largest number of earlier packets (in decode order) with a later pts: B-frame delay."""

    def __init__(self) -> None:
        self.recent: deque[int] = deque(maxlen=MAX_REORDER)
        self.depth = 0

    def add(self, pts: int) -> None:
        self.depth = max(self.depth, sum(p > pts for p in self.recent))
        self.recent.append(pts)


@dataclass(frozen=True)
class EncodedSegment:
    """What a finished segment holds."""

    frames: int
    first_pts: int
    last_pts: int
    end_pts: int
    """Where its last frame ends (``last_pts`` + that frame's duration)."""
    reorder: int


class SegmentEncoder:
    """Encodes frames with exact pts and durations into one file at ``path`` (the caller owns the file)."""

    def __init__(self, path: Path, format_name: str, options: EncodeOptions, spec: VideoSpec) -> None:
        self.container = av.open(str(path), "w", format=format_name)
        try:
            self.stream = add_video_encoder(self.container, options, spec)
        except BaseException:
            self.container.close()
            raise
        self.pix_fmt, self.colour, self.time_base = options.pix_fmt, spec.colour, spec.time_base
        self.size = (spec.width, spec.height)
        self.durations: dict[int, int] = {}
        self.reorder = ReorderDepth()
        self.frames, self.first_pts, self.last_pts, self.end_pts = 0, 0, 0, 0

    def add(self, image: np.ndarray, pts: int, duration: int) -> None:
        """Encode one ``H x W x 3`` RGB frame shown at ``pts`` for ``duration`` ticks."""
        height, width = image.shape[:2]
        if (width, height) != self.size:
            pad = ((0, self.size[1] - height), (0, self.size[0] - width), (0, 0))
            image = np.pad(image, pad, mode="edge")
        frame = encoder_frame(image, self.pix_fmt, self.colour)
        frame.pts, frame.time_base = pts, self.time_base
        self.durations[pts] = duration
        self.first_pts = pts if self.frames == 0 else self.first_pts
        self.frames, self.last_pts, self.end_pts = self.frames + 1, pts, pts + duration
        self._mux(self.stream.encode(frame))

    def _mux(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            if packet.pts is None:
                raise RuntimeError(f"{self.stream.codec_context.name} produced a packet without pts")
            packet.duration = self.durations.pop(packet.pts)
            self.reorder.add(packet.pts)
            self.container.mux(packet)

    def finish(self) -> EncodedSegment:
        """Flush the encoder and close the file."""
        self._mux(self.stream.encode(None))
        self.container.close()
        return EncodedSegment(self.frames, self.first_pts, self.last_pts, self.end_pts, self.reorder.depth)

    def close(self) -> None:
        """Close without flushing (after an error)."""
        self.container.close()
