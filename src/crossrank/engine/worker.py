"""The worker's side of :class:`~crossrank.engine.Engine`: a scheduler thread takes one batch of queued sequences when
the device should get more work (:func:`ready_to_take`), submits it to the runtime and delivers the logits as they come
back.

Work waits on the engine's queue, not on the device's, while the device has a batch's worth of tokens in hand: what
arrives meanwhile joins the next batch, so under load batches fill up instead of each request's first small slice
going alone, and a lone request still reaches an idle device at once. A packed backend's batch is the queue's first
``max_batch_tokens`` tokens. A padded backend's is packed from a window of several budgets sorted by length (less
padding): the batch that holds the oldest sequence goes, the rest go back to the front of the queue in their order, so
no sequence is passed over for ever.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING

from crossrank.core.batching import pack_batches
from crossrank.engine.inflight import _call_in_loop, _Item, _Request, _set_exception, _set_result
from crossrank.engine.reports import BatchStats

if TYPE_CHECKING:
    from crossrank.runtime.base import Runtime

log = logging.getLogger("crossrank.engine")


def ready_to_take(queued_tokens: int, in_flight: int, in_flight_tokens: int, *, limit: int, budget: int,
                  devices: int = 1) -> bool:
    """Whether to take a batch from the queue now: something is queued, the runtime has room (fewer than ``limit``
    submissions in flight), and either a full batch (``budget`` tokens) is queued or the devices hold less than a
    batch's worth of tokens each, so one would soon run dry.

    >>> ready_to_take(2_000, 1, 40_000, limit=3, budget=32_768)  # busy: let what arrives gather
    False
    >>> ready_to_take(2_000, 1, 9_000, limit=3, budget=32_768)   # running low: feed it
    True
    >>> ready_to_take(40_000, 2, 60_000, limit=3, budget=32_768)  # a full batch waits
    True
    >>> ready_to_take(40_000, 3, 60_000, limit=3, budget=32_768)  # the runtime is full
    False
    >>> ready_to_take(2_000, 1, 40_000, limit=6, budget=32_768, devices=2)  # one of two devices has nothing
    True
    """
    if queued_tokens <= 0 or in_flight >= limit:
        return False
    return queued_tokens >= budget or in_flight_tokens < budget * devices


class BatchWorker:
    """The scheduler thread's methods, mixed into the engine (whose state the annotations name)."""

    runtime: Runtime
    max_batch_tokens: int
    window_tokens: int
    _queue: deque[_Item]
    _cond: threading.Condition
    _running: bool
    _queued_tokens: int  # tokens of the sequences on ``_queue``; under ``_cond``
    _in_flight: int  # batches submitted and not yet answered; under ``_cond``
    _in_flight_tokens: int  # their tokens; under ``_cond``
    _listeners: list[Callable[[BatchStats], None]]
    _deliver_lock: threading.Lock
    _stats_lock: threading.Lock
    _batches: int
    _pairs: int
    _tokens: int
    _max_requests_in_batch: int

    def _take_batch(self) -> list[_Item] | None:
        """Block until :func:`ready_to_take`; take one batch of queued sequences (None: stopped)."""
        with self._cond:
            while True:
                while not ready_to_take(self._queued_tokens, self._in_flight, self._in_flight_tokens,
                                        limit=self.runtime.in_flight_limit, budget=self.max_batch_tokens,
                                        devices=len(self.runtime.devices)):
                    if not self._running and not self._queue:
                        return None
                    self._cond.wait()
                window = self._pop_window()
                if not window:
                    continue
                batches = pack_batches([len(it.sequence) for it in window], self.max_batch_tokens,
                                       padded=self.runtime.padded)
                chosen = set(next(b for b in batches if 0 in b))
                back = [it for i, it in enumerate(window) if i not in chosen]
                self._queue.extendleft(reversed(back))
                self._queued_tokens += sum(len(it.sequence) for it in back)
                batch = [window[i] for i in sorted(chosen)]
                self._in_flight += 1
                self._in_flight_tokens += sum(len(it.sequence) for it in batch)
                return batch

    def _pop_window(self) -> list[_Item]:
        """Pop the queue's first ``window_tokens`` of sequences (under ``_cond``), dropping those of requests that are
        gone."""
        window: list[_Item] = []
        tokens = 0
        while self._queue and (not window or tokens + len(self._queue[0].sequence) <= self.window_tokens):
            item = self._queue.popleft()
            self._queued_tokens -= len(item.sequence)
            if not (item.request.cancelled or item.request.failed):
                window.append(item)
                tokens += len(item.sequence)
        return window

    def _work(self) -> None:
        while (batch := self._take_batch()) is not None:
            self._submit(batch)

    def _submit(self, items: list[_Item]) -> None:
        """Hand one batch to the runtime (which has room for it); its logits are delivered when they come back."""
        requests = list(dict.fromkeys(it.request for it in items))
        started = time.perf_counter()
        with self._deliver_lock:
            for r in requests:
                if r.first_batch_at is None:
                    r.first_batch_at = started
        try:
            future = self.runtime.submit([it.sequence for it in items], self.max_batch_tokens)
        except Exception as exc:  # the runtime is closed or broken: fail this batch's requests, keep serving
            future = Future()
            future.set_exception(exc)
        future.add_done_callback(lambda done: self._deliver(items, requests, started, done))

    def _deliver(self, items: list[_Item], requests: list[_Request], started: float,
                 future: Future[list[float]]) -> None:
        with self._cond:
            self._in_flight -= 1
            self._in_flight_tokens -= sum(len(it.sequence) for it in items)
            self._cond.notify()
        exc = future.exception()
        if exc is not None:  # one bad batch fails only the requests it holds
            log.error("a batch of %d sequences failed", len(items), exc_info=exc)
            with self._deliver_lock:
                for r in requests:
                    r.failed = True
                    _call_in_loop(r.loop, _set_exception, r.future, exc)
            return
        logits = future.result()
        ended = time.perf_counter()
        lengths = [len(it.sequence) for it in items]
        stats = BatchStats(len(items), max(lengths) * len(lengths) if self.runtime.padded else sum(lengths),
                           len(requests), ended - started)
        self._record(stats)  # counted before any caller has its answer
        with self._deliver_lock:
            for r in requests:
                r.last_batch_end = max(ended, r.last_batch_end or ended)
                r.batches += 1
            for item, value in zip(items, logits, strict=True):
                r = item.request
                r.logits[item.position] = value
                r.remaining -= 1
                if r.remaining == 0 and r.slices_left == 0:
                    _call_in_loop(r.loop, _set_result, r.future, [float(v) for v in r.logits if v is not None])

    def _record(self, stats: BatchStats) -> None:
        with self._stats_lock:
            self._batches += 1
            self._pairs += stats.pairs
            self._tokens += stats.tokens
            self._max_requests_in_batch = max(self._max_requests_in_batch, stats.requests)
        for listener in self._listeners:
            try:
                listener(stats)
            except Exception:  # metrics must never take the model down
                log.exception("a batch listener failed")
