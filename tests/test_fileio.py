"""Atomic writes: all or nothing, no temporary files left behind, the usual permissions."""

from __future__ import annotations

import os
import stat

import pytest

from esrforge.fileio import atomic_open, atomic_write_text


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "weights.pth"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_open(target) as handle:
        handle.write(b"partial")
        raise RuntimeError("crash while writing")
    assert target.read_text() == "old"
    assert [p.name for p in target.parent.iterdir()] == ["weights.pth"]
    atomic_write_text(target, "new")
    assert target.read_text() == "new"


def test_new_files_get_the_mode_open_would_give(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    atomic_write_text(tmp_path / "out.png", "x")
    (tmp_path / "plain").write_text("x")
    mode = stat.S_IMODE((tmp_path / "out.png").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain").stat().st_mode) == 0o666 & ~umask
