"""What every command-line program shares: user errors become one line and exit code 2."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Callable

from ..fields.errors import OptionError
from ..logs import LOGGER_NAME, original_message, setup_logging

USER_ERRORS: tuple[type[BaseException], ...] = (OptionError, OSError, ValueError)
"""Problems with a user's input: config, files, images, checkpoints."""

EXIT_USAGE = 2


def run_program(main: Callable[[], int | None]) -> int:
    """Run ``main``; report a user error in one line and return 2.

    With ``ESRFORGE_DEBUG=1`` in the environment a user error raises with its traceback, and the log
    shows debug messages, timestamps and OpenCV's own messages.
    """
    setup_logging(verbose=bool(os.environ.get("ESRFORGE_DEBUG")))
    # spandrel's Swin-family networks call torch.meshgrid the old way: a notice users cannot act on
    warnings.filterwarnings("ignore", message="torch.meshgrid: in an upcoming release", category=UserWarning)
    try:
        return main() or 0
    except USER_ERRORS as err:
        if os.environ.get("ESRFORGE_DEBUG"):
            raise
        # A config error is the same in every process torchrun starts: the first one says it.
        if not isinstance(err, OptionError) or os.environ.get("RANK", "0") == "0":
            logging.getLogger(LOGGER_NAME).error("%s", _one_line(err))
        return EXIT_USAGE
    except KeyboardInterrupt:
        logging.getLogger(LOGGER_NAME).error("interrupted")
        return 130


def _one_line(err: BaseException) -> str:
    text = " ".join(original_message(str(err)).split())
    if isinstance(err, OSError) and err.filename is not None and str(err.filename) not in text:
        text = f"{err.filename}: {text}"
    return text or type(err).__name__


def exit_with(main: Callable[[], int | None]) -> None:
    """``sys.exit(run_program(main))``: the body of an entry script."""
    sys.exit(run_program(main))


def add_overrides_argument(parser: argparse.ArgumentParser, example: str) -> None:
    """``--set KEY=VALUE ...`` (repeatable), collected in ``args.overrides``."""
    parser.add_argument(
        "--set",
        dest="overrides",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help=f"override config values, e.g. --set {example}",
    )
