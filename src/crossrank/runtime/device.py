"""One device in this process: encoded sequences in, a future of their logits out.

:meth:`DeviceRuntime.submit` packs the sequences under the token budget (:func:`crossrank.core.batching.pack_batches`),
launches every batch at once on the caller's thread and returns. The device queues the batches, so the host prepares
the next batch, and the caller its next submission, while the device runs this one; a collector thread waits for the
device and resolves the futures in submission order. At most ``depth`` submissions are in flight: ``submit`` waits for
room beyond that, so a caller (the service's engine) keeps what it has not submitted on its side, where it can still mix
requests into batches and drop those whose callers left.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import torch

from crossrank.backends.base import Backend
from crossrank.core.batching import pack_batches, restore_order
from crossrank.core.errors import OutOfMemoryError
from crossrank.core.tokenize import EncodedPair
from crossrank.model.devices import is_out_of_memory

log = logging.getLogger(__name__)

DEPTH = 3
"""Submissions in flight on one device: one running, one queued behind it, one being launched."""


def split_on_oom(run: Callable[[Sequence[EncodedPair]], torch.Tensor], batch: Sequence[EncodedPair],
                 device: torch.device) -> list[torch.Tensor]:
    """``run(batch)``; on accelerator out-of-memory (and only that) split the batch in halves and retry, down to one
    sequence. Returns the logit tensors of the parts, in batch order."""
    try:
        return [run(batch)]
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if len(batch) == 1:
            raise OutOfMemoryError(
                f"one pair of {len(batch[0])} tokens does not fit in {device} memory even alone; "
                "lower max_length, use dtype='fp16'/'bf16', or free GPU memory used by other processes"
            ) from exc
        mid = len(batch) // 2
        log.warning("out of memory on a batch of %d sequences; splitting it and retrying", len(batch))
        return split_on_oom(run, batch[:mid], device) + split_on_oom(run, batch[mid:], device)


@dataclass
class _Launched:
    """One submission on its way back: its batches, its logits (on the host once ``ready`` has fired)."""

    batches: list[list[int]]
    logits: torch.Tensor
    ready: torch.cuda.Event | None
    future: Future[list[float]]


class DeviceRuntime:
    """Runs encoded sequences on one :class:`~crossrank.backends.base.Backend`, launch-ahead, until :meth:`close`.

    >>> runtime = DeviceRuntime(backend, max_batch_tokens=32768)       # doctest: +SKIP
    >>> runtime.submit(encoded).result()                                # doctest: +SKIP
    [0.93, -2.1, ...]
    """

    def __init__(self, backend: Backend, max_batch_tokens: int, depth: int = DEPTH) -> None:
        if max_batch_tokens < 1:
            raise ValueError("max_batch_tokens must be at least 1")
        self.backend = backend
        self.devices = [str(backend.device)]
        self.padded = backend.padded
        self.backend_name = backend.name
        self.max_batch_tokens = max_batch_tokens
        self.in_flight_limit = max(1, depth)
        self._room = threading.Semaphore(self.in_flight_limit)
        self._launch_lock = threading.Lock()  # a backend runs one batch at a time (CUDA graphs, buffers)
        self._launched: queue.SimpleQueue[_Launched | None] = queue.SimpleQueue()
        self._closed = False
        self._collector = threading.Thread(target=self._collect, name=f"crossrank-collect-{backend.device}",
                                           daemon=True)
        self._collector.start()

    def submit(self, encoded: Sequence[EncodedPair], max_batch_tokens: int | None = None) -> Future[list[float]]:
        """Launch ``encoded`` in batches under ``max_batch_tokens`` (default: this runtime's) and return a future of
        one logit per sequence, in input order. Waits while ``depth`` submissions are in flight. A failure (a batch
        that does not fit even alone, a backend error) is set on the future, not raised here."""
        if self._closed:
            raise RuntimeError("the runtime is closed")
        future: Future[list[float]] = Future()
        if not encoded:
            future.set_result([])
            return future
        self._room.acquire()
        try:
            with self._launch_lock:
                launched = self._launch(encoded, max_batch_tokens or self.max_batch_tokens, future)
        except Exception as exc:
            self._room.release()
            future.set_exception(exc)
            return future
        except BaseException:
            self._room.release()
            raise
        self._launched.put(launched)
        return future

    def _launch(self, encoded: Sequence[EncodedPair], budget: int, future: Future[list[float]]) -> _Launched:
        backend = self.backend
        batches = pack_batches([len(e) for e in encoded], budget, padded=backend.padded)
        parts = [part for batch in batches
                 for part in split_on_oom(backend.forward, [encoded[i] for i in batch], backend.device)]
        logits = torch.cat(parts).float()
        if backend.device.type != "cuda":
            return _Launched(batches, logits.cpu(), None, future)
        # Copied back as soon as these batches end, not behind the batches launched after them.
        with torch.cuda.device(backend.device):
            host = torch.empty(logits.shape, dtype=torch.float32, pin_memory=True)
            host.copy_(logits, non_blocking=True)
            ready = torch.cuda.Event()
            ready.record()
        return _Launched(batches, host, ready, future)

    def _collect(self) -> None:
        while (launched := self._launched.get()) is not None:
            try:
                if launched.ready is not None:
                    launched.ready.synchronize()
                flat = launched.logits.tolist()
                values, at = [], 0
                for batch in launched.batches:
                    values.append(flat[at : at + len(batch)])
                    at += len(batch)
                launched.future.set_result(restore_order(launched.batches, values, sum(map(len, values))))
            except Exception as exc:  # handed to whoever waits on the future
                launched.future.set_exception(exc)
            finally:
                self._room.release()

    def close(self) -> None:
        """Let what was submitted finish, then stop the collector (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._launched.put(None)
        self._collector.join()
