"""Giving freed memory back to the OS: glibc's thresholds are settable, and the releaser trims only after work."""

from __future__ import annotations

import time

from crossrank.server.memory import MemoryReleaser, release_large_blocks_promptly


def test_thresholds_are_set_on_glibc() -> None:
    assert release_large_blocks_promptly() is True  # the test machines run glibc


def test_the_releaser_trims_only_while_busy() -> None:
    work = iter([True, False, False, True] + [False] * 1000)
    releaser = MemoryReleaser(0.01, lambda: next(work))
    assert releaser.available
    releaser.start()
    try:
        deadline = time.monotonic() + 5
        while releaser.trims < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
    finally:
        releaser.stop()
    assert releaser.trims == 2


def test_an_interval_of_zero_starts_nothing() -> None:
    releaser = MemoryReleaser(0, lambda: True)
    releaser.start()
    assert releaser._thread is None
    releaser.stop()
