"""A tokenizer process of :class:`tokenizer_pool.TokenizerPool`: ``python -m tokenizer_child FD``.

Reads the pickled tokenizer and encoder settings from the socket ``FD``, answers ``("ready", None)``, then encodes each
request ``(pairs, mode)`` in order and answers ``("done", encoded pairs)`` or ``("failed", exception)``, until it reads
None or the socket closes. A module of its own, which the package does not import, so ``-m`` runs it only once.
"""

from __future__ import annotations

import pickle
import queue
import sys
import threading
from multiprocessing.connection import Connection
from typing import Any

from crossrank.core.tokenize import PairEncoder


def _send_error(conn: Connection, exc: Exception) -> None:
    try:
        conn.send(("failed", exc))
    except Exception:  # an exception that does not pickle: send its text
        conn.send(("failed", RuntimeError(f"{type(exc).__name__}: {exc}")))


def main() -> None:
    """The child: build the encoder from the pickled spec, then encode each request in order until told to stop."""
    conn = Connection(int(sys.argv[1]))
    try:
        spec = pickle.loads(conn.recv_bytes())
        encoder = PairEncoder(spec["tokenizer"], max_length=spec["max_length"],
                              query_max_length=spec["query_max_length"])
        encoder.fast_join = spec["fast_join"]
    except Exception as exc:
        _send_error(conn, exc)
        return
    conn.send(("ready", None))
    requests: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def read() -> None:  # drains the socket whatever the encoder is doing, so the parent's sends never stall
        try:
            while True:
                message = conn.recv()
                requests.put(message)
                if message is None:
                    return
        except (OSError, EOFError):
            requests.put(None)

    threading.Thread(target=read, daemon=True).start()
    while (message := requests.get()) is not None:
        pairs, mode = message
        try:
            encoded = encoder.encode_as(pairs, mode, spec["chunk_overlap"])
        except Exception as exc:
            _send_error(conn, exc)
            continue
        conn.send(("done", encoded))
    conn.close()


if __name__ == "__main__":
    main()
