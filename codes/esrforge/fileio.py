"""Atomic file writes: a temporary file in the target folder, fsync, then rename over the target."""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

FULL_BELOW = 1 << 20
"""A file system with less free space than this (bytes) counts as full when a write to it fails."""


class DiskFullError(OSError):
    """A write failed because the file system it writes to is full."""

    def __init__(self, path: Path) -> None:
        super().__init__(errno.ENOSPC, "no space left on device", str(path))
        self.path = Path(path)


def free_bytes(folder: Path) -> int:
    """Free space of the file system that holds ``folder`` (0 when it cannot be read)."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return 0


def _is_disk_full(error: BaseException, folder: Path) -> bool:
    """Whether a failed write failed for lack of space (torch's writer reports it as a RuntimeError)."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(error, OSError | RuntimeError) and free_bytes(folder) < FULL_BELOW


@contextlib.contextmanager
def atomic_open(path: Path) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path``; on success it is fsynced and renamed to ``path``.

    A crash or exception at any point leaves either the old ``path`` or no file, never a partial one.
    A write that fails because the disk is full raises :class:`DiskFullError` naming ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _new_file_mode())  # mkstemp's 0600 would hide results from other users
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).replace(path)
    except BaseException as error:
        full = _is_disk_full(error, path.parent)  # asked before the partial file frees its space
        with contextlib.suppress(FileNotFoundError):
            Path(tmp).unlink()
        if full and not isinstance(error, DiskFullError):
            raise DiskFullError(path) from error
        raise
    fsync_dir(path.parent)


@functools.cache
def _new_file_mode() -> int:
    """The mode ``open()`` gives a new file: 0666 less the process's umask."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def fsync_dir(folder: Path) -> None:
    """Make the rename durable where the platform allows opening a directory."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_temporaries(folder: Path) -> None:
    """Delete the hidden temporary files that killed atomic writes left in ``folder`` (and below)."""
    if folder.is_dir():
        for path in folder.rglob(".*.tmp"):
            path.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path) as handle:
        handle.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_with(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(handle)`` on a temporary file, then move it to ``path`` atomically."""
    with atomic_open(path) as handle:
        write(handle)
