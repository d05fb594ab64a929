"""Admission by time, the caller's side of :class:`~crossrank.engine.Engine`: the recent throughput, measured from
the batches as they finish, turns the queue into seconds of work; a request is refused when the queue ahead of it holds
more than ``max_queue_seconds``, or dropped when none of its batches started within that bound."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from crossrank.engine.errors import QueueTimeoutError
from crossrank.engine.inflight import _Request
from crossrank.engine.reports import BatchStats


class TimeAdmission:
    """The throughput estimate and the time bound, mixed into the engine (whose state the annotations name)."""

    _listeners: list[Callable[[BatchStats], None]]
    _admitted: int
    _deliver_lock: threading.Lock

    def _init_admission(self, max_queue_seconds: float | None) -> None:
        self.max_queue_seconds = max_queue_seconds
        self._last_progress: float | None = None  # monotonic time of the last finished forward pass
        self._busy_since: float | None = None  # when the queue last went from empty to non-empty
        self._pairs_per_second: float | None = None
        self._listeners.append(self._observe_progress)

    def _observe_progress(self, stats: BatchStats) -> None:
        # Runs on the runtime's threads; single float assignments, read by the event loop without a lock. Batches
        # overlap (launched ahead, on one device or several), so while work flows the rate is the pairs over the time
        # since the previous batch ended; after an idle spell, over the batch's own time.
        now = time.monotonic()
        last, self._last_progress = self._last_progress, now
        seconds = now - last if last is not None and now - last < stats.seconds else stats.seconds
        if seconds > 0:
            rate = stats.pairs / seconds
            previous = self._pairs_per_second
            self._pairs_per_second = rate if previous is None else 0.8 * previous + 0.2 * rate

    def estimated_wait(self, extra_pairs: int = 0) -> float | None:
        """Seconds until ``extra_pairs`` more would start, at the recent throughput; ``None`` before any batch."""
        rate = self._pairs_per_second
        return None if not rate else (self._admitted + extra_pairs) / rate

    def _admit_by_time(self) -> None:
        bound = self.max_queue_seconds
        wait = self.estimated_wait()
        if bound is not None and wait is not None and wait > bound:
            raise QueueTimeoutError(f"the queue holds about {wait:.0f} s of work, over max_queue_seconds={bound:g}",
                                    retry_after=wait - bound)

    async def _await_start(self, request: _Request) -> list[float]:
        """The request's logits; :class:`QueueTimeoutError` if no batch of it started within ``max_queue_seconds``
        (its sequences are then dropped before they reach the model)."""
        bound = self.max_queue_seconds
        if bound is not None:
            done, _ = await asyncio.wait({request.future}, timeout=bound)
            if not done:
                with self._deliver_lock:
                    not_started = request.first_batch_at is None
                    if not_started:
                        request.cancelled = True
                if not_started:
                    raise QueueTimeoutError(f"the request did not start within max_queue_seconds={bound:g}",
                                            retry_after=bound)
        return await request.future
