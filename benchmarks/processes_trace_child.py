"""The child of multi_gpu_processes_timeline.py: ``crossrank.runtime.worker_process`` with its host and GPU work timed.

Runs the library's own child (``worker_process.main``) after wrapping, in this process only, what it does
with each slice: the socket's messages (arrival of each slice, sending of each answer), ``Reranker.encode`` (the
tokenising thread), ``Reranker._start_batches`` (one call per slice) and ``scoring.launch_batch`` (the host
span of each batch, and CUDA events around it on its GPU). When the child stops it writes everything, on the host's
monotonic clock (``time.perf_counter``, the same in every process of the host), to
``$CROSSRANK_TRACE_DIR/child-<pid>.json``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import torch

import crossrank.runtime.scoring as scoring
import crossrank.runtime.worker_process as worker_process
from crossrank.backends.base import Backend
from crossrank.core.tokenize import EncodedPair
from crossrank.reranker import Reranker

LOCK = threading.Lock()
TRACE: dict[str, list[Any]] = {"arrived": [], "answered": [], "encoded": [], "started": [], "batches": []}
REFERENCE: dict[str, tuple[torch.cuda.Event, float]] = {}  # device: an event and the wall time it completed at
SLICE = [0]  # the slice being launched (the main thread launches one slice at a time)


def _reference(device: torch.device) -> None:
    """One event per GPU whose wall time is known, so GPU events can be placed on the host's clock."""
    if str(device) in REFERENCE:
        return
    with torch.cuda.device(device):
        torch.cuda.synchronize(device)
        event = torch.cuda.Event(enable_timing=True)
        event.record(torch.cuda.current_stream(device))
        torch.cuda.synchronize(device)
    REFERENCE[str(device)] = (event, time.perf_counter())


def _wrap() -> None:
    recv, send = Connection.recv, Connection.send
    launch = scoring.launch_batch
    encode, start = Reranker.encode, Reranker._start_batches

    def timed_recv(self: Connection) -> Any:
        message = recv(self)
        if message[0] in ("pairs", "encoded"):
            now = time.perf_counter()
            TRACE["arrived"].append([now, len(message[1])])
            if message[0] == "encoded":  # tokenised by the parent's tokenizer processes: ready as it arrives
                TRACE["encoded"].append([now, now, len(message[1])])
        return message

    def timed_send(self: Connection, message: Any) -> None:
        send(self, message)
        if message[0] in ("done", "failed"):
            TRACE["answered"].append([time.perf_counter(), message[0]])

    def timed_encode(self: Reranker, pairs: Sequence[tuple[str, str]], long_passages: str | None = None
                     ) -> list[EncodedPair]:
        begin = time.perf_counter()
        out = encode(self, pairs, long_passages)
        TRACE["encoded"].append([begin, time.perf_counter(), len(pairs)])
        return out

    def timed_start(self: Reranker, encoded: list[EncodedPair], progress: Any) -> Callable[[], list[float]]:
        begin = time.perf_counter()
        collect = start(self, encoded, progress)
        TRACE["started"].append([begin, time.perf_counter(), len(encoded)])
        SLICE[0] += 1
        return collect

    def timed_launch(backend: Backend, batch: Sequence[EncodedPair]) -> list[torch.Tensor]:
        cuda = backend.device.type == "cuda"
        if cuda:
            _reference(backend.device)
            stream = torch.cuda.current_stream(backend.device)  # the stream the batch runs on, on its own GPU
            begin_event, end_event = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin_event.record(stream)
        begin = time.perf_counter()
        parts = launch(backend, batch)
        row: dict[str, Any] = {"slice": SLICE[0], "tokens": sum(len(e) for e in batch),
                               "launch": [begin, time.perf_counter()], "device": str(backend.device)}
        if cuda:
            end_event.record(stream)
            row["events"] = (begin_event, end_event)
        with LOCK:
            TRACE["batches"].append(row)
        return parts

    Connection.recv = timed_recv  # type: ignore[method-assign]
    Connection.send = timed_send  # type: ignore[method-assign]
    scoring.launch_batch = timed_launch
    Reranker.encode = timed_encode  # type: ignore[method-assign]
    Reranker._start_batches = timed_start  # type: ignore[method-assign]


def _dump() -> None:
    for row in TRACE["batches"]:
        events = row.pop("events", None)
        if events is not None:
            try:
                reference, wall = REFERENCE[row["device"]]
                events[1].synchronize()
                row["gpu"] = [wall + reference.elapsed_time(e) / 1e3 for e in events]
            except Exception as exc:  # written down, so that the host spans still come back
                TRACE.setdefault("errors", []).append(repr(exc))
    path = Path(os.environ["CROSSRANK_TRACE_DIR"]) / f"child-{os.getpid()}.json"
    path.write_text(json.dumps(TRACE), encoding="utf-8")


if __name__ == "__main__":
    _wrap()
    try:
        worker_process.main()
    finally:
        _dump()
