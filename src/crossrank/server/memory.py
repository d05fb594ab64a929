"""Give freed heap back to the operating system now and then (glibc only).

Under steady load of varying batch shapes, glibc keeps freed memory in its per-thread arenas and, once tensors of
varying sizes have moved its mmap threshold up, in the heap: RSS climbs in steps long after the live memory has
stopped growing. ``malloc_trim(0)`` returns the free pages of every arena; it costs milliseconds, so a background
thread calls it every few seconds, and only after work has been done since its last call.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
from collections.abc import Callable

log = logging.getLogger("crossrank.server")


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None
    return trim


class MemoryReleaser:
    """Calls ``malloc_trim(0)`` every ``interval`` seconds in a daemon thread while ``busy()`` says work was done since
    the previous call. Does nothing where the C library has no ``malloc_trim``."""

    def __init__(self, interval: float, busy: Callable[[], bool]) -> None:
        self.interval = interval
        self.busy = busy
        self.trims = 0
        self._trim = _malloc_trim()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def available(self) -> bool:
        return self._trim is not None

    def start(self) -> None:
        if self._trim is None or self.interval <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="crossrank-malloc-trim", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._thread = None

    def _run(self) -> None:
        assert self._trim is not None
        while not self._stop.wait(self.interval):
            if self.busy():
                self._trim(0)
                self.trims += 1
