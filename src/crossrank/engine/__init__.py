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

The package: :mod:`.engine` (the :class:`Engine`: lifecycle, health, the caller's side), :mod:`.worker` (the
scheduler thread's side), :mod:`.admission` (admission by time and the throughput estimate), :mod:`.inflight` (a
request between the two sides), :mod:`.reports` (outcomes, stats, health) and :mod:`.errors`.
"""

from __future__ import annotations

from crossrank.engine.engine import Engine
from crossrank.engine.errors import (
    EngineNotRunningError,
    InputTooLongError,
    QueueFullError,
    QueueTimeoutError,
    RequestTooLargeError,
)
from crossrank.engine.reports import BatchStats, EngineHealth, EngineStats, RerankOutcome

__all__ = [
    "BatchStats",
    "Engine",
    "EngineHealth",
    "EngineNotRunningError",
    "EngineStats",
    "InputTooLongError",
    "QueueFullError",
    "QueueTimeoutError",
    "RequestTooLargeError",
    "RerankOutcome",
]
