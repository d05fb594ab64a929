"""The :class:`Engine`: its lifecycle, health and the caller's side; the worker's side is :mod:`.worker`'s,
admission by time :mod:`.admission`'s."""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import replace
from typing import TYPE_CHECKING

from crossrank.core.batching import ENCODE_SLICE, encode_slices
from crossrank.core.inputs import check_passages, check_query, check_top_k
from crossrank.core.ranking import aggregate_chunks, rank
from crossrank.core.tokenize import EncodedPair
from crossrank.engine.admission import TimeAdmission
from crossrank.engine.errors import EngineNotRunningError, InputTooLongError, QueueFullError, RequestTooLargeError
from crossrank.engine.inflight import _call_in_loop, _Item, _Request, _set_exception
from crossrank.engine.reports import BatchStats, EngineHealth, EngineStats, RerankOutcome
from crossrank.engine.worker import BatchWorker

if TYPE_CHECKING:
    from crossrank.reranker import Reranker

log = logging.getLogger("crossrank.engine")


class Engine(TimeAdmission, BatchWorker):
    """Async reranking over one :class:`crossrank.Reranker`, batching pairs across concurrent callers.

    >>> engine = Engine(Reranker("BAAI/bge-reranker-v2-m3"))              # doctest: +SKIP
    >>> await engine.start()                                               # doctest: +SKIP
    >>> outcome = await engine.rerank("capital of France?", ["Paris.", "Lyon."], top_k=1)  # doctest: +SKIP
    >>> await engine.stop()                                                # doctest: +SKIP

    ``max_queued_pairs`` bounds the pairs admitted and not yet answered; beyond it :class:`QueueFullError` is raised at
    once. ``window_batches``: with a padded backend, how many token budgets of queued sequences a batch is packed from
    (sorted by length, so less padding); a packed backend's batch is simply the queue's first budget of tokens.
    """

    def __init__(
        self,
        reranker: Reranker,
        *,
        max_queued_pairs: int = 100_000,
        max_batch_tokens: int | None = None,
        window_batches: int = 4,
        max_queue_seconds: float | None = None,
    ) -> None:
        if max_queued_pairs < 1:
            raise ValueError("max_queued_pairs must be at least 1")
        if max_queue_seconds is not None and max_queue_seconds <= 0:
            raise ValueError("max_queue_seconds must be positive (or None for no time bound)")
        self.reranker = reranker
        self.runtime = reranker.runtime
        self.max_queued_pairs = max_queued_pairs
        self.max_batch_tokens = max_batch_tokens or reranker.settings.max_batch_tokens
        self.window_tokens = self.max_batch_tokens * (max(1, window_batches) if self.runtime.padded else 1)
        self._queue: deque[_Item] = deque()
        self._cond = threading.Condition()
        self._admitted = 0  # pairs admitted and not yet answered; event-loop side only
        self._running = False
        self._stopping = False
        self._queued_tokens = 0
        self._in_flight = 0
        self._in_flight_tokens = 0
        self._worker: threading.Thread | None = None
        self._listeners: list[Callable[[BatchStats], None]] = []
        self._stats_lock = threading.Lock()
        # Batches finish on the runtime's threads, with several devices on several at once.
        self._deliver_lock = threading.Lock()
        self._batches = 0
        self._pairs = 0
        self._tokens = 0
        self._max_requests_in_batch = 0
        self._init_admission(max_queue_seconds)

    # ---- lifecycle -------------------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._running and not self._stopping

    async def start(self, warm_up: bool = True) -> None:
        """Start the worker thread (idempotent), then score one pair so the first caller waits less."""
        if self._running:
            return
        self._stopping = False
        self._worker = threading.Thread(target=self._work, name="crossrank-model", daemon=True)
        self._running = True
        self._worker.start()
        if warm_up:
            await self.rerank("warm up", ["warm up the model once before serving"])

    async def stop(self) -> None:
        """Refuse new work, let every admitted request finish, then stop the threads."""
        if not self._running:
            return
        self._stopping = True
        while self._admitted:
            await asyncio.sleep(0.01)
        with self._cond:
            self._running = False
            self._cond.notify_all()
        if self._worker is not None:
            await asyncio.to_thread(self._worker.join)
        self._worker = None

    def add_batch_listener(self, listener: Callable[[BatchStats], None]) -> None:
        """Call ``listener(stats)`` from the worker thread after every forward pass (keep it cheap and thread-safe)."""
        self._listeners.append(listener)

    def remove_batch_listener(self, listener: Callable[[BatchStats], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    async def health_check(self, timeout: float = 10.0) -> bool:
        """Score one pair through the queue (not counted against ``max_queued_pairs``); True when it came back."""
        if not self.running:
            return False
        try:
            outcome = await asyncio.wait_for(
                self._rerank_admitted("health check", ["is the model answering"], None, None, True), timeout
            )
        except Exception:
            log.exception("health check failed")
            return False
        return len(outcome.results) == 1

    def health(self, stall_seconds: float = 120.0) -> EngineHealth:
        """Readiness from state alone: running, the model thread alive, and not stalled (pairs waiting while no
        forward pass has finished for ``stall_seconds``). A long queue that is moving is healthy."""
        now = time.monotonic()
        last = self._last_progress
        since = None if last is None else now - last
        waiting_since = max(t for t in (last, self._busy_since) if t is not None) if self._admitted else None
        return EngineHealth(
            running=self.running, worker_alive=self._worker is not None and self._worker.is_alive(),
            queued_pairs=self._admitted, seconds_since_progress=since, pairs_per_second=self._pairs_per_second,
            stalled=waiting_since is not None and now - waiting_since > stall_seconds,
        )

    # ---- the caller's side -----------------------------------------------------------------------------------------

    @property
    def queued_pairs(self) -> int:
        """Pairs admitted and not yet answered (tokenising, queued or in the model)."""
        return self._admitted

    def stats(self) -> EngineStats:
        with self._stats_lock:
            return EngineStats(self._batches, self._pairs, self._tokens, self._max_requests_in_batch, self._admitted)

    async def rerank(
        self,
        query: str,
        texts: Sequence[str],
        top_k: int | None = None,
        *,
        long_passages: str | None = None,
        truncate: bool = True,
    ) -> RerankOutcome:
        """Rank ``texts`` against ``query`` best first, as :meth:`crossrank.Reranker.rerank` does.

        ``truncate=False`` raises :class:`InputTooLongError` instead of cutting a passage that does not fit.
        Raises :class:`QueueFullError` when the engine is full and :class:`EngineNotRunningError` when stopped.
        """
        check_query(query)
        passages = check_passages(texts)
        check_top_k(top_k)
        if not self.running:
            raise EngineNotRunningError("the engine is not running (not started yet, or shutting down)")
        n = len(passages)
        if n > self.max_queued_pairs:
            raise RequestTooLargeError(f"{n} passages is more than this engine can queue ({self.max_queued_pairs})")
        if self._admitted + n > self.max_queued_pairs:
            raise QueueFullError(f"{self._admitted} pairs are queued already (limit {self.max_queued_pairs})")
        if n == 0:
            return RerankOutcome([], 0, 0.0, 0.0, 0.0, 0)
        self._admit_by_time()
        alone = not self._admitted
        if alone:
            self._busy_since = time.monotonic()
        self._admitted += n
        try:
            return await self._rerank_admitted(query, passages, top_k, long_passages, truncate, alone)
        finally:
            self._admitted -= n

    async def _rerank_admitted(self, query: str, passages: list[str], top_k: int | None, long_passages: str | None,
                               truncate: bool, alone: bool = True) -> RerankOutcome:
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        pairs = [(query, p) for p in passages]
        # Small first slices start an idle device early; a request that finds others in hand gives the device no
        # such head start, and each slice costs a tokenizer call of its own: it is tokenised in full slices.
        bounds = encode_slices(len(pairs)) if alone else encode_slices(len(pairs), first=ENCODE_SLICE)
        request = _Request(loop, loop.create_future(), slices_left=len(bounds))
        # Every slice goes to the reranker's tokenizers at once; each is queued for the model by the tokenizer's own
        # thread as soon as it is ready (no trip through this event loop in between). ``truncate=False``: chunking's
        # first window is exactly what truncation keeps, so a passage that fits is one chunk, and a second chunk means
        # it does not fit.
        tokenising = [self.reranker.encode_later(pairs[start:end], long_passages if truncate else "chunk")
                      for start, end in bounds]
        for (start, _), slice_ in zip(bounds, tokenising, strict=True):
            slice_.add_done_callback(functools.partial(self._tokenised, request, start, truncate))
        try:
            logits = await self._await_start(request)
        except BaseException:  # cancelled, or a passage too long: the worker drops what has not reached the model
            request.cancelled = True
            for slice_ in tokenising:
                slice_.cancel()
            raise
        encoded = request.encoded  # in the order the slices were tokenised
        raw, chunks = aggregate_chunks([e.pair for e in encoded], [e.chunk for e in encoded], logits, len(pairs))
        results = rank(raw, passages, chunks, top_k)
        first = request.first_batch_at or request.enqueued_at
        last = request.last_batch_end or first
        return RerankOutcome(
            results=results,
            tokens=sum(len(e) for e in encoded),
            queue_seconds=first - request.enqueued_at,
            inference_seconds=last - first,
            total_seconds=time.perf_counter() - started,
            batches=request.batches,
        )

    def _tokenised(self, request: _Request, offset: int, truncate: bool, slice_: Future[list[EncodedPair]]) -> None:
        """A slice of ``request`` tokenised (called on the tokenizer's thread): queue it for the model, or fail the
        request with the error (nothing raised here would reach the caller, who would wait for ever)."""
        if request.cancelled or request.failed:
            return
        try:
            self._enqueue(request, _numbered(slice_.result(), offset, truncate, self.reranker.max_length))
        except BaseException as exc:  # a passage too long, a tokenizer failure, or the slice cancelled
            with self._deliver_lock:
                request.failed = True
            _call_in_loop(request.loop, _set_exception, request.future, exc)

    def _enqueue(self, request: _Request, encoded: list[EncodedPair]) -> None:
        """Queue one slice's sequences for the worker."""
        with self._cond:
            with self._deliver_lock:
                if not request.encoded:
                    request.enqueued_at = time.perf_counter()
                first = len(request.encoded)
                request.encoded.extend(encoded)
                request.logits.extend([None] * len(encoded))
                request.remaining += len(encoded)
                request.slices_left -= 1
            self._queue.extend(_Item(request, first + i) for i in range(len(encoded)))
            self._queued_tokens += sum(len(e) for e in encoded)
            self._cond.notify()


def _numbered(encoded: list[EncodedPair], offset: int, truncate: bool, max_length: int) -> list[EncodedPair]:
    """The sequences of the slice that starts at pair ``offset`` of a request, numbered in it; with ``truncate``
    off (the slice was chunked), :class:`InputTooLongError` for a pair that needed more than one chunk."""
    if not truncate:
        too_long = sorted({e.pair for e in encoded if e.chunk > 0})
        if too_long:
            raise InputTooLongError(
                f"{len(too_long)} passage(s) (first: index {offset + too_long[0]}) do not fit in max_length="
                f"{max_length} tokens beside the query, and truncation was turned off"
            )
    return [replace(e, pair=e.pair + offset) for e in encoded] if offset else encoded
