"""The child side of :class:`crossrank.runtime.child.Child`: ``python -m crossrank.runtime.child_main KIND FD``.

Reads its spec from the socket ``FD``, sets up the ``KIND`` of work (``tokenizer``: a
:class:`~crossrank.core.tokenize.PairEncoder`; ``device``: a model on one device behind a
:class:`~crossrank.runtime.device.DeviceRuntime`), answers ``("ready", detail)`` or ``("error", exception)``, then
answers every request in order until it reads the stop message or the socket closes. One thread reads the socket, so
the parent's sends never stall; one sends the answers as they complete, so a device child launches its next batches
while the last ones run. A module of its own, which the package does not import, so ``-m`` runs it only once.
"""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from multiprocessing.connection import Connection
from typing import Any

STOP = None

Handler = Callable[[Any], "Future[Any]"]
Setup = Callable[[Any], tuple[Any, Handler, Callable[[], None]]]


def _tokenizer(spec: dict[str, Any]) -> tuple[Any, Handler, Callable[[], None]]:
    """Encodes ``(pairs, mode)`` requests exactly as the parent's encoder would (same tokenizer, same settings)."""
    from crossrank.core.tokenize import PairEncoder

    encoder = PairEncoder(spec["tokenizer"], max_length=spec["max_length"], query_max_length=spec["query_max_length"])
    encoder.fast_join = spec["fast_join"]

    def handle(message: tuple[list[tuple[str, str]], str]) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(encoder.encode_as(message[0], message[1], spec["chunk_overlap"]))
        except Exception as exc:
            future.set_exception(exc)
        return future

    return None, handle, lambda: None


def _device(spec: dict[str, Any]) -> tuple[Any, Handler, Callable[[], None]]:
    """Loads the model on its device and runs ``(encoded, max_batch_tokens)`` requests on it; reports its backend."""
    from crossrank.core.settings import ModelSettings
    from crossrank.runtime.start import load_device_runtime

    settings = ModelSettings(**spec["settings"])
    runtime = load_device_runtime(spec["path"], settings, spec["device"])
    return runtime.backend_name, lambda message: runtime.submit(*message), runtime.close


KINDS: dict[str, Setup] = {"tokenizer": _tokenizer, "device": _device}


def _send_failure(conn: Connection, status: str, exc: BaseException) -> None:
    try:
        conn.send((status, exc))
    except Exception:  # an exception that does not pickle: send its text
        conn.send((status, RuntimeError(f"{type(exc).__name__}: {exc}")))


def serve(conn: Connection, setup: Setup) -> None:
    """Set up from the spec, say ready, then answer each request in order until told to stop."""
    try:
        ready, handle, close = setup(conn.recv())
    except Exception as exc:
        _send_failure(conn, "error", exc)
        return
    conn.send(("ready", ready))
    requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
    answers: queue.SimpleQueue[Future[Any] | None] = queue.SimpleQueue()

    def read() -> None:
        try:
            while (message := conn.recv()) is not STOP:
                requests.put(message)
        except (OSError, EOFError):
            pass
        requests.put(STOP)

    def answer() -> None:
        while (future := answers.get()) is not None:
            try:
                conn.send(("done", future.result()))
            except Exception as exc:
                _send_failure(conn, "failed", exc)

    threading.Thread(target=read, daemon=True).start()
    sender = threading.Thread(target=answer)
    sender.start()
    while (message := requests.get()) is not STOP:
        try:
            answers.put(handle(message))
        except Exception as exc:
            failed: Future[Any] = Future()
            failed.set_exception(exc)
            answers.put(failed)
    answers.put(None)
    sender.join()
    close()


def main() -> None:
    """Entry point of a child: ``KIND FD``."""
    kind, fd = sys.argv[1], int(sys.argv[2])
    conn = Connection(fd)
    try:
        serve(conn, KINDS[kind])
    except (OSError, EOFError):
        pass  # the parent went away: nothing to answer
    finally:
        conn.close()


if __name__ == "__main__":
    main()
