"""The async engine: same results as the library, batches shared across requests, bounded, cancellable, no FastAPI."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from crossrank.core.batching import encode_slices
from crossrank.engine import (
    BatchStats,
    Engine,
    EngineNotRunningError,
    InputTooLongError,
    QueueFullError,
    RequestTooLargeError,
)
from crossrank.runtime.device import DeviceRuntime
from crossrank.testing import generated_sentences

SRC = Path(__file__).resolve().parents[2] / "src"
PASSAGES = list(generated_sentences(40, seed=3))


def test_engine_does_not_import_fastapi() -> None:
    code = "import sys, crossrank.engine; assert 'fastapi' not in sys.modules and 'starlette' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, env={"PYTHONPATH": str(SRC)})


async def test_rerank_equals_library(tiny_reranker) -> None:  # type: ignore[no-untyped-def]
    engine = Engine(tiny_reranker)
    await engine.start()
    try:
        outcome = await engine.rerank("which city is the capital", PASSAGES, top_k=7)
    finally:
        await engine.stop()
    expected = tiny_reranker.rerank("which city is the capital", PASSAGES, top_k=7)
    assert [r.index for r in outcome.results] == [r.index for r in expected]
    assert [r.score for r in outcome.results] == pytest.approx([r.score for r in expected], abs=1e-6)
    encoded = tiny_reranker.encode([("which city is the capital", p) for p in PASSAGES])
    assert outcome.tokens == sum(len(e) for e in encoded)
    assert outcome.queue_seconds >= 0 and outcome.inference_seconds >= 0 and outcome.batches >= 1


async def test_chunked_long_passages_equal_library(tiny_reranker) -> None:  # type: ignore[no-untyped-def]
    long_text = " ".join(PASSAGES) * 3
    engine = Engine(tiny_reranker)
    await engine.start()
    try:
        outcome = await engine.rerank("query", [long_text, "short one"], long_passages="chunk")
    finally:
        await engine.stop()
    expected = tiny_reranker.rerank("query", [long_text, "short one"], long_passages="chunk")
    assert [(r.index, r.chunk) for r in outcome.results] == [(r.index, r.chunk) for r in expected]
    assert [r.raw_score for r in outcome.results] == pytest.approx([r.raw_score for r in expected], abs=1e-5)


async def test_concurrent_requests_share_batches_and_match_sequential(tiny_reranker) -> None:  # type: ignore[no-untyped-def]
    engine = Engine(tiny_reranker)
    seen: list[BatchStats] = []
    engine.add_batch_listener(seen.append)
    await engine.start(warm_up=False)
    queries = [f"query number {i} about search" for i in range(12)]
    try:
        outcomes = await asyncio.gather(*(engine.rerank(q, PASSAGES[i:] + PASSAGES[:i]) for i, q in enumerate(queries)))
    finally:
        await engine.stop()
    for i, (q, outcome) in enumerate(zip(queries, outcomes, strict=True)):
        expected = tiny_reranker.rerank(q, PASSAGES[i:] + PASSAGES[:i])
        assert [r.index for r in outcome.results] == [r.index for r in expected]
        assert [r.score for r in outcome.results] == pytest.approx([r.score for r in expected], abs=1e-6)
    assert max(s.requests for s in seen) > 1
    assert engine.stats().max_requests_in_batch > 1
    assert sum(s.pairs for s in seen) == 12 * len(PASSAGES)
    budget = engine.max_batch_tokens
    assert all(s.tokens <= budget or s.pairs == 1 for s in seen)


async def test_queue_full_and_request_too_large(tiny_reranker) -> None:  # type: ignore[no-untyped-def]
    engine = Engine(tiny_reranker, max_queued_pairs=50)
    await engine.start(warm_up=False)
    try:
        with pytest.raises(RequestTooLargeError):
            await engine.rerank("q", ["p"] * 51)
        first = asyncio.create_task(engine.rerank("q", ["p"] * 40))
        await asyncio.sleep(0)  # let the first request be admitted
        with pytest.raises(QueueFullError):
            await engine.rerank("q", ["p"] * 20)
        assert len((await first).results) == 40
        assert engine.queued_pairs == 0
        assert len((await engine.rerank("q", ["p"] * 20)).results) == 20  # room again once answered
    finally:
        await engine.stop()


class WatchedBackend:
    """A real backend that sets ``in_model`` when a batch reaches it."""

    name = "watched"

    def __init__(self, real, in_model: threading.Event) -> None:  # type: ignore[no-untyped-def]
        self.real, self.in_model = real, in_model
        self.device, self.dtype, self.padded = real.device, real.dtype, real.padded

    def forward(self, batch):  # type: ignore[no-untyped-def]
        self.in_model.set()
        return self.real.forward(batch)


async def test_a_long_request_reaches_the_model_while_the_rest_is_tokenised(tiny_reranker) -> None:  # type: ignore[no-untyped-def]
    real = tiny_reranker.runtime.backend
    in_model = threading.Event()
    slices: list[int] = []

    class SlowTokenizingReranker:
        settings, max_length = tiny_reranker.settings, tiny_reranker.max_length
        runtime = DeviceRuntime(WatchedBackend(real, in_model), tiny_reranker.settings.max_batch_tokens)

        tokenizer_thread = ThreadPoolExecutor(max_workers=1)

        @classmethod
        def encode_later(cls, pairs, long_passages=None):  # type: ignore[no-untyped-def]
            def encode():  # type: ignore[no-untyped-def]
                slices.append(len(pairs))
                if len(slices) == 2:  # the second slice is tokenised only once the first is in the model
                    assert in_model.wait(10), "the model saw nothing before the whole request was tokenised"
                return tiny_reranker.encode(pairs, long_passages)

            return cls.tokenizer_thread.submit(encode)

    passages = list(generated_sentences(100, seed=4))
    engine = Engine(SlowTokenizingReranker())  # type: ignore[arg-type]
    await engine.start(warm_up=False)
    try:
        outcome = await engine.rerank("which city is the capital", passages)
    finally:
        await engine.stop()
    SlowTokenizingReranker.runtime.close()
    SlowTokenizingReranker.tokenizer_thread.shutdown()
    assert slices == [end - start for start, end in encode_slices(len(passages))]
    expected = tiny_reranker.rerank("which city is the capital", passages)
    assert [r.index for r in outcome.results] == [r.index for r in expected]
    assert [r.score for r in outcome.results] == pytest.approx([r.score for r in expected], abs=1e-6)


async def test_a_request_that_finds_others_in_hand_is_tokenised_in_full_slices(tiny_reranker) -> None:  # type: ignore[no-untyped-def]
    gate = threading.Event()
    slices: list[tuple[str, int]] = []

    class GatedReranker:
        settings, max_length, runtime = tiny_reranker.settings, tiny_reranker.max_length, tiny_reranker.runtime

        @staticmethod
        def encode_later(pairs, long_passages=None):  # type: ignore[no-untyped-def]
            slices.append((pairs[0][0], len(pairs)))
            future: Future[list] = Future()  # type: ignore[type-arg]

            def encode() -> None:  # every slice is held until both requests have been admitted
                if gate.wait(10):
                    future.set_result(tiny_reranker.encode(pairs, long_passages))
                else:
                    future.set_exception(TimeoutError("the gate was never opened"))

            threading.Thread(target=encode, daemon=True).start()
            return future

    passages = list(generated_sentences(100, seed=4))
    engine = Engine(GatedReranker())  # type: ignore[arg-type]
    await engine.start(warm_up=False)
    try:
        first = asyncio.create_task(engine.rerank("first query", passages))
        await asyncio.sleep(0)
        second = asyncio.create_task(engine.rerank("second query", passages))
        await asyncio.sleep(0)
        gate.set()
        outcomes = await asyncio.gather(first, second)
    finally:
        await engine.stop()
    # Alone, the first request starts the device early with small slices; the second, which found it in hand, is
    # tokenised in one slice (at most ENCODE_SLICE pairs).
    assert [n for q, n in slices if q == "first query"] == [end - start for start, end in encode_slices(100)]
    assert [n for q, n in slices if q == "second query"] == [100]
    for query, outcome in zip(("first query", "second query"), outcomes, strict=True):
        expected = tiny_reranker.rerank(query, passages)
        assert [r.index for r in outcome.results] == [r.index for r in expected]
        assert [r.score for r in outcome.results] == pytest.approx([r.score for r in expected], abs=1e-6)


async def test_slices_reach_the_model_while_the_event_loop_is_busy(tiny_reranker) -> None:  # type: ignore[no-untyped-def]
    real = tiny_reranker.runtime.backend
    in_model = threading.Event()

    class Watched:
        settings, max_length = tiny_reranker.settings, tiny_reranker.max_length
        runtime = DeviceRuntime(WatchedBackend(real, in_model), tiny_reranker.settings.max_batch_tokens)
        encode_later = staticmethod(tiny_reranker.encode_later)

    engine = Engine(Watched())  # type: ignore[arg-type]
    await engine.start(warm_up=False)
    try:
        task = asyncio.create_task(engine.rerank("which city is the capital", PASSAGES))
        await asyncio.sleep(0)  # admitted, its slices handed to the tokenizer
        # This blocks the event loop: only the tokenizer's thread can queue the slices for the model now.
        assert in_model.wait(10), "the slices waited for the event loop"
        outcome = await task
    finally:
        await engine.stop()
        Watched.runtime.close()
    assert len(outcome.results) == len(PASSAGES)


async def test_a_tokenizer_failure_fails_its_request_only(tiny_reranker) -> None:  # type: ignore[no-untyped-def]
    class BreakingReranker:
        settings, max_length, runtime = tiny_reranker.settings, tiny_reranker.max_length, tiny_reranker.runtime

        @staticmethod
        def encode_later(pairs, long_passages=None):  # type: ignore[no-untyped-def]
            if any(p == "breaks the tokenizer" for _, p in pairs):
                broken: Future[list[object]] = Future()
                broken.set_exception(RuntimeError("the tokenizer failed"))
                return broken
            return tiny_reranker.encode_later(pairs, long_passages)

    engine = Engine(BreakingReranker())  # type: ignore[arg-type]
    await engine.start(warm_up=False)
    try:
        with pytest.raises(RuntimeError, match="the tokenizer failed"):
            await asyncio.wait_for(engine.rerank("q", ["fine"] * 30 + ["breaks the tokenizer"]), 10)
        assert engine.queued_pairs == 0
        assert len((await engine.rerank("q", ["still serving"])).results) == 1
    finally:
        await engine.stop()


class LaunchAheadRuntime:
    """A device's runtime as on a GPU: ``submit`` returns at once and the batch runs later, once ``gate`` is open;
    at most ``limit`` submissions in flight (``submit`` waits beyond). Records each submission's sequence lengths."""

    def __init__(self, inner: DeviceRuntime, gate: threading.Event, limit: int = 1, padded: bool = False) -> None:
        self.inner, self.gate, self.in_flight_limit, self.padded = inner, gate, limit, padded
        self.devices, self.backend_name = inner.devices, inner.backend_name
        self.submitted: list[list[int]] = []
        self._room = threading.Semaphore(limit)
        self._pool = ThreadPoolExecutor(max_workers=limit)

    def submit(self, encoded, max_batch_tokens=None):  # type: ignore[no-untyped-def]
        self._room.acquire()
        self.submitted.append([len(e) for e in encoded])

        def run():  # type: ignore[no-untyped-def]
            try:
                assert self.gate.wait(10), "the test never opened the gate"
                return self.inner.submit(encoded, max_batch_tokens).result()
            finally:
                self._room.release()

        return self._pool.submit(run)

    def close(self) -> None:
        self._pool.shutdown()


def launch_ahead_reranker(tiny_reranker, runtime: LaunchAheadRuntime):  # type: ignore[no-untyped-def]
    class Launching:
        settings, max_length = tiny_reranker.settings, tiny_reranker.max_length
        encode_later = staticmethod(tiny_reranker.encode_later)

    Launching.runtime = runtime  # type: ignore[attr-defined]
    return Launching()


async def test_requests_that_arrive_while_the_device_is_busy_share_its_next_batch(tiny_reranker) -> None:  # type: ignore[no-untyped-def]
    gate = threading.Event()
    runtime = LaunchAheadRuntime(tiny_reranker.runtime, gate)
    engine = Engine(launch_ahead_reranker(tiny_reranker, runtime), max_batch_tokens=4096)
    seen: list[BatchStats] = []
    engine.add_batch_listener(seen.append)
    await engine.start(warm_up=False)
    try:
        blocker = asyncio.create_task(engine.rerank("first", ["a"]))
        await asyncio.sleep(0.2)  # submitted: the runtime is full until the gate opens
        queries = [f"query {i}" for i in range(6)]
        waiting = [asyncio.create_task(engine.rerank(q, PASSAGES[:5])) for q in queries]
        await asyncio.sleep(0.3)  # tokenised one by one and queued behind the blocker
        gate.set()
        await blocker
        outcomes = await asyncio.gather(*waiting)
    finally:
        gate.set()
        await engine.stop()
        runtime.close()
    # Held back while the device was busy, all six went in its next batch (not the first one alone, frozen while
    # waiting for room, and the other five after it).
    assert [s.requests for s in seen] == [1, 6]
    for q, outcome in zip(queries, outcomes, strict=True):
        expected = tiny_reranker.rerank(q, PASSAGES[:5])
        assert [r.score for r in outcome.results] == pytest.approx([r.score for r in expected], abs=1e-6)


async def test_small_requests_wait_while_the_device_holds_a_batch_of_work(tiny_reranker) -> None:  # type: ignore[no-untyped-def]
    gate = threading.Event()
    runtime = LaunchAheadRuntime(tiny_reranker.runtime, gate, limit=3)  # room for two more submissions
    engine = Engine(launch_ahead_reranker(tiny_reranker, runtime), max_batch_tokens=64)
    seen: list[BatchStats] = []
    engine.add_batch_listener(seen.append)
    await engine.start(warm_up=False)
    try:
        blocker = asyncio.create_task(engine.rerank("first", [" ".join(PASSAGES[:3])]))  # one sequence over 64
        await asyncio.sleep(0.2)
        queries = [f"q{i}" for i in range(3)]  # 48 tokens: less than a batch
        waiting = [asyncio.create_task(engine.rerank(q, ["a", "b"])) for q in queries]
        await asyncio.sleep(0.3)
        assert len(runtime.submitted) == 1, "submitted while the device still held a whole batch of work"
        gate.set()
        await asyncio.gather(blocker, *waiting)
    finally:
        gate.set()
        await engine.stop()
        runtime.close()
    assert runtime.submitted[0][0] > 64
    assert [s.requests for s in seen] == [1, 3]


async def test_padded_batches_take_the_oldest_sequence_first(tiny_reranker) -> None:  # type: ignore[no-untyped-def]
    gate = threading.Event()
    runtime = LaunchAheadRuntime(tiny_reranker.runtime, gate, padded=True)
    engine = Engine(launch_ahead_reranker(tiny_reranker, runtime), max_batch_tokens=64, window_batches=8)
    await engine.start(warm_up=False)
    long_ones = [" ".join(PASSAGES[i : i + 2]) for i in range(6)]
    try:
        blocker = asyncio.create_task(engine.rerank("first", ["a"]))
        await asyncio.sleep(0.2)
        short = asyncio.create_task(engine.rerank("q", ["a", "b", "c"]))
        await asyncio.sleep(0.2)  # queued first
        long = asyncio.create_task(engine.rerank("q", long_ones))
        await asyncio.sleep(0.2)  # queued behind it, in the same window
        gate.set()
        await asyncio.gather(blocker, short, long)
    finally:
        gate.set()
        await engine.stop()
        runtime.close()
    short_lengths = sorted(len(e) for e in tiny_reranker.encode([("q", p) for p in ["a", "b", "c"]]))
    long_lengths = sorted(len(e) for e in tiny_reranker.encode([("q", p) for p in long_ones]))
    assert min(long_lengths) > max(short_lengths)
    # Sorted by length, the long sequences would fill the first batches; the batch of the oldest sequence goes first.
    assert sorted(runtime.submitted[1]) == short_lengths
    assert sorted(n for batch in runtime.submitted[2:] for n in batch) == long_lengths
    assert all(max(batch) * len(batch) <= 64 or len(batch) == 1 for batch in runtime.submitted)


async def test_cancelled_request_never_reaches_the_model(tiny_reranker) -> None:  # type: ignore[no-untyped-def]
    gate = threading.Event()
    real = tiny_reranker.runtime.backend
    original = real.forward
    forwarded: list[int] = []

    class GatedBackend:
        name, device, dtype, padded = "gated", real.device, real.dtype, True

        def forward(self, batch):  # type: ignore[no-untyped-def]
            gate.wait(10)
            forwarded.extend(id(p) for p in batch)
            return original(batch)

    class GatedReranker:
        settings, max_length = tiny_reranker.settings, tiny_reranker.max_length
        runtime = DeviceRuntime(GatedBackend(), 64)
        encode_later = staticmethod(tiny_reranker.encode_later)

    engine = Engine(GatedReranker(), max_batch_tokens=64, window_batches=1)  # type: ignore[arg-type]
    await engine.start(warm_up=False)
    try:
        blocker = asyncio.create_task(engine.rerank("first", ["a"]))
        await asyncio.sleep(0.2)  # the worker is now stuck in the blocker's forward
        doomed = asyncio.create_task(engine.rerank("second", PASSAGES))
        await asyncio.sleep(0.2)  # tokenised and queued behind the blocker
        doomed.cancel()
        with pytest.raises(asyncio.CancelledError):
            await doomed
        gate.set()
        await blocker
        after = await engine.rerank("third", ["b", "c"])
    finally:
        gate.set()
        await engine.stop()
    GatedReranker.runtime.close()
    assert len(after.results) == 2
    assert len(forwarded) == 3  # the blocker's pair and the third request's two; none of the cancelled forty


async def test_errors(tiny_reranker) -> None:  # type: ignore[no-untyped-def]
    engine = Engine(tiny_reranker)
    with pytest.raises(EngineNotRunningError):
        await engine.rerank("q", ["p"])
    await engine.start(warm_up=False)
    try:
        with pytest.raises(ValueError, match="empty"):
            await engine.rerank("  ", ["p"])
        with pytest.raises(ValueError, match="top_k"):
            await engine.rerank("q", ["p"], top_k=0)
        assert (await engine.rerank("q", [])).results == []
        long_text = " ".join(PASSAGES) * 3
        with pytest.raises(InputTooLongError, match="index 1"):
            await engine.rerank("q", ["short", long_text], truncate=False)
        ok = await engine.rerank("q", ["short", "also short"], truncate=False)
        assert sorted(r.index for r in ok.results) == [0, 1]
        late = ["short"] * 30 + [long_text]  # in the request's second slice: its index in the request is named
        with pytest.raises(InputTooLongError, match="first: index 30"):
            await engine.rerank("q", late, truncate=False)
        assert engine.queued_pairs == 0
        assert len((await engine.rerank("q", ["still serving"])).results) == 1
    finally:
        await engine.stop()
    with pytest.raises(EngineNotRunningError):
        await engine.rerank("q", ["p"])


async def test_stop_finishes_admitted_work(tiny_reranker) -> None:  # type: ignore[no-untyped-def]
    engine = Engine(tiny_reranker)
    await engine.start(warm_up=False)
    tasks = [asyncio.create_task(engine.rerank(f"q{i}", PASSAGES)) for i in range(4)]
    await asyncio.sleep(0)
    await engine.stop()
    assert all(len(t.result().results) == len(PASSAGES) for t in tasks)
