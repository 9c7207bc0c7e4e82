"""A video job: decode, upscale and encode in resumable segments, then join them with the audio and subtitles.

Nothing but the segments (and, when asked for, PNG frames) is written before the output, which
appears under its name only when complete. Frames keep their timestamps; every frame is kept.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..data.imageio import write_image
from ..fields.convert import to_data
from ..inference.runner import build_upscaler
from .encode import SegmentEncoder, VideoSpec, check_output, even_size, pixel_depth
from .mux import copied_streams, join_segments
from .options import EncodeOptions, VideoConfig, VideoFilesSection
from .prefetch import prefetch
from .segments import Progress, SegmentRecord, file_identity, partial_path, publish
from .source import SourceFrame, VideoSource, colour, display_matrix
from .upscale import FrameUpscaler

log = logging.getLogger(__name__)

CONTAINERS = {".mkv": "matroska", ".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".webm": "webm"}
"""Output suffixes and their FFmpeg formats."""
KEEP_SUFFIXES = (".mkv", ".mp4", ".m4v", ".mov")
"""Input suffixes a default output name keeps (others get .mkv)."""
PREFETCH_FRAMES = 8


class FrameFailure(ValueError):
    """The network or the encoder failed on a frame: reported in one line (the cause stays chained)."""


def output_path(config: VideoConfig, scale: int) -> Path:
    """``video.output``, or ``<input stem>_x<scale><suffix>`` beside the input; never the input itself."""
    source = config.video.input
    output = config.video.output
    if output is None:
        suffix = source.suffix.lower() if source.suffix.lower() in KEEP_SUFFIXES else ".mkv"
        output = source.with_name(f"{source.stem}_x{scale}{suffix}")
    if output.suffix.lower() not in CONTAINERS:
        raise ValueError(f"video.output: {output}: unsupported suffix; use one of {', '.join(CONTAINERS)}")
    if output.resolve() == source.resolve():
        raise ValueError(f"video.output: {output} is the input; choose another name")
    return output


def make_folder(folder: Path, what: str) -> None:
    """Create ``folder`` (and its parents) before any work is done; one that cannot be fails naming ``what``."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ValueError(f"{what}: {folder} is a file; expected a folder") from None
    except OSError as err:
        raise ValueError(f"{what}: cannot create the folder {folder} ({err.strerror})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{what}: no permission to write in the folder {folder}")


def work_folder(files: VideoFilesSection, output: Path) -> Path:
    """The job's work folder, created with the output's folder (errors name the option that set them)."""
    named = f"--output (video.output): {output}"
    make_folder(output.parent, named)
    work_dir = files.work_dir or output.with_name(f".{output.name}.parts")
    make_folder(work_dir, "video.work_dir" if files.work_dir else named)
    return work_dir


def fingerprint(config: VideoConfig, scale: int, output: Path) -> dict[str, Any]:
    """What must not change between a run and its resumption (inputs, and settings that change the bytes)."""
    tiling, weights = config.inference, config.path.pretrain_model_generator
    assert weights is not None, "checked when the config loads"
    return {
        "input": file_identity(config.video.input),
        "model": file_identity(weights),
        "output": str(output.resolve()),
        "scale": scale,
        "network": to_data(config.networks.generator),
        "param_key": config.path.param_key,
        "precision": "fp16" if config.fp16 else "bf16" if config.bf16 else "fp32",
        "tiling": [tiling.tile_size, tiling.tile_pad, tiling.tile_overlap],
        "encode": to_data(config.encode),
        "segment_seconds": config.video.segment_seconds,
        "frames_out": None if config.video.frames_out is None else str(config.video.frames_out.resolve()),
    }


class OpenSegment:
    """A segment being encoded under a temporary name; :meth:`finish` renames it and returns its record."""

    def __init__(
        self, path: Path, first: SourceFrame, format_name: str, options: EncodeOptions, spec: VideoSpec
    ) -> None:
        self.path, self.tmp = path, partial_path(path)
        self.first_frame, self.first_pts = first.index, first.pts
        self.encoder = SegmentEncoder(self.tmp, format_name, options, spec)

    def finish(self) -> SegmentRecord:
        encoded = self.encoder.finish()
        publish(self.tmp, self.path)
        return SegmentRecord(
            self.path.name,
            self.first_frame,
            encoded.frames,
            encoded.first_pts,
            encoded.last_pts,
            encoded.end_pts,
            encoded.reorder,
        )

    def abort(self) -> None:
        self.encoder.close()
        self.tmp.unlink(missing_ok=True)


@dataclass
class Encoding:
    """Routes upscaled frames into segments of about ``seconds`` each, recorded in ``progress``."""

    progress: Progress
    format_name: str
    suffix: str
    options: EncodeOptions
    spec: VideoSpec
    seconds: Fraction
    frames_out: Path | None = None
    current: OpenSegment | None = None

    def add(self, frame: SourceFrame, image: np.ndarray) -> None:
        """Encode ``image``, the upscaled ``frame`` (which starts a new segment when it is due)."""
        if (
            self.current is not None
            and (frame.pts - self.current.first_pts) * self.spec.time_base >= self.seconds
        ):
            self.progress.add(self.current.finish())
            self.current = None
        if self.current is None:
            path = self.progress.segment_path(len(self.progress.segments), self.suffix)
            self.current = OpenSegment(path, frame, self.format_name, self.options, self.spec)
        self.current.encoder.add(image, frame.pts, frame.duration)
        if self.frames_out is not None:
            write_image(self.frames_out / f"{frame.index:08d}.png", image)

    def close(self, complete: bool) -> None:
        """Finish the open segment (``complete``), or drop it (after an error)."""
        if self.current is not None:
            if complete:
                self.progress.add(self.current.finish())
            else:
                self.current.abort()
            self.current = None


def _batches(frames: Iterable[SourceFrame], size: int) -> Iterator[list[SourceFrame]]:
    iterator = iter(frames)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


@contextlib.contextmanager
def failing_at(source: Path, step: str) -> Iterator[None]:
    """A RuntimeError of the network or the encoder (out of memory, a packet without pts) during ``step``
    becomes a :class:`FrameFailure` naming ``source`` and the step."""
    try:
        yield
    except RuntimeError as err:
        raise FrameFailure(f"{source}: {step} failed: {err}") from err


def _numbers(batch: list[SourceFrame]) -> str:
    first, last = batch[0].index, batch[-1].index
    return f"frame {first}" if first == last else f"frames {first}-{last}"


def upscale_frames(
    source: VideoSource, upscale: FrameUpscaler, encoding: Encoding, depth: int, show_progress: bool
) -> int:
    """Decode, upscale and encode the frames not done yet; the number of frames processed.

    The finished segments stay in the work folder when a frame fails, for a rerun to resume after them.
    """
    done = encoding.progress.frames_done
    bar = tqdm(
        total=source.estimated_frames(),
        initial=done,
        unit="frame",
        dynamic_ncols=True,
        disable=not show_progress or None,
    )
    frames = prefetch(source.frames(depth, skip=done), PREFETCH_FRAMES)
    count = 0
    with bar:
        try:
            for batch in _batches(frames, upscale.batch_size):
                with failing_at(source.path, f"upscaling {_numbers(batch)}"):
                    images = upscale([f.image for f in batch])
                for frame, image in zip(batch, images, strict=True):
                    with failing_at(source.path, f"encoding frame {frame.index}"):
                        encoding.add(frame, image)
                    bar.update(1)
                count += len(batch)
        except BaseException:
            encoding.close(complete=False)
            raise
        finally:
            frames.close()
        with failing_at(source.path, "finishing the last segment"):
            encoding.close(complete=True)
        bar.total = bar.n  # the estimate (duration x average rate, for a VFR video) can be off
    return count


def run_video(config: VideoConfig, show_progress: bool = True) -> int:
    """Run a whole process_video job; returns the exit code (0)."""
    files = config.video
    if files.frames_out is not None:
        make_folder(files.frames_out, "--frames-out (video.frames_out)")
    depth = pixel_depth(config.encode.pix_fmt)
    upscalers = build_upscaler(config, config.inference, bits=depth)
    scale = upscalers.description.scale
    upscale = FrameUpscaler(upscalers.main, config.inference.frame_batch_size)
    output = output_path(config, scale)
    format_name = CONTAINERS[output.suffix.lower()]
    started = time.perf_counter()
    with VideoSource(files.input) as source:
        width, height = even_size(config.encode.pix_fmt, source.width * scale, source.height * scale)
        if (width, height) != (source.width * scale, source.height * scale):
            log.warning(
                "%s needs even sizes: frames are padded to %dx%d", config.encode.pix_fmt, width, height
            )
        first = source.first_frame()
        spec = VideoSpec(
            width,
            height,
            source.time_base,
            source.rate,
            source.sample_aspect_ratio,
            colour(first),
            display_matrix(first),
        )
        check_output(format_name, config.encode, spec, copied_streams(source.container))
        log.info(
            "%s: %dx%d -> %dx%d (x%d), %s %s -> %s",
            files.input, source.width, source.height, width, height, scale,
            config.encode.codec, config.encode.pix_fmt, output,
        )  # fmt: skip
        progress = Progress.open(work_folder(files, output), fingerprint(config, scale, output))
        encoding = Encoding(
            progress,
            format_name,
            output.suffix,
            config.encode,
            spec,
            Fraction(files.segment_seconds),
            files.frames_out,
        )
        count = upscale_frames(source, upscale, encoding, depth, show_progress)
    elapsed = time.perf_counter() - started
    depth_of_b_frames = max(s.reorder for s in progress.segments)
    join_segments(
        output,
        format_name,
        [(progress.work_dir / s.file, s.end_pts * spec.time_base) for s in progress.segments],
        depth_of_b_frames,
        files.input,
        spec.rate,
    )
    total = progress.frames_done
    if not files.keep_segments:
        progress.remove()
    log.info(
        "%s: %d frame(s) written (%d upscaled in %.1f s, %.2f frames/s)",
        output, total, count, elapsed, count / elapsed if elapsed else 0.0,
    )  # fmt: skip
    return 0
