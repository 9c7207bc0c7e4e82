"""The work folder of a video job: finished segment files and ``progress.json``, which lets a job resume.

A segment is written under a temporary name and renamed when complete, then recorded in
``progress.json`` (also replaced atomically). A segment file that is not in ``progress.json`` is
unfinished and is deleted. The record carries a fingerprint of the input, the model and every setting
that changes the pixels or the encoding; when a rerun's fingerprint differs, the old segments are
discarded and the job starts over.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..fileio import atomic_write_text, fsync_dir

log = logging.getLogger(__name__)

PROGRESS = "progress.json"
VERSION = 2
PARTIAL = ".partial"
OWN_FILES = re.compile(r"^\.?segment_\d{5}(\.partial)?\.\w+$|^\.progress\.json\..*\.tmp$")
"""The files of ours a work folder may hold besides progress.json (only these are ever deleted)."""


def partial_path(path: Path) -> Path:
    """The temporary name ``path`` is written under (same folder and suffix, hidden)."""
    return path.with_name(f".{path.stem}{PARTIAL}{path.suffix}")


def publish(tmp: Path, path: Path) -> None:
    """Make the finished file ``tmp`` durable and rename it to ``path``."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp.replace(path)
    fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary name beside ``path`` to write to, renamed to ``path`` on success, deleted on error.

    For writers that need a file name rather than a file object (FFmpeg).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    publish(tmp, path)


def file_identity(path: Path) -> dict[str, Any]:
    """Path, size and modification time: enough to notice a replaced input or model."""
    status = path.stat()
    return {"path": str(path.resolve()), "size": status.st_size, "mtime_ns": status.st_mtime_ns}


@dataclass(frozen=True)
class SegmentRecord:
    """A finished segment: its file (in the work folder) and the frames it holds."""

    file: str
    first_frame: int
    frames: int
    first_pts: int
    last_pts: int
    end_pts: int
    """Where its last frame ends (for the duration of a joined MP4)."""
    reorder: int
    """B-frame reordering depth of its packets (for the decode timestamps of the joined stream)."""


@dataclass
class Progress:
    """The finished segments of a job, saved to ``<work_dir>/progress.json`` after each one."""

    work_dir: Path
    fingerprint: dict[str, Any]
    segments: list[SegmentRecord] = field(default_factory=list)

    @classmethod
    def open(cls, work_dir: Path, fingerprint: dict[str, Any]) -> Progress:
        """The saved progress when it belongs to the same job, else a fresh start (old files removed)."""
        progress = cls(work_dir, fingerprint)
        saved = _read(work_dir / PROGRESS)
        if saved is not None and saved.get("fingerprint") == fingerprint:
            progress.segments = _records(saved.get("segments"))
            missing = [s.file for s in progress.segments if not (work_dir / s.file).is_file()]
            if missing:
                log.warning("%s: segment %s is missing: starting over", work_dir, missing[0])
                progress.segments = []
        elif saved is not None:
            log.warning("%s: left by a job with other settings or inputs: starting over", work_dir)
        progress._remove_unrecorded()
        if progress.segments:
            log.info(
                "resuming: %d segment(s) with %d frame(s) already done in %s",
                len(progress.segments),
                progress.frames_done,
                work_dir,
            )
        progress.save()
        return progress

    @property
    def frames_done(self) -> int:
        return sum(s.frames for s in self.segments)

    def segment_path(self, index: int, suffix: str) -> Path:
        """Where segment ``index`` is written."""
        return self.work_dir / f"segment_{index:05d}{suffix}"

    def add(self, record: SegmentRecord) -> None:
        """Record a finished segment (its file is already in place)."""
        self.segments.append(record)
        self.save()

    def save(self) -> None:
        data = {
            "version": VERSION,
            "fingerprint": self.fingerprint,
            "segments": [asdict(s) for s in self.segments],
        }
        atomic_write_text(self.work_dir / PROGRESS, json.dumps(data, indent=1) + "\n")

    def remove(self) -> None:
        """Delete the segments and progress.json, and the work folder when nothing else is in it."""
        self.segments = []
        self._remove_unrecorded()
        (self.work_dir / PROGRESS).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.work_dir.rmdir()

    def _remove_unrecorded(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        keep = {s.file for s in self.segments}
        for path in self.work_dir.iterdir():
            if path.is_file() and OWN_FILES.match(path.name) and path.name not in keep:
                path.unlink()


def _records(data: Any) -> list[SegmentRecord]:
    """The segment records of a progress file; none when they are malformed (a warning then)."""
    try:
        return [SegmentRecord(**s) for s in data]
    except TypeError as err:
        log.warning("malformed segment records in %s (%s): starting over", PROGRESS, err)
        return []


def _read(path: Path) -> dict[str, Any] | None:
    """The saved progress, or None when absent or unreadable (a warning then)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        log.warning("%s: unreadable (%s): starting over", path, err)
        return None
    if not isinstance(data, dict) or data.get("version") != VERSION:
        log.warning("%s: not a progress file of this version: starting over", path)
        return None
    return data
