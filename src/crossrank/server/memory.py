"""Give freed heap back to the operating system (glibc only).

Under steady load of varying batch shapes, glibc keeps freed memory in its per-thread arenas and, once tensors of
varying sizes have moved its dynamic mmap threshold up, in the heap: RSS climbs long after the live memory has
stopped growing. Two remedies, both glibc's own: :func:`release_large_blocks_promptly` fixes the mmap and trim
thresholds (large blocks are mapped and unmapped, never parked in the heap), and :class:`MemoryReleaser` calls
``malloc_trim(0)`` now and then, which returns the free pages of every arena.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from crossrank.model.heap import libc_function

log = logging.getLogger("crossrank.server")


M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3


def release_large_blocks_promptly(threshold: int = 2**20) -> bool:
    """Blocks of ``threshold`` bytes or more are mapped on their own and unmapped when freed, and the heap top is
    returned past ``threshold`` (as ``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_`` would, but settable after
    start). Process-wide, so only the ``serve`` command calls it. False where the C library is not glibc."""
    mallopt = libc_function("mallopt")
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, threshold)) and bool(mallopt(M_TRIM_THRESHOLD, threshold))


class MemoryReleaser:
    """Calls ``malloc_trim(0)`` every ``interval`` seconds in a daemon thread while ``busy()`` says work was done since
    the previous call. Does nothing where the C library has no ``malloc_trim``."""

    def __init__(self, interval: float, busy: Callable[[], bool]) -> None:
        self.interval = interval
        self.busy = busy
        self.trims = 0
        self._trim = libc_function("malloc_trim")
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
