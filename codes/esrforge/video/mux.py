"""Join the segments (remux, no re-encoding) and copy the input's audio, subtitles and chapters into one file.

Each segment keeps the source's presentation timestamps, so joining them needs no offsets. Decode
timestamps are derived again for the joined stream: with B-frames, a segment's encoder starts its
decode timestamps before its first frame, which can overlap the end of the previous segment. The
``k``-th packet in decode order gets the ``(k - d)``-th smallest pts, where ``d`` is the largest
reordering depth of the segments (the first ``d`` packets count down from the first pts), which is
increasing and never after the packet's own pts.
"""

from __future__ import annotations

import heapq
import logging
from collections import deque
from collections.abc import Iterable, Iterator
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


def segment_packets(paths: list[Path], stream: VideoStream) -> Iterator[Packet]:
    """The video packets of the segment files in order, assigned to the output ``stream``.

    (A packet must not refer to its segment's stream once that file is closed.)
    """
    for path in paths:
        with av.open(str(path), "r") as segment:
            for packet in segment.demux(segment.streams.video[0]):
                if packet.size:
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


def join_segments(output: Path, format_name: str, segments: list[Path], depth: int, source: Path) -> None:
    """Write ``output`` (atomically) from the segment files and the audio/subtitles of ``source``."""
    with (
        atomic_path(output) as tmp,
        av.open(str(segments[0]), "r") as first,
        av.open(str(source), "r") as original,
        av.open(str(tmp), "w", format=format_name) as container,
    ):
        video = container.add_stream_from_template(first.streams.video[0])
        copies = {stream.index: add_copy(container, stream) for stream in copied_streams(original)}
        container.metadata.update(original.metadata)
        container.set_chapters(original.chapters())
        packets = heapq.merge(
            with_decode_times(segment_packets(segments, video), depth),
            source_packets(original, copies),
            key=_seconds,
        )
        for packet in packets:
            container.mux(packet)
