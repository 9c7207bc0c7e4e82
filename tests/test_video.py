"""process_video as a user runs it: VFR timing, audio and subtitles, exact frames, resume, errors."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from tqdm import tqdm

from conftest import PTS_MS, frame_times, make_video
from esrforge.cli.common import run_program
from esrforge.cli.process_video import main
from esrforge.data.imageio import read_image
from esrforge.inference.images import to_tensor
from esrforge.inference.tiling import TileOptions, Upscaler
from esrforge.networks import load_generator
from esrforge.video import pipeline
from esrforge.video.source import display_matrix

pytestmark = pytest.mark.usefixtures("one_thread")


def decoded_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def audio_lead(path: Path) -> float:
    """Seconds from the first audio packet to the first video frame (A/V sync)."""
    first = packets_of(path, "audio")[0]
    return frame_times(path)[0] - float(first.pts * first.time_base)


def packets_of(path: Path, kind: str) -> list[av.Packet]:
    with av.open(str(path)) as container:
        return [p for p in container.demux(**{kind: 0}) if p.size]


def run(*argv: str | Path) -> int:
    return run_program(lambda: main([str(a) for a in ["--cpu", *argv]]))


def lossless(model: Path, source: Path, out: Path) -> list[str | Path]:
    """process_video's arguments for exact frames: ffv1 in RGB (bgr0)."""
    return ["--model", model, "--input", source, "--output", out, "--codec", "ffv1", "--pix-fmt", "bgr0"]


def test_vfr_timing_and_audio_are_kept(tmp_path, x2_checkpoint, clip):
    out = tmp_path / "out.mp4"
    assert run("--model", x2_checkpoint, "--input", clip, "--output", out, "--segment-seconds", "0.25") == 0
    assert frame_times(out) == frame_times(clip) == [p / 1000 for p in PTS_MS]
    assert all(frame.shape == (48, 64, 3) for frame in decoded_frames(out))
    with av.open(str(clip)) as original, av.open(str(out)) as result:
        assert [s.type for s in result.streams] == ["video", "audio"]
        assert result.streams.video[0].codec_context.name == "h264"
        assert result.streams.audio[0].codec_context.name == original.streams.audio[0].codec_context.name
        audio_in, audio_out = original.streams.audio[0], result.streams.audio[0]
        assert audio_out.duration * audio_out.time_base == pytest.approx(
            audio_in.duration * audio_in.time_base
        )
        assert result.duration == pytest.approx(original.duration, abs=5000)  # microseconds
    assert [bytes(p) for p in packets_of(out, "audio")] == [bytes(p) for p in packets_of(clip, "audio")]
    assert not (tmp_path / ".out.mp4.parts").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


def test_lossless_frames_equal_the_image_upscaler_and_pngs(tmp_path, x2_checkpoint, clip):
    """ffv1 in RGB (bgr0) is lossless, so the tolerance is 0: each frame is what test.py's Upscaler gives."""
    out, pngs = tmp_path / "out.mkv", tmp_path / "frames"
    argv = lossless(x2_checkpoint, clip, out)
    assert run(*argv, "--frames-out", pngs, "--batch", "4") == 0
    upscaler = Upscaler(load_generator(x2_checkpoint).module.eval(), TileOptions(tile_size=None))
    expected = [upscaler(to_tensor(f), torch.uint8).permute(1, 2, 0).numpy() for f in decoded_frames(clip)]
    result = decoded_frames(out)
    assert len(result) == len(expected) == 12
    # Matroska cannot store the AAC priming's negative pts: everything moves by the same 21 ms.
    assert audio_lead(out) == pytest.approx(audio_lead(clip), abs=1e-3)
    assert np.diff(frame_times(out)) == pytest.approx(np.diff(frame_times(clip)), abs=1e-3)
    for index, (got, want) in enumerate(zip(result, expected, strict=True)):
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(read_image(pngs / f"{index:08d}.png"), want)


def test_a_spandrel_x3_model_runs_through_the_whole_pipeline(tmp_path, clip):
    """A community architecture (spandrel's SPAN, x3) from its own key names: the frames are what the
    image upscaler makes with the same model."""
    from spandrel.architectures.SPAN import SPAN

    torch.manual_seed(0)
    model = tmp_path / "4x-span.pth"
    torch.save(SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=3).state_dict(), model)
    out = tmp_path / "out.mkv"
    assert run(*lossless(model, clip, out)) == 0
    loaded = load_generator(model)
    network = loaded.module.eval().to(memory_format=torch.channels_last)  # as process_video runs it
    upscaler = Upscaler(network, TileOptions(tile_size=None), description=loaded.description)
    result = decoded_frames(out)
    assert len(result) == 12 and result[0].shape == (72, 96, 3)
    for got, frame in zip(result, decoded_frames(clip), strict=True):
        np.testing.assert_array_equal(got, upscaler(to_tensor(frame), torch.uint8).permute(1, 2, 0).numpy())


def test_16_bit_path_is_exact_too(tmp_path, x2_checkpoint, clip, monkeypatch, logs):
    """A pixel format of more than 8 bits runs the network on 16-bit frames (rgb48le is lossless in ffv1),
    in float32 also on a CPU where 8-bit frames would run in bf16 by themselves."""
    monkeypatch.setattr("esrforge.inference.precision.cpu_has_bf16", lambda: True)
    out = tmp_path / "out.mkv"
    argv = [*lossless(x2_checkpoint, clip, out)[:-1], "rgb48le"]
    assert run(*argv) == 0
    assert "fp32: the output has more than 8 bits per channel (--bf16 forces bf16)" in logs.text
    with av.open(str(clip)) as source:
        frame = next(source.decode(video=0)).to_ndarray(format="rgb48le")
    with av.open(str(out)) as result:
        got = next(result.decode(video=0)).to_ndarray(format="rgb48le")
    upscaler = Upscaler(load_generator(x2_checkpoint).module.eval(), TileOptions(tile_size=None))
    np.testing.assert_array_equal(got, upscaler(to_tensor(frame), torch.uint16).permute(1, 2, 0).numpy())


def test_tiled_frames_equal_the_tiled_image_upscaler(tmp_path, x2_checkpoint, clip):
    out = tmp_path / "out.mkv"
    argv = lossless(x2_checkpoint, clip, out)
    assert run(*argv, "--tile", "16", "--tile-pad", "4", "--tile-overlap", "4") == 0
    options = TileOptions(tile_size=16, tile_pad=4, tile_overlap=4)
    upscaler = Upscaler(load_generator(x2_checkpoint).module.eval(), options)
    want = upscaler(to_tensor(decoded_frames(clip)[5]), torch.uint8).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(decoded_frames(out)[5], want)


def test_x264_output_is_close_to_the_upscaler(tmp_path, x2_checkpoint, clip):
    """Default settings (x264 crf 18, yuv420p): within codec tolerance, PSNR above 30 dB per frame."""
    out = tmp_path / "out.mp4"
    assert run("--model", x2_checkpoint, "--input", clip, "--output", out) == 0
    upscaler = Upscaler(load_generator(x2_checkpoint).module.eval(), TileOptions(tile_size=None))
    for frame, got in zip(decoded_frames(clip), decoded_frames(out), strict=True):
        want = upscaler(to_tensor(frame), torch.uint8).permute(1, 2, 0).numpy()
        mse = np.mean((got.astype(float) - want) ** 2)
        assert 10 * np.log10(255**2 / max(mse, 1e-9)) > 30


class Interrupt(Exception):
    """Stands for a crash or a kill in the middle of a job."""


def test_interrupted_job_resumes_at_the_last_finished_segment(tmp_path, x2_checkpoint, clip, monkeypatch):
    out, reference = tmp_path / "out.mp4", tmp_path / "reference.mp4"
    argv = ["--model", x2_checkpoint, "--input", clip, "--segment-seconds", "0.25", "--output"]
    assert run(*argv, reference) == 0
    argv.append(out)

    upscale = pipeline.FrameUpscaler.__call__
    seen: list[int] = []

    def failing(self, frames):
        seen.extend([0] * len(frames))
        if len(seen) > 7:  # segment 0 (frames 0-4, before 0.25 s) is done, segment 1 is open
            raise Interrupt
        return upscale(self, frames)

    monkeypatch.setattr(pipeline.FrameUpscaler, "__call__", failing)
    with pytest.raises(Interrupt):
        main(["--cpu", *map(str, argv)])
    parts = tmp_path / ".out.mp4.parts"
    assert not out.exists()
    assert sorted(p.name for p in parts.iterdir()) == ["progress.json", "segment_00000.mp4"]
    (parts / ".segment_00001.partial.mp4").write_bytes(b"left by a killed run")

    seen.clear()
    monkeypatch.setattr(
        pipeline.FrameUpscaler, "__call__", lambda self, frames: seen.extend(frames) or upscale(self, frames)
    )
    assert run(*argv) == 0
    assert len(seen) == 12 - 5
    assert frame_times(out) == [p / 1000 for p in PTS_MS]
    assert [bytes(p) for p in packets_of(out, "video")] == [bytes(p) for p in packets_of(reference, "video")]
    assert len(packets_of(out, "audio")) == len(packets_of(clip, "audio"))
    assert not parts.exists()


def test_silent_odd_sized_video_and_subtitles(tmp_path, x2_checkpoint):
    silent = make_video(tmp_path / "silent.mkv", width=33, height=25, audio=False, subtitles=True)
    out = tmp_path / "out.mkv"
    assert (
        run("--model", x2_checkpoint, "--input", silent, "--output", out, "--frames-out", tmp_path / "png")
        == 0
    )
    with av.open(str(out)) as result:
        assert [s.type for s in result.streams] == ["video", "subtitle"]
        assert result.streams.subtitles[0].metadata["language"] == "fra"
        assert [c["metadata"]["title"] for c in result.chapters()] == ["One", "Two"]
        assert result.duration == pytest.approx(640_000, abs=5000)
    assert [bytes(p) for p in packets_of(out, "subtitles")] == [b"Bonjour", b"Au revoir"]
    assert frame_times(out) == [p / 1000 for p in PTS_MS]
    assert {f.shape for f in decoded_frames(out)} == {(50, 66, 3)}
    assert len(list((tmp_path / "png").glob("*.png"))) == 12


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_display_rotation_is_kept(tmp_path, x2_checkpoint, suffix):
    """A phone video's display matrix (here 90 degrees, mirrored) goes over the frames, upscaled as stored."""
    source = make_video(tmp_path / "phone.mp4", audio=False, display=(90, True))
    out = tmp_path / f"out{suffix}"
    assert run("--model", x2_checkpoint, "--input", source, "--output", out, "--segment-seconds", "0.25") == 0
    with av.open(str(source)) as original, av.open(str(out)) as result:
        want, got = next(original.decode(video=0)), next(result.decode(video=0))
        assert got.rotation == want.rotation == 90 and display_matrix(got) == display_matrix(want)
        assert got.to_ndarray(format="rgb24").shape == (48, 64, 3)


def test_the_frame_rate_is_the_sources(tmp_path, x2_checkpoint):
    """Not the tick rate of the segments' time base (1000 in Matroska)."""
    source = make_video(tmp_path / "cfr.mp4", audio=False, pts_ms=range(0, 480, 40))
    out = tmp_path / "out.mkv"
    assert run("--model", x2_checkpoint, "--input", source, "--output", out, "--segment-seconds", "0.25") == 0
    with av.open(str(source)) as original, av.open(str(out)) as result:
        assert result.streams.video[0].average_rate == original.streams.video[0].average_rate == 25


def test_vfr_mp4_ends_with_its_last_frame(tmp_path, x2_checkpoint):
    """MP4 keeps only the gaps between decode timestamps; the joined segments still last as long."""
    source = make_video(tmp_path / "vfr.mkv", audio=False)
    out = tmp_path / "out.mp4"
    assert run("--model", x2_checkpoint, "--input", source, "--output", out, "--segment-seconds", "0.25") == 0
    assert frame_times(out) == [p / 1000 for p in PTS_MS]
    with av.open(str(source)) as original, av.open(str(out)) as result:
        assert result.duration == original.duration == 640_000  # microseconds: 600 ms + 40 ms


def test_progress_bar_ends_at_the_frame_count(tmp_path, x2_checkpoint, monkeypatch):
    """Matroska states no frame count: duration x average rate estimates 16 frames for these 12."""
    source = make_video(tmp_path / "vfr.mkv", audio=False)
    bars: list[tqdm] = []

    class Bar(tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "disable": False, "file": io.StringIO()})
            bars.append(self)

    monkeypatch.setattr(pipeline, "tqdm", Bar)
    assert run("--model", x2_checkpoint, "--input", source, "--output", tmp_path / "out.mkv") == 0
    assert [(bar.n, bar.total) for bar in bars] == [(12, 12)]
