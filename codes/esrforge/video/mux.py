"""Join the segments (remux, no re-encoding) and copy the input's audio, subtitles and chapters into one file.

Each segment keeps the source's presentation timestamps, so joining them needs no offsets. Decode
timestamps are derived again for the joined stream: with B-frames, a segment's encoder starts its
decode timestamps before its first frame, which can overlap the end of the previous segment. The
``k``-th packet in decode order gets the ``(k - d)``-th smallest pts, where ``d`` is the largest
reordering depth of the segments (the first ``d`` packets count down from the first pts), which is
increasing and never after the packet's own pts.

Packets get their frame's duration again (until the next frame shown, the segment's last until its
recorded end): an MP4 segment stores only the gaps between its decode timestamps. An MP4 also takes
its length from them (the sum of these gaps), which begins ``delay = first pts - first dts`` early:
the last packet is decoded late enough (at most ``delay`` before its pts) and lasts until ``end -
delay``, so that sum is the frames' length, and its pts + duration (the edit list's end) stays ``end``.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections import deque
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import av
from av.container import InputContainer
from av.packet import Packet
from av.stream import Stream
from av.video.stream import VideoStream

from .encode import add_copy
from .segments import atomic_path

log = logging.getLogger(__name__)

COPIED_TYPES = ("audio", "subtitle")
DECODE_TIMED = ("mp4", "mov")
"""Formats whose samples last until the next decode timestamp."""


def copied_streams(container: InputContainer) -> list[Stream]:
    """The streams copied into the output: audio and subtitles (others are reported and left out)."""
    chosen = [s for s in container.streams if s.type in COPIED_TYPES]
    for stream in container.streams:
        if stream.type not in (*COPIED_TYPES, "video"):
            log.warning(
                "stream #%d (%s) is not copied: only audio and subtitles are", stream.index, stream.type
            )
    return chosen


def with_decode_times(packets: Iterable[Packet], depth: int) -> Iterator[Packet]:
    """``packets`` (in decode order, with pts) with decode timestamps derived from the pts (module doc)."""
    pending: deque[Packet] = deque()
    heap: list[int] = []
    emitted = step = 0

    def emit(packet: Packet) -> Packet:
        nonlocal emitted, step
        if emitted == 0:
            step = max(1, packet.duration or 1)  # one frame: the spacing of the made-up first dts
        packet.dts = heapq.heappop(heap) if emitted >= depth else heap[0] - (depth - emitted) * step
        emitted += 1
        return packet

    for packet in packets:
        if packet.pts is None:
            raise ValueError("a segment holds a video packet without pts")
        pending.append(packet)
        heapq.heappush(heap, packet.pts)
        if len(pending) > depth:
            yield emit(pending.popleft())
    while pending:
        yield emit(pending.popleft())


def ending_with_the_frames(packets: Iterable[Packet]) -> Iterator[Packet]:
    """``packets`` (in decode order, with dts and durations) with the last one decoded and lasting so
    that the decode timeline is as long as the frames (module doc); left as they are when it cannot."""
    last: Packet | None = None
    first_dts = start = end = 0
    for packet in packets:
        assert packet.pts is not None and packet.dts is not None, "set by with_decode_times"
        if last is None:
            first_dts, start, end = packet.dts, packet.pts, packet.pts
        else:
            yield last
        start, end = min(start, packet.pts), max(end, packet.pts + (packet.duration or 0))
        last = packet
    if last is not None and last.pts is not None and last.dts is not None:
        delay = start - first_dts
        dts = max(last.dts, last.pts - delay)
        if dts < end - delay:
            last.dts, last.duration = dts, end - delay - dts
        yield last


def _shown(path: Path) -> list[int]:
    """The pts of the video packets of the file ``path``, in presentation order."""
    with av.open(str(path), "r") as segment:
        packets = segment.demux(segment.streams.video[0])
        return sorted(p.pts for p in packets if p.size and p.pts is not None)


def segment_packets(segments: list[tuple[Path, Fraction]], stream: VideoStream) -> Iterator[Packet]:
    """The video packets of the segment files in order, assigned to the output ``stream``.

    ``segments`` pairs each file with the time (seconds) its last frame ends. A packet lasts until the
    next frame is shown: an MP4 read back gives the gaps between decode timestamps instead (module doc).
    (A packet must not refer to its segment's stream once that file is closed.)
    """
    for path, end in segments:
        with av.open(str(path), "r") as segment:
            video = segment.streams.video[0]
            assert video.time_base is not None, "every container format has one"
            following = dict(itertools.pairwise([*_shown(path), round(end / video.time_base)]))
            for packet in segment.demux(video):
                if packet.size and packet.pts is not None:
                    packet.duration = following[packet.pts] - packet.pts
                    packet.stream = stream
                    yield packet


def source_packets(container: InputContainer, copies: dict[int, Stream]) -> Iterator[Packet]:
    """The packets of the input's streams numbered in ``copies``, assigned to their output streams."""
    if not copies:
        return
    for packet in container.demux(*(container.streams[i] for i in copies)):
        if packet.size:
            packet.stream = copies[packet.stream_index]
            yield packet


def _seconds(packet: Packet) -> float:
    time = packet.dts if packet.dts is not None else packet.pts
    return float((time or 0) * packet.time_base) if packet.time_base else 0.0


def join_segments(
    output: Path,
    format_name: str,
    segments: list[tuple[Path, Fraction]],
    depth: int,
    source: Path,
    rate: Fraction,
) -> None:
    """Write ``output`` (atomically) from the segment files (see :func:`segment_packets`) and the
    audio/subtitles of ``source``; its video declares the average frame ``rate`` (the segments' codec
    may state its tick rate instead)."""
    with (
        atomic_path(output) as tmp,
        av.open(str(segments[0][0]), "r") as first,
        av.open(str(source), "r") as original,
        av.open(str(tmp), "w", format=format_name) as container,
    ):
        video = container.add_stream_from_template(first.streams.video[0])
        video.codec_context.framerate = rate
        copies = {stream.index: add_copy(container, stream) for stream in copied_streams(original)}
        container.metadata.update(original.metadata)
        container.set_chapters(original.chapters())
        video_packets = with_decode_times(segment_packets(segments, video), depth)
        if format_name in DECODE_TIMED:
            video_packets = ending_with_the_frames(video_packets)
        packets = heapq.merge(
            video_packets,
            source_packets(original, copies),
            key=_seconds,
        )
        for packet in packets:
            container.mux(packet)
