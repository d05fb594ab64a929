"""Several devices of one host: one worker process per device, each a :class:`~crossrank.runtime.device.DeviceRuntime`.

Each child loads its own model replica and runs what it is sent (:mod:`crossrank.runtime.child_main`, kind
``device``), sharing no interpreter lock with the others or with this process, which keeps only the tokenizer. A
submission goes to the child :func:`pick_child` chooses among those with fewer than :data:`IN_FLIGHT` submissions
unanswered, and waits while every child is full. Each child packs what it gets exactly as one device would, so scores
are identical to one device's. Needs a POSIX system (children inherit their socket by file descriptor).
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path

from crossrank.core.errors import DeviceError
from crossrank.core.settings import ModelSettings
from crossrank.core.tokenize import EncodedPair
from crossrank.runtime.child import start_children

IN_FLIGHT = 3
"""Submissions handed to one child and not yet answered: one running, one launched behind it, one on its way, so a
child never waits for this process before it launches the next."""
START_TIMEOUT = 600.0
"""Seconds a child may take to load its model."""


def pick_child(in_flight: Sequence[int], queued_work: Sequence[int], limit: int) -> int | None:
    """The child to send the next submission to: of those with fewer than ``limit`` in flight, the one with the least
    work queued (so that a call's last, small slices go to whichever child will finish first), then the one with
    fewest in flight, then the first; None when every child is full.

    >>> pick_child([2, 2], [5000, 900], limit=3), pick_child([3, 2], [0, 9000], limit=3), pick_child([3, 3], [1, 1], 3)
    (1, 1, None)
    """
    room = [c for c, n in enumerate(in_flight) if n < limit]
    return min(room, key=lambda c: (queued_work[c], in_flight[c], c)) if room else None


class ProcessRuntime:
    """One worker process per device, started once and kept until :meth:`close`."""

    def __init__(self, path: Path, settings: ModelSettings, devices: Sequence[str]) -> None:
        if os.name != "posix":
            raise DeviceError("several devices need a POSIX system (Linux, macOS): use one device")
        specs = [{"path": str(path), "device": d,
                  "settings": dataclasses.asdict(dataclasses.replace(settings, device=d, devices=""))}
                 for d in devices]
        self._children, backends = start_children("device", specs, [f"worker process for {d}" for d in devices],
                                                   START_TIMEOUT)
        self._devices = list(devices)
        self._backend = backends[0]
        self._padded = self._backend == "padded"
        self._work = [0] * len(devices)  # tokens submitted to each child and not answered yet
        self._room = threading.Condition()

    @property
    def devices(self) -> list[str]:
        return list(self._devices)

    @property
    def padded(self) -> bool:
        return self._padded

    @property
    def backend_name(self) -> str:
        return self._backend

    @property
    def in_flight_limit(self) -> int:
        return IN_FLIGHT * len(self._devices)

    def submit(self, encoded: Sequence[EncodedPair], max_batch_tokens: int | None = None) -> Future[list[float]]:
        """Send ``encoded`` to the child with room and least work (waiting while all are full); see
        :meth:`crossrank.runtime.base.Runtime.submit`."""
        work = sum(len(e) for e in encoded)
        with self._room:
            while (child := pick_child([c.owed for c in self._children], self._work, IN_FLIGHT)) is None:
                self._room.wait()
            self._work[child] += work
            future = self._children[child].request((list(encoded), max_batch_tokens))

        def answered(_: Future[list[float]]) -> None:
            with self._room:
                self._work[child] -= work
                self._room.notify_all()

        future.add_done_callback(answered)
        return future

    def close(self) -> None:
        """Stop every child once it has answered what it was sent (idempotent)."""
        for child in self._children:
            child.close()
        self._children = []
