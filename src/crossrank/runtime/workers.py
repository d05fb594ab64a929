"""Several devices of one host: one long-lived worker thread per model replica, batches go to whichever is free.

A :class:`WorkerPool` holds one :class:`~crossrank.backends.base.Backend` per device (a model replica each, loaded once)
and one thread per backend. ``submit(work)`` hands ``work(backend)`` to the next idle worker, waiting while every worker
is busy, so the caller (the synchronous :class:`crossrank.Reranker` or the async engine's dispatcher) keeps the queue on
its side and packs batches from what has arrived meanwhile. Threads are enough: torch releases the GIL while a GPU runs,
and the reference's spawn-per-call process pool is a known complaint (slow start on every call).

Used by :func:`run_batches_on_pool` (synchronous scoring) and by :class:`crossrank.engine.Engine` (its dispatcher hands
each packed batch to the pool). Scores are identical to one device: the same batches run the same code on each replica.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import TypeVar

import torch

from crossrank.backends.base import Backend
from crossrank.core.batching import pack_batches, restore_order
from crossrank.core.tokenize import EncodedPair
from crossrank.runtime.scoring import ProgressCallback, launch_batch

log = logging.getLogger(__name__)

T = TypeVar("T")
_Task = tuple[Callable[[Backend], object], "Future[object]"]


class WorkerPool:
    """One thread per backend (one backend per device), started once and kept until :meth:`close`.

    >>> pool = WorkerPool([backend_on_cuda0, backend_on_cuda1])          # doctest: +SKIP
    >>> future = pool.submit(lambda backend: forward_with_backoff(backend, batch))  # doctest: +SKIP
    >>> pool.close()                                                      # doctest: +SKIP
    """

    def __init__(self, backends: Sequence[Backend]) -> None:
        if not backends:
            raise ValueError("a worker pool needs at least one backend")
        self.backends = list(backends)
        self._tasks: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        # One permit per idle worker: submit() waits for a permit so work never piles up inside the pool.
        self._idle = threading.Semaphore(len(self.backends))
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, args=(b,), name=f"crossrank-worker-{i}-{b.device}", daemon=True)
            for i, b in enumerate(self.backends)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def size(self) -> int:
        return len(self.backends)

    @property
    def padded(self) -> bool:
        return self.backends[0].padded

    def submit(self, work: Callable[[Backend], T]) -> Future[T]:
        """Run ``work(backend)`` on the next free worker; blocks until one is free. The future holds its result."""
        if self._closed:
            raise RuntimeError("the worker pool is closed")
        self._idle.acquire()
        future: Future[T] = Future()
        self._tasks.put((work, future))  # type: ignore[arg-type]
        return future

    def _work(self, backend: Backend) -> None:
        if backend.device.type == "cuda":
            torch.cuda.set_device(backend.device)  # kernels and caches of this thread go to its own GPU
        while True:
            task = self._tasks.get()
            if task is None:
                return
            work, future = task
            try:
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(work(backend))
                    except BaseException as exc:  # handed to whoever waits on the future
                        future.set_exception(exc)
            finally:
                self._idle.release()

    def close(self) -> None:
        """Let queued work finish, then stop every thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for _ in self._threads:
            self._tasks.put(None)
        for thread in self._threads:
            thread.join()


def submit_batches(
    pool: WorkerPool,
    encoded: Sequence[EncodedPair],
    max_batch_tokens: int,
    progress: ProgressCallback | None = None,
) -> Callable[[], list[float]]:
    """Pack like :func:`scoring.run_batches` and hand every batch to the pool (waiting only for free workers);
    returns a function that waits for the logits, in input order. Lets a caller queue its next slice of pairs while
    this one still runs, so no worker idles at slice boundaries.

    A worker queues its batch on its GPU and then waits only for the batch it queued before (a CUDA event), not for
    this one: each GPU always has the next batch queued behind the running one, instead of idling while its worker
    hands back results and takes new work. Logits stay on the devices until the returned function copies them.
    """
    batches = pack_batches([len(e) for e in encoded], max_batch_tokens, padded=pool.padded)
    done = 0
    lock = threading.Lock()
    previous: dict[int, torch.cuda.Event] = {}  # per backend: the event after its last queued batch

    def counted(batch: list[int]) -> Callable[[Backend], list[torch.Tensor]]:
        def work(backend: Backend) -> list[torch.Tensor]:
            nonlocal done
            parts = launch_batch(backend, [encoded[i] for i in batch])
            if backend.device.type == "cuda":
                queued = torch.cuda.Event()
                queued.record()
                before = previous.get(id(backend))
                previous[id(backend)] = queued  # one worker thread per backend: no other writer of this key
                if before is not None:
                    before.synchronize()  # releases the GIL; at most two batches queued per GPU
            if progress is not None:
                with lock:
                    done += len(batch)
                    progress(done, len(encoded))
            return parts

        return work

    futures = [pool.submit(counted(batch)) for batch in batches]

    def collect() -> list[float]:
        values = [torch.cat(f.result()).float().cpu().tolist() for f in futures]
        return restore_order(batches, values, len(encoded))

    return collect


def run_batches_on_pool(
    pool: WorkerPool,
    encoded: Sequence[EncodedPair],
    max_batch_tokens: int,
    progress: ProgressCallback | None = None,
) -> list[float]:
    """:func:`scoring.run_batches` over several workers: same packing, same batches, logits in input order."""
    return submit_batches(pool, encoded, max_batch_tokens, progress)()
