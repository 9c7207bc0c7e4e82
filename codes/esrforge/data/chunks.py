"""Cutting HR images into overlapping square sub-images ("chunks") plus a manifest, for fast training reads.

As in BasicSR's ``extract_subimages``: the whole image is used (no centre crop); chunk positions along
each axis are ``range(0, size - crop + 1, step)`` plus one more flush with the far border when the
uncovered remainder is wider than ``thresh_size``. Images smaller than one chunk are reported and skipped.

Image handling follows :func:`esrforge.data.sources.to_rgb`: grey becomes RGB, alpha is dropped, and
16-bit images stay 16-bit in PNG output; JPEG and WebP output is 8-bit (16-bit images are rounded
down to 8 bits first, and LR chunks are made from that 8-bit chunk).

A re-run reuses the images a previous run finished (recorded in ``manifest.jsonl`` or, after an
interruption, in a journal) when their chunk files are all present and the crop, step, threshold,
format and LR folder are unchanged; ``overwrite`` redoes everything (use it after changing
``quality`` or ``scale``, which are not checked).
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from tqdm import tqdm

from ..fields import OptionError, option, require
from ..fileio import atomic_write_bytes, remove_temporaries
from .imageio import list_images, to_uint8, write_image
from .imresize import imresize
from .manifest import JOURNAL_NAME, MANIFEST_NAME, Journal, ManifestEntry, read_manifest, write_manifest
from .sources import read_rgb

log = logging.getLogger(__name__)

Box = tuple[int, int, int, int]
"""``(top, left, height, width)`` in pixels."""


@dataclass(frozen=True, kw_only=True)
class ChunkOptions:
    """How images are cut and written."""

    crop_size: int = option(480, doc="side of each square HR chunk in pixels")
    step: int = option(
        240, doc="distance between neighbouring chunk positions (less than crop_size: overlap)"
    )
    thresh_size: int = option(
        0, doc="an edge remainder wider than this gets one more chunk flush with the border"
    )
    format: Literal["png", "jpg", "webp"] = option(
        "png", doc="chunk file format; png is lossless and keeps 16 bits"
    )
    quality: int = option(95, doc="JPEG/WebP quality, 1-100; ignored for png")
    scale: int = option(4, doc="downscaling factor of the LR chunks")
    lr_output: Path | None = option(
        None, doc="folder for LR chunks made by MATLAB bicubic; null: no LR chunks"
    )
    overwrite: bool = option(False, doc="redo every image, even those a previous run finished")

    def __post_init__(self) -> None:
        require(self.crop_size > 0, "crop_size", "a positive size", self.crop_size)
        require(self.step > 0, "step", "a positive step", self.step)
        require(self.thresh_size >= 0, "thresh_size", "0 or more pixels", self.thresh_size)
        require(1 <= self.quality <= 100, "quality", "a quality from 1 to 100", self.quality)
        require(self.scale >= 1, "scale", "a factor of 1 or more", self.scale)
        if self.lr_output is not None:
            require(
                self.crop_size % self.scale == 0,
                "crop_size",
                f"a multiple of scale {self.scale}",
                self.crop_size,
            )


def chunk_positions(length: int, crop: int, step: int, thresh: int) -> list[int]:
    """Start offsets of the chunks along one axis of ``length`` pixels; empty if ``length < crop``."""
    if length < crop:
        return []
    positions = list(range(0, length - crop + 1, step))
    if length - (positions[-1] + crop) > thresh:
        positions.append(length - crop)
    return positions


def chunk_boxes(height: int, width: int, options: ChunkOptions) -> list[Box]:
    """Every chunk of an image, row by row."""
    crop, step, thresh = options.crop_size, options.step, options.thresh_size
    rows = chunk_positions(height, crop, step, thresh)
    cols = chunk_positions(width, crop, step, thresh)
    return [(top, left, crop, crop) for top in rows for left in cols]


def chunk_name(key: str, index: int, fmt: str) -> str:
    """File name of chunk ``index`` (1-based) of the image ``key``, BasicSR style: ``key_s001.png``."""
    return f"{key}_s{index:03d}.{fmt}"


@dataclass(frozen=True)
class ImageTask:
    """One source image to cut; ``key`` is its path relative to its input folder, without suffix."""

    source: Path
    key: str
    output: Path
    options: ChunkOptions

    def entries(self, height: int, width: int) -> list[ManifestEntry]:
        """The manifest entries of this image at this size."""
        lr_dir = self.options.lr_output
        entries = []
        for index, box in enumerate(chunk_boxes(height, width, self.options), 1):
            name = chunk_name(self.key, index, self.options.format)
            lr = None if lr_dir is None else Path(os.path.relpath(lr_dir / name, self.output)).as_posix()
            entries.append(ManifestEntry(name, str(self.source), box, (height, width), lr))
        return entries

    def is_done(self, recorded: list[ManifestEntry] | None) -> bool:
        """Whether a previous run's ``recorded`` entries match these options and all their files exist."""
        if not recorded or self.options.overwrite:
            return False
        if recorded != self.entries(*recorded[0].source_size):
            return False
        return all(path.exists() for entry in recorded for path in self.files(entry))

    def files(self, entry: ManifestEntry) -> list[Path]:
        """The HR chunk file of ``entry`` and its LR chunk file if any."""
        return [self.output / name for name in (entry.chunk, entry.lr) if name is not None]


@dataclass(frozen=True)
class ImageResult:
    """What happened to one image: its entries, or why it was skipped."""

    source: str
    entries: list[ManifestEntry]
    error: str | None = None


def process_image(task: ImageTask) -> ImageResult:
    """Read, cut and write one image (runs in a worker process)."""
    try:
        image = read_rgb(task.source)
    except (ValueError, OSError) as err:
        return ImageResult(str(task.source), [], str(err))
    height, width = image.shape[:2]
    entries = task.entries(height, width)
    if not entries:
        crop = task.options.crop_size
        return ImageResult(
            str(task.source), [], f"{task.source}: too small ({width}x{height}) for {crop}px chunks"
        )
    if task.options.format != "png":
        image = to_uint8(image)
    for entry in entries:
        top, left, h, w = entry.box
        chunk = image[top : top + h, left : left + w]
        _write(task.output / entry.chunk, chunk, task.options)
        if entry.lr is not None:
            _write(task.output / entry.lr, imresize(chunk, 1.0 / task.options.scale), task.options)
    return ImageResult(str(task.source), entries)


def _write(path: Path, image: np.ndarray, options: ChunkOptions) -> None:
    """Write a chunk atomically: PNG by :func:`write_image`, JPEG/WebP at ``options.quality``."""
    if options.format == "png":
        write_image(path, image)
        return
    flag = cv2.IMWRITE_JPEG_QUALITY if options.format == "jpg" else cv2.IMWRITE_WEBP_QUALITY
    ok, data = cv2.imencode(
        f".{options.format}", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [flag, options.quality]
    )
    if not ok:
        raise ValueError(f"cannot encode {path} as {options.format}")
    atomic_write_bytes(path, data.tobytes())


@dataclass
class RunSummary:
    """Counts reported at the end of a run."""

    images: int = 0
    reused: int = 0
    chunks: int = 0
    written: int = 0
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def line(self) -> str:
        return (
            f"{self.images} images ({self.reused} already done), {self.chunks} chunks "
            f"({self.written} written), {len(self.skipped)} skipped, {self.seconds:.1f} s"
        )


def find_sources(inputs: Iterable[Path], exclude: Iterable[Path] = ()) -> list[tuple[Path, str]]:
    """``(path, key)`` of every image under ``inputs`` (recursive), skipping files under ``exclude``."""
    excluded = [p.resolve() for p in exclude]
    by_key: dict[str, Path] = {}
    inputs = list(inputs)
    for folder in inputs:
        root = folder.resolve()
        for path in list_images(root, recursive=True):
            if any(path.is_relative_to(e) for e in excluded):
                continue
            key = path.relative_to(root).with_suffix("").as_posix()
            if key in by_key:
                raise ValueError(f"{by_key[key]} and {path} would both be chunked as {key!r}; rename one")
            by_key[key] = path
    if not by_key:
        raise ValueError(f"no images found in {', '.join(str(p) for p in inputs)}")
    return sorted(((path, key) for key, path in by_key.items()), key=lambda pair: pair[1])


def run_chunking(
    inputs: list[Path], output: Path, options: ChunkOptions, workers: int | None = None, progress: bool = True
) -> RunSummary:
    """Chunk every image under ``inputs`` into ``output`` and write ``output/manifest.jsonl``."""
    start = time.perf_counter()
    output = output.resolve()
    if options.lr_output is not None:
        options = replace(options, lr_output=options.lr_output.resolve())
    outputs = [output] + ([options.lr_output] if options.lr_output else [])
    _check_folders(inputs, output, options.lr_output)
    sources = find_sources(inputs, exclude=outputs)
    for folder in outputs:
        remove_temporaries(folder)
    journal = Journal(output / JOURNAL_NAME)
    previous = _previous_records(output / MANIFEST_NAME, journal)
    tasks = [ImageTask(path, key, output, options) for path, key in sources]
    results = {
        str(t.source): previous[str(t.source)] for t in tasks if t.is_done(previous.get(str(t.source)))
    }
    todo = [t for t in tasks if str(t.source) not in results]
    summary = RunSummary(images=len(tasks), reused=len(results))
    try:
        with tqdm(total=len(todo), unit="img", disable=None if progress else True) as bar:
            for task, result in _run_tasks(todo, workers):
                bar.update()
                if result.error is not None:
                    log.warning("skipped %s", result.error)
                    summary.skipped.append(result.error)
                    continue
                journal.append(result.source, result.entries)
                results[result.source] = result.entries
                summary.written += len(result.entries)
                _remove_stale(task, previous.get(result.source, []), result.entries)
    finally:
        journal.close()
    entries = [entry for task in tasks for entry in results.get(str(task.source), [])]
    if not entries:
        raise ValueError(
            f"no image could be chunked ({len(summary.skipped)} skipped, e.g. {summary.skipped[0]}); "
            f"{output} was not written"
        )
    write_manifest(output / MANIFEST_NAME, entries)
    journal.close(remove=True)
    summary.chunks = len(entries)
    summary.seconds = time.perf_counter() - start
    return summary


def _check_folders(inputs: list[Path], output: Path, lr_output: Path | None) -> None:
    """The output folders must be folders (or not exist yet), differ, and not hold an input folder."""
    if lr_output == output:
        raise ValueError(f"--lr-output {lr_output}: must differ from --output (the HR chunks go there)")
    for flag, folder in (("--output", output), ("--lr-output", lr_output)):
        if folder is None:
            continue
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"{flag} {folder}: expected a folder, found a file")
        for source in inputs:
            if source.resolve().is_relative_to(folder):
                raise ValueError(f"{flag} {folder}: is the input folder {source} or holds it; choose another")


def _previous_records(manifest: Path, journal: Journal) -> dict[str, list[ManifestEntry]]:
    """Entries of a previous run by source: its manifest, updated by the journal of an interrupted run."""
    records: dict[str, list[ManifestEntry]] = {}
    if manifest.exists():
        try:
            for entry in read_manifest(manifest):
                records.setdefault(entry.source, []).append(entry)
        except ValueError as err:
            log.warning("ignoring the previous manifest: %s", err)
            records = {}
    records.update(journal.load())
    return records


def _run_tasks(tasks: list[ImageTask], workers: int | None) -> Iterator[tuple[ImageTask, ImageResult]]:
    """``(task, result)`` as images finish, in this process (one worker) or a process pool."""
    count = min(workers or _cpu_count(), len(tasks))
    by_source = {str(t.source): t for t in tasks}
    if count <= 1:
        for task in tasks:
            yield task, process_image(task)
        return
    with multiprocessing.Pool(count, initializer=_ignore_interrupts) as pool:
        for result in pool.imap_unordered(process_image, tasks):
            yield by_source[result.source], result


def _ignore_interrupts() -> None:
    """In pool workers: leave Ctrl-C to the main process, which stops the pool."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _cpu_count() -> int:
    """CPUs this process may use."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity else os.cpu_count() or 1


def _remove_stale(task: ImageTask, old: list[ManifestEntry], new: list[ManifestEntry]) -> None:
    """Delete chunk files of a previous run of this image that the new run did not write."""
    keep = {path for entry in new for path in task.files(entry)}
    for entry in old:
        for path in task.files(entry):
            if path not in keep:
                path.unlink(missing_ok=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="extract_subimages.py",
        description="Cut HR images into overlapping sub-images and write a manifest.jsonl for training.",
    )
    parser.add_argument(
        "--input", type=Path, nargs="+", required=True, metavar="DIR", help="folders of HR images"
    )
    parser.add_argument("--output", type=Path, required=True, metavar="DIR", help="folder for the HR chunks")
    parser.add_argument("--crop-size", type=int, default=480, help="chunk side in pixels (default 480)")
    parser.add_argument("--step", type=int, default=240, help="distance between chunks (default 240)")
    parser.add_argument(
        "--thresh-size",
        type=int,
        default=0,
        help="edge remainder wider than this gets a flush chunk (default 0)",
    )
    parser.add_argument("--format", choices=["png", "jpg", "webp"], default="png", help="chunk format (png)")
    parser.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality (default 95)")
    parser.add_argument("--scale", type=int, default=4, help="LR downscaling factor (default 4)")
    parser.add_argument(
        "--lr-output", type=Path, metavar="DIR", help="also write LR chunks (MATLAB bicubic) here"
    )
    parser.add_argument("--workers", type=int, help="processes (default: all cores)")
    parser.add_argument("--overwrite", action="store_true", help="redo images a previous run finished")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; a run that chunks no image at all raises (exit code 2)."""
    args = _parser().parse_args(argv)
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers: expected 1 or more, got {args.workers}")
    try:
        options = ChunkOptions(
            crop_size=args.crop_size,
            step=args.step,
            thresh_size=args.thresh_size,
            format=args.format,
            quality=args.quality,
            scale=args.scale,
            lr_output=args.lr_output,
            overwrite=args.overwrite,
        )
    except OptionError as err:
        err.key = "--" + err.key.replace("_", "-")  # the flag, not the option's field name
        raise
    summary = run_chunking(args.input, args.output, options, workers=args.workers)
    log.info("%s", summary.line())
    return 0
