"""Read a video's frames in presentation order, as RGB arrays with exact timestamps and durations."""

from __future__ import annotations

import logging
import struct
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import cast

import av
import numpy as np
from av.container import InputContainer
from av.sidedata.sidedata import SideData
from av.stream import Disposition
from av.video.frame import VideoFrame
from av.video.stream import VideoStream

log = logging.getLogger(__name__)

RGB_FORMATS = {8: "rgb24", 16: "rgb48le"}
"""The packed RGB pixel format frames are converted to, by bits per channel."""


@dataclass(frozen=True)
class Colour:
    """A stream's colour description (FFmpeg enum values); RGB<->YUV conversions use the same matrix."""

    space: int
    range: int
    primaries: int
    trc: int


@dataclass(frozen=True)
class SourceFrame:
    """One decoded frame: its number, timing (in the stream's time base) and pixels."""

    index: int
    pts: int
    duration: int
    """Ticks until the next frame (for the last frame: its own duration, or the previous one's)."""
    image: np.ndarray
    """``H x W x 3`` RGB, uint8 or uint16."""


def open_input(path: Path) -> InputContainer:
    """Open ``path`` for reading; errors name the file in one line."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such video file")
    try:
        container = av.open(str(path), "r")
    except av.FFmpegError as err:
        raise ValueError(f"{path}: not a video FFmpeg can read ({err.strerror or err})") from None
    if container.format.name.startswith("image2") or container.format.name.endswith("_pipe"):
        container.close()
        raise ValueError(f"{path}: a still image, not a video; upscale images with test.py")
    return container


def colour(frame: VideoFrame) -> Colour:
    """The colour description of ``frame``."""
    return Colour(frame.colorspace, frame.color_range, frame.color_primaries, frame.color_trc)


def display_matrix(frame: VideoFrame) -> tuple[int, ...] | None:
    """How players turn and mirror ``frame`` to show it (FFmpeg's 3x3 display matrix, 9 int32); None when
    the stream has none. Frames are decoded as stored, so the output must carry the same matrix."""
    data = cast(Mapping[str, SideData], frame.side_data).get("DISPLAYMATRIX")  # the stubs list fewer
    return None if data is None else struct.unpack("=9i", bytes(data))


def video_stream(container: InputContainer, path: Path) -> VideoStream:
    """The first video stream that is not a cover picture."""
    for stream in container.streams.video:
        if not stream.disposition & Disposition.attached_pic:
            return stream
    raise ValueError(f"{path}: no video stream (only {describe_streams(container)})")


def describe_streams(container: InputContainer) -> str:
    """``audio (aac), subtitle (subrip)`` for messages."""
    return ", ".join(
        f"{s.type} ({s.codec_context.name if s.codec_context else '?'})" for s in container.streams
    )


class VideoSource:
    """The video stream of a file: its geometry and timing, and its frames as :class:`SourceFrame`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.container = open_input(path)
        try:
            self.stream = video_stream(self.container, path)
        except ValueError:
            self.container.close()
            raise
        self.stream.thread_type = "AUTO"
        context = self.stream.codec_context
        self.width, self.height = context.width, context.height
        if not (self.width and self.height):
            self.container.close()
            raise ValueError(f"{path}: the video stream has no frame size (damaged file?)")
        self.time_base: Fraction = self.stream.time_base or Fraction(1, 90000)
        self.rate: Fraction = self.stream.average_rate or self.stream.guessed_rate or Fraction(25)
        self.frame_ticks = max(1, round(1 / (self.time_base * self.rate)))
        """One frame at the average rate, in ticks of the time base."""

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.container.close()

    @property
    def sample_aspect_ratio(self) -> Fraction | None:
        """The pixel aspect ratio the stream declares (None: square or unknown)."""
        return self.stream.sample_aspect_ratio

    def estimated_frames(self) -> int | None:
        """The number of frames the container states, or duration x average rate; None when unknown."""
        if self.stream.frames:
            return int(self.stream.frames)
        seconds = None
        if self.stream.duration is not None:
            seconds = self.stream.duration * self.time_base
        elif self.container.duration is not None:
            seconds = Fraction(self.container.duration, av.time_base)
        return None if seconds is None else round(seconds * self.rate)

    def first_frame(self) -> VideoFrame:
        """The first frame (read through a second handle): it tells the colours and the display matrix."""
        with VideoSource(self.path) as probe:
            frame = next(probe._decoded(), None)
        if frame is None:
            raise ValueError(f"{self.path}: the video stream has no frames")
        return frame

    def _decoded(self) -> Iterator[VideoFrame]:
        try:
            yield from self.container.decode(self.stream)
        except av.FFmpegError as err:
            raise ValueError(f"{self.path}: cannot decode the video ({err.strerror or err})") from None

    def _timed(self) -> Iterator[tuple[int, VideoFrame]]:
        """Frames with strictly increasing pts (missing or repeated pts are made up and reported)."""
        previous: int | None = None
        warned = False
        for frame in self._decoded():
            pts = frame.pts
            if pts is None:
                pts = 0 if previous is None else previous + self.frame_ticks
            elif previous is not None and pts <= previous:
                if not warned:
                    log.warning(
                        "%s: frame pts %d does not increase: moved to %d (and so on)",
                        self.path,
                        pts,
                        previous + 1,
                    )
                    warned = True
                pts = previous + 1
            previous = pts
            yield pts, frame

    def frames(self, depth: int = 8, skip: int = 0) -> Generator[SourceFrame, None, None]:
        """Every frame from number ``skip`` on, converted to RGB of ``depth`` (8 or 16) bits per channel.

        Skipped frames are decoded (to keep numbering and timestamps exact) but not converted.
        """
        pixel_format = RGB_FORMATS[depth]
        held: tuple[int, VideoFrame] | None = None
        index = -1
        for index, (pts, frame) in enumerate(self._timed()):
            if held is not None:
                yield self.convert_range(index - 1, held, pts - held[0], pixel_format)
            held = (pts, frame) if index >= skip else None
        if held is not None:
            yield self.convert_range(index, held, held[1].duration or self.frame_ticks, pixel_format)

    def convert_range(
        self, index: int, held: tuple[int, VideoFrame], duration: int, pixel_format: str
    ) -> SourceFrame:
        pts, frame = held
        image = frame.to_ndarray(format=pixel_format, width=self.width, height=self.height)
        return SourceFrame(index, pts, duration, image)
