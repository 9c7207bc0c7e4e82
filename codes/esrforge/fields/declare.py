"""Helpers for declaring documented option fields on frozen dataclasses."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any

from .errors import OptionValueError


def option(default: Any = dataclasses.MISSING, *, doc: str, factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with a one-line ``doc`` that the config reference prints.

    Leave both ``default`` and ``factory`` out for a required key.
    """
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata={"doc": doc})
    return dataclasses.field(default=default, metadata={"doc": doc})


def require(condition: bool, key: str, expected: str, got: Any) -> None:
    """Raise :class:`OptionValueError` for ``key`` unless ``condition`` holds."""
    if not condition:
        raise OptionValueError(key, f"expected {expected}, got {got!r}")


def require_folder_name(name: str, key: str = "name") -> None:
    """``name`` must work as one folder name (it becomes experiments/<name> or results/<name>)."""
    require(
        bool(name) and "/" not in name and name not in (".", ".."), key, "a folder name without '/'", name
    )


class MustExist:
    """Marker in ``Annotated[Path, MustExist]``: the loader checks that the path exists."""


InputPath = Annotated[Path, MustExist]
"""A path the config reads from; a missing file or folder is a config error."""
