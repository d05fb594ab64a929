"""The asynchronous engine under the HTTP service (and Ray Serve): many callers, one model.

Pairs, not requests, are the unit of work. ``await engine.rerank(query, texts)`` tokenises its pairs on a tokeniser
thread (off the event loop), in the library's growing slices (:func:`crossrank.core.batching.encode_slices`), and puts
each slice's encoded sequences in one shared queue as soon as it is ready, so the model starts on a long request while
the rest of it is still being tokenised. A scheduler thread takes a window of queued sequences, packs them under the
token budget with :func:`crossrank.core.batching.pack_batches` (so sequences of concurrent requests share batches) and
submits each batch to the reranker's runtime (:mod:`crossrank.runtime`), which launches it while the ones before it
run, on one device or several; as each batch's logits come back they go to the requests they belong to. A request
whose caller went away (its task was cancelled) is skipped before its sequences reach the model. Ranking itself is
:mod:`crossrank.core.ranking`'s, exactly as in :class:`crossrank.Reranker`.

Nothing here knows about HTTP: errors are plain exceptions the server maps to status codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from crossrank.core.batching import encode_slices, pack_batches
from crossrank.core.errors import CrossrankError
from crossrank.core.inputs import check_passages, check_query, check_top_k
from crossrank.core.ranking import RerankResult, aggregate_chunks, rank
from crossrank.core.tokenize import EncodedPair

if TYPE_CHECKING:
    from crossrank.reranker import Reranker

log = logging.getLogger(__name__)


class QueueFullError(CrossrankError):
    """The engine holds ``max_queued_pairs`` pairs already; try again shortly."""


class RequestTooLargeError(CrossrankError, ValueError):
    """One request has more pairs than the engine's queue can ever hold."""


class InputTooLongError(CrossrankError, ValueError):
    """A passage does not fit in ``max_length`` and the caller asked for no truncation."""


class EngineNotRunningError(CrossrankError, RuntimeError):
    """The engine has not been started, or is stopping."""


class QueueTimeoutError(CrossrankError):
    """A request could not start within ``max_queue_seconds``; ``retry_after`` is a hint in seconds."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class EngineHealth:
    """The engine's state, read without any model work (for readiness probes)."""

    running: bool
    worker_alive: bool
    queued_pairs: int
    seconds_since_progress: float | None  # since the last forward pass finished; None before the first
    pairs_per_second: float | None  # recent throughput of the model, None before the first batch
    stalled: bool  # work has waited longer than the stall bound with no forward pass finishing

    @property
    def ok(self) -> bool:
        return self.running and self.worker_alive and not self.stalled


@dataclass(frozen=True)
class BatchStats:
    """What one forward pass held: sequences, tokens (padded cost for padded backends), distinct requests, seconds."""

    pairs: int
    tokens: int
    requests: int
    seconds: float


@dataclass(frozen=True)
class RerankOutcome:
    """Ranked results of one request, its real token count and where its time went (seconds)."""

    results: list[RerankResult]
    tokens: int
    queue_seconds: float
    inference_seconds: float
    total_seconds: float
    batches: int


@dataclass(frozen=True)
class EngineStats:
    """Running totals since start, for metrics and tests."""

    batches: int
    pairs: int
    tokens: int
    max_requests_in_batch: int
    queued_pairs: int


@dataclass(eq=False)
class _Request:
    """One caller's sequences in flight, queued slice by slice; ``encoded``, ``logits``, ``remaining`` and ``sealed``
    change under the engine's deliver lock only."""

    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[list[float]]
    enqueued_at: float = 0.0
    encoded: list[EncodedPair] = field(default_factory=list)
    logits: list[float | None] = field(default_factory=list)
    remaining: int = 0  # sequences queued and not answered yet
    sealed: bool = False  # every slice is queued: the answer goes out when ``remaining`` reaches 0
    cancelled: bool = False
    failed: bool = False
    first_batch_at: float | None = None
    last_batch_end: float | None = None
    batches: int = 0


@dataclass(frozen=True)
class _Item:
    request: _Request
    position: int

    @property
    def sequence(self) -> EncodedPair:
        return self.request.encoded[self.position]


def _set_result(future: asyncio.Future[list[float]], value: list[float]) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future[list[float]], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


def _call_in_loop(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: object) -> None:
    # A closed loop means the caller is gone: nobody is waiting for this answer any more.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(fn, *args)


class Engine:
    """Async reranking over one :class:`crossrank.Reranker`, batching pairs across concurrent callers.

    >>> engine = Engine(Reranker("BAAI/bge-reranker-v2-m3"))              # doctest: +SKIP
    >>> await engine.start()                                               # doctest: +SKIP
    >>> outcome = await engine.rerank("capital of France?", ["Paris.", "Lyon."], top_k=1)  # doctest: +SKIP
    >>> await engine.stop()                                                # doctest: +SKIP

    ``max_queued_pairs`` bounds the pairs admitted and not yet answered; beyond it :class:`QueueFullError` is raised at
    once. ``window_batches`` is how many token budgets of queued sequences the worker packs together at a time.
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
        self.window_tokens = self.max_batch_tokens * max(1, window_batches)
        self._queue: deque[_Item] = deque()
        self._cond = threading.Condition()
        self._admitted = 0  # pairs admitted and not yet answered; event-loop side only
        self._running = False
        self._stopping = False
        self._worker: threading.Thread | None = None
        self._tokenizer_pool: ThreadPoolExecutor | None = None
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
        """Start the worker and tokeniser threads (idempotent), then score one pair so the first caller waits less."""
        if self._running:
            return
        self._stopping = False
        # One tokeniser thread: a fast tokenizer's truncation settings are not safe to share between threads.
        self._tokenizer_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="crossrank-tokenize")
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
        if self._tokenizer_pool is not None:
            self._tokenizer_pool.shutdown(wait=True)
        self._worker = self._tokenizer_pool = None

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

    # ---- admission by time (the caller's side) ---------------------------------------------------------------------

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
        if not self._admitted:
            self._busy_since = time.monotonic()
        self._admitted += n
        try:
            return await self._rerank_admitted(query, passages, top_k, long_passages, truncate)
        finally:
            self._admitted -= n

    async def _rerank_admitted(self, query: str, passages: list[str], top_k: int | None, long_passages: str | None,
                               truncate: bool) -> RerankOutcome:
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        pairs = [(query, p) for p in passages]
        assert self._tokenizer_pool is not None
        request = _Request(loop, loop.create_future())
        try:
            for start, end in encode_slices(len(pairs)):
                encoded = await loop.run_in_executor(self._tokenizer_pool, self._encode, pairs[start:end],
                                                     long_passages, truncate, start)
                self._enqueue(request, encoded, last=end == len(pairs))
            logits = await self._await_start(request)
        except BaseException:  # cancelled, or a passage too long: the worker drops what has not reached the model
            request.cancelled = True
            raise
        encoded = request.encoded
        if len(encoded) == len(pairs):
            raw, chunks = logits, [0] * len(pairs)
        else:
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

    def _encode(self, pairs: list[tuple[str, str]], long_passages: str | None, truncate: bool,
                offset: int) -> list[EncodedPair]:
        """The sequences of the slice of pairs that starts at pair ``offset`` of the request, numbered in it."""
        if truncate:
            encoded = self.reranker.encode(pairs, long_passages)
        else:
            # Chunking's first window is exactly what truncation keeps, so a passage that fits gives one chunk.
            encoded = self.reranker.encode(pairs, "chunk")
            too_long = sorted({e.pair for e in encoded if e.chunk > 0})
            if too_long:
                raise InputTooLongError(
                    f"{len(too_long)} passage(s) (first: index {offset + too_long[0]}) do not fit in max_length="
                    f"{self.reranker.max_length} tokens beside the query, and truncation was turned off"
                )
        return [replace(e, pair=e.pair + offset) for e in encoded] if offset else encoded

    def _enqueue(self, request: _Request, encoded: list[EncodedPair], last: bool) -> None:
        """Queue one slice's sequences for the worker; ``last``: the request has no more."""
        with self._cond:
            with self._deliver_lock:
                if not request.encoded:
                    request.enqueued_at = time.perf_counter()
                first = len(request.encoded)
                request.encoded.extend(encoded)
                request.logits.extend([None] * len(encoded))
                request.remaining += len(encoded)
                request.sealed = last
            self._queue.extend(_Item(request, first + i) for i in range(len(encoded)))
            self._cond.notify()

    # ---- the worker's side -----------------------------------------------------------------------------------------

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
