"""process_video's failures: one-line errors with exit code 2 before any work, frames or encoders that
fail mid-job (the job resumes), and the config form as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import PTS_MS, REPO, frame_times, make_video
from esrforge.cli.common import run_program
from esrforge.cli.process_video import main
from esrforge.data.imageio import write_image
from esrforge.video import pipeline

pytestmark = pytest.mark.usefixtures("one_thread")


def run(*argv: str | Path) -> int:
    return run_program(lambda: main([str(a) for a in ["--cpu", *argv]]))


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--frames-out", "{taken}"],
            "--frames-out (video.frames_out): {taken} is a file; expected a folder",
        ),
        (
            ["--output", "{taken}/out.mp4"],
            "--output (video.output): {taken}/out.mp4: {taken} is a file; expected a folder",
        ),
    ],
)
def test_a_folder_that_is_a_file_fails_before_any_frame(
    tmp_path, x2_checkpoint, clip, caplog, monkeypatch, flags, message
):
    taken = tmp_path / "taken"
    taken.write_text("a file")
    monkeypatch.setattr(pipeline.FrameUpscaler, "__call__", lambda self, frames: pytest.fail("upscaled"))
    argv = ["--model", x2_checkpoint, "--input", clip, "--output", tmp_path / "out.mp4"]
    assert run(*argv, *(f.format(taken=taken) for f in flags)) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == [message.format(taken=taken)]
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]


def test_a_network_failing_on_a_frame_is_one_line_and_the_job_resumes(
    tmp_path, x2_checkpoint, clip, caplog, monkeypatch
):
    out = tmp_path / "out.mp4"
    argv = ["--model", x2_checkpoint, "--input", clip, "--segment-seconds", "0.25", "--output", out]
    upscale = pipeline.FrameUpscaler.__call__
    working = [7]  # frames upscaled before the network fails: segment 0 (frames 0-4) gets done

    def failing(self, frames):
        working[0] -= len(frames)
        if working[0] < 0:
            raise RuntimeError("out of memory even with 16-pixel tiles")
        return upscale(self, frames)

    monkeypatch.setattr(pipeline.FrameUpscaler, "__call__", failing)
    assert run(*argv) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == [f"{clip}: upscaling frame 7 failed: out of memory even with 16-pixel tiles"]
    parts = tmp_path / ".out.mp4.parts"
    assert sorted(p.name for p in parts.iterdir()) == ["progress.json", "segment_00000.mp4"]

    working[0] = 0
    monkeypatch.setenv("ESRFORGE_DEBUG", "1")  # the traceback, with the network's error as its cause
    with pytest.raises(ValueError, match="upscaling frame 5") as raised:
        run(*argv)
    assert isinstance(raised.value.__cause__, RuntimeError)

    monkeypatch.setattr(pipeline.FrameUpscaler, "__call__", upscale)
    assert run(*argv) == 0
    assert frame_times(out) == [p / 1000 for p in PTS_MS] and not parts.exists()


def test_an_encoder_failing_is_one_line(tmp_path, x2_checkpoint, clip, caplog, monkeypatch):
    def failing(self, packets):
        raise RuntimeError("libx264 produced a packet without pts")

    monkeypatch.setattr(pipeline.SegmentEncoder, "_mux", failing)
    assert run("--model", x2_checkpoint, "--input", clip, "--output", tmp_path / "out.mkv") == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == [f"{clip}: encoding frame 0 failed: libx264 produced a packet without pts"]


def test_subtitles_an_mp4_cannot_hold_fail_before_any_work(tmp_path, x2_checkpoint, caplog):
    source = make_video(tmp_path / "subs.mkv", audio=False, subtitles=True)
    assert run("--model", x2_checkpoint, "--input", source, "--output", tmp_path / "out.mp4") == 2
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
def test_user_errors_exit_2(tmp_path, x2_checkpoint, clip, caplog, make, flags, message):
    (tmp_path / "clip.mp4").write_bytes(clip.read_bytes())
    assert (
        run("--model", x2_checkpoint, "--input", make(tmp_path), "--output", tmp_path / "o.mkv", *flags) == 2
    )
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


def test_config_form_as_a_subprocess(tmp_path, x2_checkpoint, clip):
    out = tmp_path / "out.mp4"
    overrides = [
        f"path.pretrain_model_generator={x2_checkpoint}", f"video.input={clip}", f"video.output={out}",
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
