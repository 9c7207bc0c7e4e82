"""Run a generator in a background thread, a few items ahead (decoding overlaps the network's work)."""

from __future__ import annotations

import threading
from collections.abc import Generator
from queue import Full, Queue
from typing import Any, TypeVar

T = TypeVar("T")
POLL_SECONDS = 0.1


def _put(queue: Queue[tuple[str, Any]], item: tuple[str, Any], stop: threading.Event) -> bool:
    """Put ``item`` unless ``stop`` is set first; whether it was put."""
    while not stop.is_set():
        try:
            queue.put(item, timeout=POLL_SECONDS)
            return True
        except Full:
            continue
    return False


def prefetch(items: Generator[T, None, None], depth: int) -> Generator[T, None, None]:
    """The items of ``items``, produced by a thread up to ``depth`` ahead; its exceptions are raised here.

    When the consumer stops early (or fails), the thread is stopped and ``items`` closed before this
    generator finishes, so resources ``items`` uses can be released right after.
    """
    queue: Queue[tuple[str, Any]] = Queue(depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if not _put(queue, ("item", item), stop):
                    break
            else:
                _put(queue, ("end", None), stop)
        except BaseException as err:
            _put(queue, ("error", err), stop)
        finally:
            items.close()

    thread = threading.Thread(target=produce, name="esrforge-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = queue.get()
            if kind == "item":
                yield value
            elif kind == "error":
                raise value
            else:
                return
    finally:
        stop.set()
        thread.join()
