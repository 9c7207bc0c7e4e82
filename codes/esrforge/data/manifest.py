"""The chunk manifest (``manifest.jsonl``) and the journal that makes an interrupted chunking run resumable.

The manifest has one JSON object per line, one line per chunk; images in order of relative path, rows in order::

    {"chunk": "0001_s001.png", "source": "/data/DIV2K/0001.png", "box": [0, 0, 480, 480],
     "source_size": [1356, 2040], "lr": "../lr_x4/0001_s001.png"}

``chunk`` and ``lr`` are relative to the manifest's folder (so the folder can move); ``box`` is
``[top, left, height, width]`` in the source image, ``source_size`` is ``[height, width]``; ``lr`` is
present only when LR chunks were written.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ..fileio import atomic_write_text

MANIFEST_NAME = "manifest.jsonl"
JOURNAL_NAME = ".manifest.journal.jsonl"


@dataclass(frozen=True)
class ManifestEntry:
    """One chunk: its file, the source image it was cut from and where."""

    chunk: str
    source: str
    box: tuple[int, int, int, int]
    source_size: tuple[int, int]
    lr: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "chunk": self.chunk,
            "source": self.source,
            "box": list(self.box),
            "source_size": list(self.source_size),
        }
        if self.lr is not None:
            data["lr"] = self.lr
        return data

    @classmethod
    def from_dict(cls, data: Any) -> ManifestEntry:
        """Parse one manifest object; raise ValueError saying what is wrong."""
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        try:
            box = tuple(int(v) for v in data["box"])
            size = tuple(int(v) for v in data["source_size"])
            chunk, source, lr = str(data["chunk"]), str(data["source"]), data.get("lr")
        except KeyError as err:
            raise ValueError(f"missing key {err.args[0]!r}") from None
        except (TypeError, ValueError):
            raise ValueError("box and source_size must be lists of integers") from None
        if len(box) != 4 or len(size) != 2 or box[2] < 1 or box[3] < 1:
            raise ValueError(f"expected box [top, left, height, width] and source_size [h, w], got {data}")
        return cls(
            chunk,
            source,
            (box[0], box[1], box[2], box[3]),
            (size[0], size[1]),
            None if lr is None else str(lr),
        )


def write_manifest(path: Path, entries: Iterable[ManifestEntry]) -> None:
    """Write ``entries`` as JSON lines, atomically."""
    atomic_write_text(path, "".join(json.dumps(e.to_dict()) + "\n" for e in entries))


def read_manifest(path: Path) -> list[ManifestEntry]:
    """Read a manifest; a bad line raises ValueError naming the file and line number."""
    entries = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise ValueError(
            f"{path}: not a chunk manifest (a {MANIFEST_NAME} of JSON lines); expected it or a folder of images"
        ) from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entries.append(ManifestEntry.from_dict(json.loads(line)))
        except ValueError as err:
            raise ValueError(f"{path} line {number}: not a chunk manifest line: {err}") from None
    return entries


class Journal:
    """Append-only record of finished images, one JSON line each; read back to resume a run.

    A line is written only after all of an image's chunks are on disk, so a line is a promise that they
    exist. A torn last line (a crash mid-write) is ignored when reading.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: TextIO | None = None

    def load(self) -> dict[str, list[ManifestEntry]]:
        """The entries of every image recorded so far, by source (a later record wins)."""
        records: dict[str, list[ManifestEntry]] = {}
        if not self.path.exists():
            return records
        with self.path.open(encoding="utf-8") as handle:
            for line in handle:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    data = json.loads(line)
                    records[str(data["source"])] = [ManifestEntry.from_dict(e) for e in data["entries"]]
        return records

    def append(self, source: str, entries: list[ManifestEntry]) -> None:
        """Record that ``source`` is done with these ``entries``."""
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            torn = self.path.exists() and self.path.stat().st_size > 0 and not _ends_with_newline(self.path)
            self._handle = self.path.open("a", encoding="utf-8")
            if torn:
                self._handle.write("\n")
        record = {"source": source, "entries": [e.to_dict() for e in entries]}
        self._handle.write(json.dumps(record) + "\n")
        self._handle.flush()

    def close(self, remove: bool = False) -> None:
        """Close the file; ``remove`` deletes it (once the manifest holds everything)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if remove:
            self.path.unlink(missing_ok=True)


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"
