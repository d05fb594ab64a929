"""The child side of :mod:`~processes`: ``python -m worker_process`` reads its socket's file
descriptor and the settings to load from stdin, loads a single-device :class:`crossrank.Reranker`, and scores the
slices it is sent (tokenised already, or texts it tokenises itself), answering them in order.

Three threads, so that the device never waits on the child's host work: one reads the socket (the parent's sends never
stall, whatever the child is doing), one tokenises the texts of the next slice (if it came as texts) while the device
runs the ones before it, and the main one launches each slice's batches and answers the oldest slice once another is
launched behind it.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from crossrank.core.settings import ModelSettings

ANSWER_AFTER = 0.002
"""Seconds the main thread waits for the next tokenised slice before it answers the oldest launched one instead."""


def _send_error(conn: Connection, status: str, exc: Exception) -> None:
    try:
        conn.send((status, exc))
    except Exception:  # an exception that does not pickle: send its text
        conn.send((status, RuntimeError(f"{type(exc).__name__}: {exc}")))


def _serve(conn: Connection, settings: ModelSettings) -> None:
    from crossrank.reranker import Reranker

    try:
        reranker = Reranker.from_settings(settings, tokenizer_processes=0)
    except Exception as exc:
        _send_error(conn, "error", exc)
        return
    conn.send(("ready", reranker.settings.backend))
    requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
    encoded: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def read() -> None:
        try:
            while True:
                message = conn.recv()
                requests.put(message)
                if message[0] == "stop":
                    return
        except (OSError, EOFError):
            requests.put(("stop",))

    def encode() -> None:
        while (message := requests.get())[0] != "stop":
            if message[0] == "encoded":  # tokenised by the parent's tokenizer processes
                encoded.put(message[1])
                continue
            _, pairs, mode = message
            try:
                encoded.put(reranker.encode(pairs, mode))
            except Exception as exc:
                encoded.put(exc)
        encoded.put(None)

    for target in (read, encode):
        threading.Thread(target=target, daemon=True).start()
    launched: deque[tuple[Callable[[], list[float]] | Exception, list[int], list[int]]] = deque()

    def answer_oldest() -> None:
        collect, pair_of, chunk_of = launched.popleft()
        try:
            if isinstance(collect, Exception):
                raise collect
            conn.send(("done", (collect(), pair_of, chunk_of)))
        except Exception as exc:
            _send_error(conn, "failed", exc)

    while True:
        if len(launched) >= 2:  # the newer one keeps the device busy while this one is answered
            answer_oldest()
            continue
        try:
            item = encoded.get(timeout=ANSWER_AFTER if launched else None)
        except queue.Empty:
            answer_oldest()
            continue
        if item is None:
            break
        if isinstance(item, Exception):
            launched.append((item, [], []))
            continue
        try:
            launched.append((reranker._start_batches(item, None), [e.pair for e in item], [e.chunk for e in item]))
        except Exception as exc:
            launched.append((exc, [], []))
    while launched:
        answer_oldest()
    reranker.close()


def main() -> None:
    """Entry point of a child: read its socket and the settings to load from stdin, then serve."""
    spec = json.loads(sys.stdin.read())
    conn = Connection(spec["fd"])
    try:
        _serve(conn, ModelSettings(**spec["settings"]))
    finally:
        conn.close()


if __name__ == "__main__":
    main()
