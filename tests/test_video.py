"""process_video as a user runs it: VFR timing, audio and subtitles, exact frames, resume, errors."""

from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from esrforge.cli.common import run_program
from esrforge.cli.process_video import main
from esrforge.data.imageio import read_image, write_image
from esrforge.inference.images import to_tensor
from esrforge.inference.tiling import TileOptions, Upscaler
from esrforge.networks import RRDBNet, RRDBNetOptions, load_generator
from esrforge.video import pipeline

REPO = Path(__file__).resolve().parents[1]
PTS_MS = [0, 40, 80, 150, 200, 300, 340, 380, 460, 500, 520, 600]
"""Variable frame rate: 12 frames over 0.64 s."""
SAMPLE_RATE = 48000


def frame_pattern(index: int, width: int, height: int) -> np.ndarray:
    """A gradient with a square that moves one step per frame."""
    y, x = np.mgrid[:height, :width]
    image = np.stack([x * 255 // width, y * 255 // height, np.full_like(x, index * 20)], axis=2)
    image[2 * index : 2 * index + 6, 2 * index : 2 * index + 8] = 255
    return image.astype(np.uint8)


def make_video(
    path: Path, width: int = 32, height: int = 24, audio: bool = True, subtitles: bool = False
) -> Path:
    """12 VFR frames (h264), optionally a 0.64 s sine in AAC, two SubRip subtitles and two chapters."""
    ms = Fraction(1, 1000)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=25, options={"crf": "10"})
        video.width, video.height, video.pix_fmt = width, height, "yuv444p"
        video.codec_context.time_base = ms
        packets = []
        for index, pts in enumerate(PTS_MS):
            frame = av.VideoFrame.from_ndarray(frame_pattern(index, width, height), format="rgb24")
            frame.pts, frame.time_base = pts, ms
            packets += video.encode(frame)
        packets += video.encode(None)
        if audio:
            sound = container.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
            tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(int(SAMPLE_RATE * 0.64)) / SAMPLE_RATE)
            for start in range(0, len(tone), 1024):
                chunk = av.AudioFrame.from_ndarray(
                    tone[None, start : start + 1024].astype(np.float32), "fltp", "mono"
                )
                chunk.sample_rate, chunk.pts, chunk.time_base = SAMPLE_RATE, start, Fraction(1, SAMPLE_RATE)
                packets += sound.encode(chunk)
            packets += sound.encode(None)
        if subtitles:
            chapter = {"id": 1, "start": 0, "end": 300, "time_base": ms, "metadata": {"title": "One"}}
            container.set_chapters(
                [chapter, {**chapter, "id": 2, "start": 300, "end": 640, "metadata": {"title": "Two"}}]
            )
            text = container.add_mux_stream("subrip")
            text.metadata["language"] = "fra"
            for pts, line in ((50, b"Bonjour"), (400, b"Au revoir")):
                packet = av.Packet(line)
                packet.pts = packet.dts = pts
                packet.duration, packet.time_base, packet.stream = 100, ms, text
                packets.append(packet)
        for packet in sorted(packets, key=lambda p: float((p.dts or 0) * p.time_base)):
            container.mux(packet)
    return path


def frame_times(path: Path) -> list[float]:
    with av.open(str(path)) as container:
        return [round(float(f.time), 6) for f in container.decode(video=0)]


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


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny networks gain nothing from threads, and OpenMP spinning stalls them on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny_x2.pth"
    torch.save(RRDBNet(RRDBNetOptions(nf=8, nb=1, gc=4, scale=2)).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(tmp_path_factory.mktemp("clip") / "clip.mp4")


def run(*argv: str | Path) -> int:
    return run_program(lambda: main([str(a) for a in ["--cpu", *argv]]))


def test_vfr_timing_and_audio_are_kept(tmp_path, checkpoint, clip):
    out = tmp_path / "out.mp4"
    assert run("--model", checkpoint, "--input", clip, "--output", out, "--segment-seconds", "0.25") == 0
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


def test_lossless_frames_equal_the_image_upscaler_and_pngs(tmp_path, checkpoint, clip):
    """ffv1 in RGB (bgr0) is lossless, so the tolerance is 0: each frame is what test.py's Upscaler gives."""
    out, pngs = tmp_path / "out.mkv", tmp_path / "frames"
    argv = ["--model", checkpoint, "--input", clip, "--output", out, "--codec", "ffv1", "--pix-fmt", "bgr0"]
    assert run(*argv, "--frames-out", pngs, "--batch", "4") == 0
    upscaler = Upscaler(load_generator(checkpoint).module.eval(), TileOptions(tile_size=None))
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
    assert (
        run("--model", model, "--input", clip, "--output", out, "--codec", "ffv1", "--pix-fmt", "bgr0") == 0
    )
    loaded = load_generator(model)
    network = loaded.module.eval().to(memory_format=torch.channels_last)  # as process_video runs it
    upscaler = Upscaler(network, TileOptions(tile_size=None), description=loaded.description)
    result = decoded_frames(out)
    assert len(result) == 12 and result[0].shape == (72, 96, 3)
    for got, frame in zip(result, decoded_frames(clip), strict=True):
        np.testing.assert_array_equal(got, upscaler(to_tensor(frame), torch.uint8).permute(1, 2, 0).numpy())


def test_16_bit_path_is_exact_too(tmp_path, checkpoint, clip):
    """A pixel format of more than 8 bits runs the network on 16-bit frames (rgb48le is lossless in ffv1)."""
    out = tmp_path / "out.mkv"
    argv = [
        "--model",
        checkpoint,
        "--input",
        clip,
        "--output",
        out,
        "--codec",
        "ffv1",
        "--pix-fmt",
        "rgb48le",
    ]
    assert run(*argv) == 0
    with av.open(str(clip)) as source:
        frame = next(source.decode(video=0)).to_ndarray(format="rgb48le")
    with av.open(str(out)) as result:
        got = next(result.decode(video=0)).to_ndarray(format="rgb48le")
    upscaler = Upscaler(load_generator(checkpoint).module.eval(), TileOptions(tile_size=None))
    np.testing.assert_array_equal(got, upscaler(to_tensor(frame), torch.uint16).permute(1, 2, 0).numpy())


def test_tiled_frames_equal_the_tiled_image_upscaler(tmp_path, checkpoint, clip):
    out = tmp_path / "out.mkv"
    argv = ["--model", checkpoint, "--input", clip, "--output", out, "--codec", "ffv1", "--pix-fmt", "bgr0"]
    assert run(*argv, "--tile", "16", "--tile-pad", "4", "--tile-overlap", "4") == 0
    options = TileOptions(tile_size=16, tile_pad=4, tile_overlap=4)
    upscaler = Upscaler(load_generator(checkpoint).module.eval(), options)
    want = upscaler(to_tensor(decoded_frames(clip)[5]), torch.uint8).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(decoded_frames(out)[5], want)


def test_x264_output_is_close_to_the_upscaler(tmp_path, checkpoint, clip):
    """Default settings (x264 crf 18, yuv420p): within codec tolerance, PSNR above 30 dB per frame."""
    out = tmp_path / "out.mp4"
    assert run("--model", checkpoint, "--input", clip, "--output", out) == 0
    upscaler = Upscaler(load_generator(checkpoint).module.eval(), TileOptions(tile_size=None))
    for frame, got in zip(decoded_frames(clip), decoded_frames(out), strict=True):
        want = upscaler(to_tensor(frame), torch.uint8).permute(1, 2, 0).numpy()
        mse = np.mean((got.astype(float) - want) ** 2)
        assert 10 * np.log10(255**2 / max(mse, 1e-9)) > 30


class Interrupt(Exception):
    """Stands for a crash or a kill in the middle of a job."""


def test_interrupted_job_resumes_at_the_last_finished_segment(tmp_path, checkpoint, clip, monkeypatch):
    out, reference = tmp_path / "out.mp4", tmp_path / "reference.mp4"
    argv = ["--model", checkpoint, "--input", clip, "--segment-seconds", "0.25", "--output"]
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


def test_silent_odd_sized_video_and_subtitles(tmp_path, checkpoint):
    silent = make_video(tmp_path / "silent.mkv", width=33, height=25, audio=False, subtitles=True)
    out = tmp_path / "out.mkv"
    assert (
        run("--model", checkpoint, "--input", silent, "--output", out, "--frames-out", tmp_path / "png") == 0
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


def test_subtitles_an_mp4_cannot_hold_fail_before_any_work(tmp_path, checkpoint, caplog):
    source = make_video(tmp_path / "subs.mkv", audio=False, subtitles=True)
    assert run("--model", checkpoint, "--input", source, "--output", tmp_path / "out.mp4") == 2
    assert "subtitle stream #1" in caplog.text and ".mkv" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["subs.mkv"]


@pytest.mark.parametrize(
    ("make", "flags", "message"),
    [
        (lambda d: d / "missing.mp4", [], "does not exist"),
        (lambda d: text_file(d / "notes.mp4"), [], "not a video"),
        (lambda d: make_sound(d / "sound.wav"), [], "no video stream"),
        (
            lambda d: still_image(d / "photo.png"),
            [],
            "a still image, not a video; upscale images with test.py",
        ),
        (lambda d: still_image(d / "photo.jpg"), [], "a still image, not a video"),
        (lambda d: d / "clip.mp4", ["--codec", "libx999"], "--codec"),
        (lambda d: d / "clip.mp4", ["--preset", "warp"], "refuses these settings"),
    ],
)
def test_user_errors_exit_2(tmp_path, checkpoint, clip, caplog, make, flags, message):
    (tmp_path / "clip.mp4").write_bytes(clip.read_bytes())
    assert run("--model", checkpoint, "--input", make(tmp_path), "--output", tmp_path / "o.mkv", *flags) == 2
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and message in errors[0].getMessage()
    assert not (tmp_path / "o.mkv").exists()


def text_file(path: Path) -> Path:
    path.write_text("not a video")
    return path


def still_image(path: Path) -> Path:
    write_image(path, np.full((24, 32, 3), 128, np.uint8))
    return path


def make_sound(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), "s16", "mono")
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return path


def test_config_form_as_a_subprocess(tmp_path, checkpoint, clip):
    out = tmp_path / "out.mp4"
    overrides = [
        f"path.pretrain_model_generator={checkpoint}", f"video.input={clip}", f"video.output={out}",
        "scale=2", "gpu_ids=[]", "fp16=false", "encode.preset=ultrafast",
    ]  # fmt: skip
    command = [
        sys.executable,
        REPO / "codes" / "process_video.py",
        "-opt",
        REPO / "options" / "rrdb_process_video.yml",
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [*map(str, command), "--set", *overrides],
        capture_output=True,
        text=True,
        check=False,
        env=environment,
    )
    assert result.returncode == 0, result.stderr
    assert frame_times(out) == [p / 1000 for p in PTS_MS]
