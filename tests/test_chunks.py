"""The chunk builder: positions, image kinds, skips, re-runs, manifest and paired LR chunks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from esrforge.cli.common import run_program
from esrforge.data.chunks import ChunkOptions, chunk_boxes, chunk_positions, main, run_chunking
from esrforge.data.imageio import read_image
from esrforge.data.imresize import imresize
from esrforge.data.manifest import JOURNAL_NAME, MANIFEST_NAME, Journal, ManifestEntry, read_manifest

REPO = Path(__file__).resolve().parent.parent
RNG = np.random.default_rng(0)


def noise(height: int, width: int, channels: int | None = 3, dtype: type = np.uint8) -> np.ndarray:
    shape = (height, width) if channels is None else (height, width, channels)
    return RNG.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True, dtype=dtype)


def save(path: Path, image: np.ndarray) -> Path:
    """Write with cv2 directly (BGR order does not matter for noise) so the test does not trust write_image."""
    assert cv2.imwrite(str(path), image)
    return path


@pytest.mark.parametrize(
    ("length", "crop", "step", "thresh", "expected"),
    [
        (10, 4, 3, 0, [0, 3, 6]),  # 6 + 4 = 10: no remainder
        (11, 4, 3, 0, [0, 3, 6, 7]),  # remainder 1 > 0: one more flush with the border
        (11, 4, 3, 1, [0, 3, 6]),  # remainder 1 is not above the threshold: dropped
        (12, 4, 3, 1, [0, 3, 6, 8]),
        (4, 4, 3, 0, [0]),
        (3, 4, 3, 0, []),
    ],
)
def test_chunk_positions(length, crop, step, thresh, expected):
    assert chunk_positions(length, crop, step, thresh) == expected


@pytest.mark.parametrize(("height", "width"), [(8, 8), (17, 23), (30, 9)])
def test_boxes_cover_the_whole_image(height, width):
    options = ChunkOptions(crop_size=8, step=5)
    covered = np.zeros((height, width), bool)
    for top, left, h, w in chunk_boxes(height, width, options):
        assert (h, w) == (8, 8) and top + h <= height and left + w <= width
        covered[top : top + h, left : left + w] = True
    assert covered.all()


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    """One image of every kind, plus a corrupt and a too-small file."""
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    save(folder / "rgb.png", noise(20, 28))
    save(folder / "grey.png", noise(16, 16, None))
    save(folder / "rgba.png", noise(16, 20, 4))
    save(folder / "deep.png", noise(16, 16, 3, np.uint16))
    save(folder / "sub" / "photo.jpg", noise(16, 16))
    save(folder / "lossless.webp", noise(16, 16))
    save(folder / "bitmap.bmp", noise(16, 16))
    save(folder / "scan.tif", noise(16, 16, 3, np.uint16))
    save(folder / "tiny.png", noise(5, 40))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return folder


def chunk(sources: Path, tmp_path: Path, **kwargs) -> tuple:
    options = ChunkOptions(crop_size=8, step=6, scale=2, lr_output=tmp_path / "lr", **kwargs)
    summary = run_chunking([sources], tmp_path / "hr", options, workers=1, progress=False)
    return summary, read_manifest(tmp_path / "hr" / MANIFEST_NAME)


def test_chunks_are_crops_of_the_normalised_image_and_lr_is_their_imresize(sources, tmp_path):
    summary, entries = chunk(sources, tmp_path)
    assert summary.images == 10 and len(summary.skipped) == 2
    assert any("broken.png" in s for s in summary.skipped) and any(
        "tiny.png" in s and "small" in s for s in summary.skipped
    )
    assert summary.chunks == summary.written == len(entries) > 0
    assert {Path(e.source).name for e in entries} == {
        "rgb.png", "grey.png", "rgba.png", "deep.png", "photo.jpg", "lossless.webp", "bitmap.bmp", "scan.tif"
    }  # fmt: skip
    hr_root = tmp_path / "hr"
    for entry in entries:
        original = read_image(entry.source)
        if original.ndim == 2:  # grey -> RGB
            original = np.repeat(original[:, :, None], 3, axis=2)
        original = original[:, :, :3]  # alpha dropped
        assert list(entry.source_size) == list(original.shape[:2])
        top, left, h, w = entry.box
        hr = read_image(hr_root / entry.chunk)
        assert hr.dtype == original.dtype  # 16-bit stays 16-bit in PNG
        np.testing.assert_array_equal(hr, original[top : top + h, left : left + w])
        assert entry.lr is not None
        np.testing.assert_array_equal(read_image(hr_root / entry.lr), imresize(hr, 0.5))
    names = [e.chunk for e in entries]
    assert "sub/photo_s001.png" in names and "rgb_s001.png" in names
    assert sum(n.startswith("rgb_") for n in names) == len(
        chunk_boxes(20, 28, ChunkOptions(crop_size=8, step=6))
    )


def test_manifest_lines_are_json_objects_with_relative_paths(sources, tmp_path):
    chunk(sources, tmp_path)
    lines = (tmp_path / "hr" / MANIFEST_NAME).read_text().splitlines()
    first = json.loads(lines[0])
    assert set(first) == {"chunk", "source", "box", "source_size", "lr"}
    assert first["lr"].startswith("../lr/") and not Path(first["chunk"]).is_absolute()
    assert ManifestEntry.from_dict(first).to_dict() == first


def test_rerun_skips_finished_images_and_writes_nothing(sources, tmp_path):
    _, entries = chunk(sources, tmp_path)
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "hr").rglob("*.png")}
    summary, again = chunk(sources, tmp_path)
    assert summary.reused == 8 and summary.written == 0 and again == entries
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "hr").rglob("*.png")} == stamps
    (tmp_path / "hr" / entries[0].chunk).unlink()  # a missing chunk makes its image redo
    summary, _ = chunk(sources, tmp_path)
    assert summary.reused == 7 and (tmp_path / "hr" / entries[0].chunk).exists()


def test_changed_step_redoes_and_removes_stale_chunks(sources, tmp_path):
    _, before = chunk(sources, tmp_path)
    summary, after = chunk(sources, tmp_path, thresh_size=7)  # drops every edge remainder chunk
    assert summary.reused == 0 and len(after) < len(before)
    on_disk = {p.relative_to(tmp_path / "hr").as_posix() for p in (tmp_path / "hr").rglob("*.png")}
    assert on_disk == {e.chunk for e in after}
    assert not list(tmp_path.rglob("*.tmp")) and not (tmp_path / "hr" / JOURNAL_NAME).exists()


def test_journal_of_an_interrupted_run_is_resumed(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    save(folder / "a.png", noise(8, 8))
    options = ChunkOptions(crop_size=8, step=8)
    output = tmp_path / "hr"
    run_chunking([folder], output, options, workers=1, progress=False)
    entries = read_manifest(output / MANIFEST_NAME)
    (output / MANIFEST_NAME).unlink()  # as if the run had died before writing its manifest
    journal = Journal(output / JOURNAL_NAME)
    journal.append(entries[0].source, entries)
    journal.close()
    with (output / JOURNAL_NAME).open("a") as handle:
        handle.write('{"source": "torn')  # a crash in the middle of a line
    assert journal.load() == {entries[0].source: entries}
    (output / ".a_s002.png.x1y2.tmp").write_bytes(b"half")  # left by a killed worker
    summary = run_chunking([folder], output, options, workers=1, progress=False)
    assert summary.reused == 1 and read_manifest(output / MANIFEST_NAME) == entries
    assert not list(output.glob(".*"))


def test_pool_gives_the_same_result_and_lossy_format_is_8_bit(sources, tmp_path):
    options = ChunkOptions(crop_size=8, step=6, format="jpg", quality=90)
    run_chunking([sources], tmp_path / "one", options, workers=1, progress=False)
    run_chunking([sources], tmp_path / "two", options, workers=2, progress=False)
    one, two = (read_manifest(tmp_path / d / MANIFEST_NAME) for d in ("one", "two"))
    assert [(e.chunk, e.box) for e in one] == [(e.chunk, e.box) for e in two]
    deep = next(e for e in two if e.chunk.startswith("deep_"))
    assert deep.chunk.endswith(".jpg") and read_image(tmp_path / "two" / deep.chunk).dtype == np.uint8


def test_user_errors_exit_2(tmp_path):
    assert (
        run_program(lambda: main(["--input", str(tmp_path / "missing"), "--output", str(tmp_path / "o")]))
        == 2
    )
    (tmp_path / "empty").mkdir()
    assert (
        run_program(lambda: main(["--input", str(tmp_path / "empty"), "--output", str(tmp_path / "o")])) == 2
    )
    args = [
        "--input",
        str(tmp_path),
        "--output",
        str(tmp_path / "o"),
        "--crop-size",
        "10",
        "--lr-output",
        "x",
    ]
    assert run_program(lambda: main(args)) == 2  # 10 is not a multiple of the default scale 4


@pytest.mark.slow
def test_entry_script_runs_from_repo_root(tmp_path):
    script = REPO / "codes" / "scripts" / "extract_subimages.py"
    args = [sys.executable, str(script), "--input", str(tmp_path / "nope"), "--output", str(tmp_path / "out")]
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "nope" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def one_image_folder(tmp_path: Path, size: int = 16) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    save(folder / "a.png", noise(size, size))
    return folder


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--lr-output", "{out}"], "--lr-output {out}: must differ from --output"),
        (["--output", "{in}"], "is the input folder"),
        (["--output", "{file}"], "--output {file}: expected a folder, found a file"),
        (["--crop-size", "64"], "no image could be chunked (1 skipped, e.g. {in}/a.png: too small (16x16)"),
        (["--crop-size", "-4"], "--crop-size: expected a positive size, got -4"),
    ],
)
def test_misplaced_folders_and_unusable_inputs_are_one_line_errors_that_write_nothing(
    tmp_path, logs, extra, expected
):
    folder = one_image_folder(tmp_path)
    (tmp_path / "afile").write_text("not a folder")
    names = {"{in}": str(folder), "{out}": str(tmp_path / "o"), "{file}": str(tmp_path / "afile")}

    def fill(text: str) -> str:
        for key, value in names.items():
            text = text.replace(key, value)
        return text

    args = ["--input", str(folder), "--output", str(tmp_path / "o"), "--crop-size", "8", "--step", "8"]
    args += [fill(a) for a in extra]
    before = sorted(tmp_path.rglob("*"))
    assert run_program(lambda: main(args)) == 2
    assert fill(expected) in logs.records[-1].getMessage()
    assert sorted(tmp_path.rglob("*")) == before  # no output folder, manifest or chunk
