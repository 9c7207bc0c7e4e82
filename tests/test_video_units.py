"""The pieces of the video pipeline: decode timestamps of joined segments, options, progress, prefetching."""

from __future__ import annotations

import itertools
import json
import threading
from fractions import Fraction

import av
import pytest

from esrforge.fields.errors import OptionError
from esrforge.video.encode import ReorderDepth, even_size, pixel_depth
from esrforge.video.mux import ending_with_the_frames, with_decode_times
from esrforge.video.options import EncodeOptions, parse_bitrate, video_config_from_data
from esrforge.video.prefetch import prefetch
from esrforge.video.segments import Progress, SegmentRecord


def packets(pts: list[int], duration: int = 10) -> list[av.Packet]:
    result = []
    for value in pts:
        packet = av.Packet(b"x")
        packet.pts, packet.duration, packet.time_base = value, duration, Fraction(1, 1000)
        result.append(packet)
    return result


def depth_of(pts: list[int]) -> int:
    reorder = ReorderDepth()
    for value in pts:
        reorder.add(value)
    return reorder.depth


def test_joined_b_frame_segments_get_increasing_decode_times_never_after_pts():
    # Two x264-like segments (b-pyramid: I P B b b), the second starting at 50; VFR spacing.
    first, second = [0, 40, 20, 10, 30], [50, 95, 70, 60, 80, 120]
    assert depth_of(first) == depth_of(second) == 2
    joined = list(with_decode_times(packets(first + second), 2))
    dts = [p.dts for p in joined]
    assert dts == [-20, -10, 0, 10, 20, 30, 40, 50, 60, 70, 80]
    assert all(b > a for a, b in itertools.pairwise(dts))
    assert all(p.dts <= p.pts for p in joined)


def test_decode_times_without_reordering_are_the_pts():
    joined = list(with_decode_times(packets([0, 10, 25, 40]), 0))
    assert [p.dts for p in joined] == [0, 10, 25, 40]


def mp4_length(joined: list[av.Packet]) -> int:
    """What an MP4 reader takes for the length: the gaps between decode timestamps, and the last duration."""
    return joined[-1].dts + joined[-1].duration - joined[0].dts


def test_an_mp4_decode_timeline_is_as_long_as_the_frames():
    # I P B b b in VFR, each packet with its frame's duration (until the next pts; 30 for the last).
    pts = [0, 40, 20, 10, 30]
    frames = packets(pts)
    for packet, duration in zip(frames, [10, 30, 10, 10, 10], strict=True):
        packet.duration = duration
    joined = list(ending_with_the_frames(with_decode_times(frames, 2)))
    assert [p.dts for p in joined] == [-20, -10, 0, 10, 20]
    assert mp4_length(joined) == 70 == 40 + 30 - 0  # was 20 + 10 + 20: 50
    assert joined[-1].pts + joined[-1].duration <= 70 and all(p.dts <= p.pts for p in joined)


def test_a_cfr_decode_timeline_is_left_as_it_is():
    joined = list(ending_with_the_frames(with_decode_times(packets([0, 30, 10, 20]), 1)))
    assert [(p.dts, p.duration) for p in joined] == [(-10, 10), (0, 10), (10, 10), (20, 10)]
    assert mp4_length(joined) == 40


def test_pixel_formats():
    assert pixel_depth("yuv420p") == 8 and pixel_depth("yuv420p10le") == 16 and pixel_depth("bgr0") == 8
    assert even_size("yuv420p", 33, 25) == (34, 26)
    assert even_size("yuv422p", 33, 25) == (34, 25)
    assert even_size("yuv444p", 33, 25) == (33, 25)


def test_encode_options():
    assert parse_bitrate("8M") == 8_000_000 and parse_bitrate("2.5k") == 2500 and parse_bitrate("900") == 900
    assert EncodeOptions().codec_options() == {"crf": "18"}
    options = EncodeOptions(bitrate="4M", preset="slow", options={"tune": "film"})
    assert options.codec_options() == {"preset": "slow", "tune": "film"} and options.bit_rate == 4_000_000
    with pytest.raises(OptionError, match="pix_fmt"):
        EncodeOptions(codec="libx264", pix_fmt="bgr0")
    with pytest.raises(OptionError, match="codec"):
        EncodeOptions(codec="aac")


def test_config_errors_name_the_key(tmp_path):
    model, clip = tmp_path / "m.pth", tmp_path / "v.mp4"
    model.write_bytes(b""), clip.write_bytes(b"")
    data = {"path": {"pretrain_model_generator": str(model)}, "video": {"input": str(clip)}}
    config = video_config_from_data(json.loads(json.dumps(data)), "x.yml", tmp_path, ["encode.crf=20"])
    assert config.encode.crf == 20 and config.video.segment_seconds == 30
    with pytest.raises(OptionError, match=r"x.yml: encode.bitrate: .*8M.*set with --set"):
        video_config_from_data(data, "x.yml", tmp_path, ["encode.bitrate=fast"])
    with pytest.raises(OptionError, match=r"video\.segment_seconds"):
        video_config_from_data(
            {**data, "video": {"input": str(clip), "segment_seconds": 0}}, "x.yml", tmp_path
        )


def record(index: int) -> SegmentRecord:
    return SegmentRecord(
        f"segment_{index:05d}.mp4", index * 5, 5, index * 50, index * 50 + 40, index * 50 + 50, 2
    )


def test_progress_resumes_only_the_same_job_and_deletes_only_its_own_files(tmp_path):
    work = tmp_path / "work"
    progress = Progress.open(work, {"input": 1})
    for index in range(2):
        (work / record(index).file).write_bytes(b"segment")
        progress.add(record(index))
    (work / ".segment_00002.partial.mp4").write_bytes(b"killed")
    (work / "notes.txt").write_text("the user's")

    again = Progress.open(work, {"input": 1})
    assert again.segments == [record(0), record(1)] and again.frames_done == 10
    assert sorted(p.name for p in work.iterdir()) == [
        "notes.txt",
        "progress.json",
        *(record(i).file for i in range(2)),
    ]

    other = Progress.open(work, {"input": 2})
    assert other.segments == [] and sorted(p.name for p in work.iterdir()) == ["notes.txt", "progress.json"]
    other.remove()
    assert [p.name for p in work.iterdir()] == ["notes.txt"]


def test_progress_with_a_missing_segment_starts_over(tmp_path):
    progress = Progress.open(tmp_path, {"input": 1})
    progress.add(record(0))  # its file was never written
    assert Progress.open(tmp_path, {"input": 1}).segments == []


def test_prefetch_keeps_order_and_raises_the_producers_error():
    def numbers():
        yield from range(5)
        raise ValueError("damaged frame")

    seen = []
    with pytest.raises(ValueError, match="damaged frame"):
        for item in prefetch(numbers(), 2):
            seen.append(item)
    assert seen == [0, 1, 2, 3, 4]


def test_prefetch_stops_its_thread_and_closes_the_source_when_the_consumer_stops():
    closed = threading.Event()

    def endless():
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.set()

    items = prefetch(endless(), 2)
    assert [next(items) for _ in range(3)] == [0, 1, 2]
    items.close()
    assert closed.is_set()
    assert not [t for t in threading.enumerate() if t.name == "esrforge-prefetch"]
