"""Console logging: records written while a progress bar is on screen get lines of their own."""

from __future__ import annotations

import io
import logging

from tqdm import tqdm

from esrforge.logs import ProgressAwareHandler, setup_logging


def test_a_log_line_during_a_progress_bar_is_a_line_of_its_own():
    stream = io.StringIO()
    handler = ProgressAwareHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("esrforge.test_logs")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with tqdm(total=3, file=stream, ascii=True, mininterval=0) as bar:
            bar.update(1)
            logger.warning("halfway")
            bar.update(2)
    finally:
        logger.removeHandler(handler)
    # Each screen line is what follows the last carriage return of a newline-separated chunk.
    lines = [chunk.rsplit("\r", 1)[-1] for chunk in stream.getvalue().split("\n")]
    assert "WARNING halfway" in lines


def test_a_forked_child_writes_plainly(monkeypatch):
    stream = io.StringIO()
    handler = ProgressAwareHandler(stream)
    handler.pid -= 1  # as seen from a forked DataLoader worker

    def no_tqdm(*args, **kwargs):
        raise AssertionError("tqdm.write must not run in a child: its lock may be held by a dead thread")

    monkeypatch.setattr(tqdm, "write", no_tqdm)
    handler.emit(logging.LogRecord("esrforge", logging.WARNING, __file__, 1, "from a worker", None, None))
    assert stream.getvalue() == "from a worker\n"


def test_a_second_log_file_replaces_the_first(tmp_path):
    """Two runs in one process (an experiment's stages): each run's lines go to its own log only."""
    logger = setup_logging(tmp_path / "first.log")
    logger.info("stage one")
    setup_logging(tmp_path / "second.log")
    logger.info("stage two")
    try:
        assert "stage two" not in (tmp_path / "first.log").read_text()
        assert "stage two" in (tmp_path / "second.log").read_text()
    finally:
        for handler in [h for h in logger.handlers if isinstance(h, logging.FileHandler)]:
            logger.removeHandler(handler)
            handler.close()
