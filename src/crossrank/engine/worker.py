"""The worker's side of :class:`~crossrank.engine.Engine`: a scheduler thread takes windows of queued sequences, packs
them into batches under the token budget, submits each to the runtime and delivers the logits as they come back."""

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


class BatchWorker:
    """The scheduler thread's methods, mixed into the engine (whose state the annotations name)."""

    runtime: Runtime
    max_batch_tokens: int
    window_tokens: int
    _queue: deque[_Item]
    _cond: threading.Condition
    _running: bool
    _listeners: list[Callable[[BatchStats], None]]
    _deliver_lock: threading.Lock
    _stats_lock: threading.Lock
    _batches: int
    _pairs: int
    _tokens: int
    _max_requests_in_batch: int

    def _take_window(self) -> list[_Item] | None:
        """Block until sequences are queued; take them first come first served up to the window's token count."""
        with self._cond:
            while not self._queue:
                if not self._running:
                    return None
                self._cond.wait()
            window: list[_Item] = []
            tokens = 0
            while self._queue and (not window or tokens + len(self._queue[0].sequence) <= self.window_tokens):
                item = self._queue.popleft()
                if item.request.cancelled or item.request.failed:
                    continue
                window.append(item)
                tokens += len(item.sequence)
            return window

    def _work(self) -> None:
        while (window := self._take_window()) is not None:
            lengths = [len(it.sequence) for it in window]
            for batch in pack_batches(lengths, self.max_batch_tokens, padded=self.runtime.padded):
                # Checked again per batch: a caller may have left while earlier batches were submitted.
                items = [window[i] for i in batch if not (window[i].request.cancelled or window[i].request.failed)]
                if items:
                    self._submit(items)

    def _submit(self, items: list[_Item]) -> None:
        """Hand one batch to the runtime (waiting while it has enough in flight, so sequences keep queueing on our
        side and later batches still mix requests); its logits are delivered when they come back."""
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
                if r.remaining == 0 and r.sealed:
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
