"""Logging set-up shared by the command-line programs, and messages made fit for one log line."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TextIO

import cv2
from tqdm import tqdm

LOGGER_NAME = "esrforge"
_FORMAT = "%(asctime)s %(levelname)s %(message)s"


class ProgressAwareHandler(logging.StreamHandler):
    """Writes records through ``tqdm.write``, so a log line never lands inside a progress bar.

    Forked children (DataLoader workers) write plainly: their copies of the parent's bars are stale,
    and tqdm's lock may have been held by another thread at the fork.
    """

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self.pid = os.getpid()

    def emit(self, record: logging.LogRecord) -> None:
        if os.getpid() != self.pid:
            super().emit(record)
            return
        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # logging's contract: report, never raise
            self.handleError(record)


def setup_logging(log_file: Path | None = None, verbose: bool = False) -> logging.Logger:
    """Log to stderr (and to ``log_file`` when given, instead of any earlier file); returns the package logger.

    OpenCV's own messages (a decoder's complaint about a corrupt file, which we report in one line of
    our own) are shown only when ``verbose``.
    """
    cv2.utils.logging.setLogLevel(
        cv2.utils.logging.LOG_LEVEL_WARNING if verbose else cv2.utils.logging.LOG_LEVEL_SILENT
    )
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    if not any(getattr(h, "_esrforge_console", False) for h in logger.handlers):
        console = ProgressAwareHandler(sys.stderr)
        console.setFormatter(logging.Formatter("%(levelname)s %(message)s" if not verbose else _FORMAT))
        console._esrforge_console = True  # type: ignore[attr-defined]
        logger.addHandler(console)
    if log_file is not None:
        # One log file at a time: a second run in the same process (an experiment's next stage) must not
        # keep writing into the first run's log.
        for old in [h for h in logger.handlers if getattr(h, "_esrforge_file", False)]:
            logger.removeHandler(old)
            old.close()
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file, encoding="utf-8")
        handler.setFormatter(logging.Formatter(_FORMAT))
        handler._esrforge_file = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    return logger


def original_message(text: str) -> str:
    """An exception's message without the traceback a DataLoader worker wraps it in ("Caught ValueError in
    DataLoader worker process 0. Original Traceback ...": its last line holds the original message)."""
    if "Original Traceback" not in text:
        return text
    last = text.strip().splitlines()[-1]
    name, colon, message = last.partition(": ")
    return message.strip() if colon and " " not in name else last


def first_line(error: BaseException, skip: int = 0) -> str:
    """The first non-empty line of ``error``'s message after its first ``skip`` lines (a library's
    header, such as torch's "Error(s) in loading state_dict for ..."), or the error's type name."""
    lines = str(error).splitlines()[skip:]
    return next((line.strip() for line in lines if line.strip()), type(error).__name__)
