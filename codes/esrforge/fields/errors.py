"""Errors raised while reading a config; each renders as one line naming the file and key."""

from __future__ import annotations


class OptionError(Exception):
    """A config problem at ``key`` (a dotted path such as ``networks.generator.nb``)."""

    def __init__(self, key: str, message: str, source: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.message = message
        self.source = source

    def at(self, prefix: str) -> OptionError:
        """The same error with ``prefix`` prepended to its key path."""
        key = f"{prefix}.{self.key}" if self.key else prefix
        if self.key.startswith("["):
            key = f"{prefix}{self.key}"
        return OptionError(key, self.message, self.source)

    def __str__(self) -> str:
        where = f"{self.source}: " if self.source else ""
        key = f"{self.key}: " if self.key else ""
        return f"{where}{key}{self.message}"


class OptionValueError(OptionError):
    """Raised by an options dataclass's ``__post_init__`` for a value of the right type but wrong range.

    ``OptionValueError("nb", "a positive integer, got 0")``; the loader adds the path and file.
    """
