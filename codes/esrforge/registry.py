"""Registries that map a config ``type:`` name to a class and its options dataclass."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered class (or builder function) together with the dataclass of its options."""

    name: str
    cls: Callable[..., T]
    options: type[Any]


class Registry(Generic[T]):
    """A named table of classes selectable by ``type:`` in a config file."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, options: type[Any], name: str | None = None) -> Callable[[F], F]:
        """Decorator of a class or builder taking ``options``: register it under ``name`` (default: its name)."""

        def decorate(cls: F) -> F:
            key = name or cls.__name__
            if key in self._entries:
                raise ValueError(f"{self.kind} type {key!r} is registered twice")
            self._entries[key] = Entry(key, cls, options)
            return cls

        return decorate

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str) -> Entry[T]:
        """Look up ``name``; the error lists the registered names and the nearest match."""
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(unknown_name_message(f"{self.kind} type", name, self.names())) from None


def unknown_name_message(what: str, name: str, known: list[str]) -> str:
    """``unknown <what> 'x' (did you mean 'y'?); expected one of: a, b`` in one line."""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {what} {name!r}{hint}; expected one of: {', '.join(known)}"
