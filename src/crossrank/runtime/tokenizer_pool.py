"""Tokenising in child processes, for a Reranker with several devices (worker threads or worker processes).

With several GPUs the host sets the pace (benchmarks/RESULTS.md, issue 7): two H200s score 4,000 of the benchmark's
pairs in ~0.5 s, about the time one Python process takes to tokenise them (0.44-0.54 s on a 16-core host), so the
GPUs wait on the tokenizer. A thread more does not help (the tokenizer's batch call already spreads over every core,
and the rest of the work holds the interpreter lock), and one child process does not either (the same speed,
elsewhere). A :class:`TokenizerPool` runs several children, each with the same tokenizer (pickled from the caller's,
so settings made on it travel too) and the same :class:`~crossrank.core.tokenize.PairEncoder` settings, and hands
consecutive slices of pairs to them in turn. Same code, same tokenizer, so the same ids; the slices come back in
order.

A child is started as ``python -m tokenizer_child`` over a private socket pair (no re-import of the caller's
script, so scripts need no main guard), with the host's cores shared among the children's tokenizer threads. It reads
requests in a thread of its own, so neither side blocks the other on a full socket, and answers in order. At most
:data:`AHEAD` slices per child are requested before their answers are read.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import socket
import subprocess
import sys
import threading
from collections.abc import Generator, Sequence
from multiprocessing.connection import Connection
from typing import Any

from crossrank.core.tokenize import EncodedPair, PairEncoder

log = logging.getLogger(__name__)

AHEAD = 2
"""Slices requested from each child before the first of them is read: every child always has its next one queued."""
CHILD_THREADS: int | None = None
"""Tokenizer threads in each child; None: the host's cores shared equally among the children."""
START_TIMEOUT = 120.0
"""Seconds a child may take to start (import transformers, unpickle the tokenizer)."""


class TokenizerProcessError(RuntimeError):
    """A tokenizer process died or could not start."""


def default_processes(devices: int, cpus: int | None = None) -> int:
    """Children for a Reranker on ``devices`` devices: none for one device (a thread keeps up with one GPU), else
    one per 4 cores, at least 2 and at most 8 (on 2 x H200 with 32 cores, 8 beat 4, and 4 beat 2: RESULTS.md).

    >>> default_processes(1, 32), default_processes(2, 32), default_processes(2, 8), default_processes(8, 128)
    (0, 8, 2, 8)
    """
    if devices < 2:
        return 0
    return max(2, min(8, (cpus or os.cpu_count() or 1) // 4))


class _Child:
    """One tokenizer process and the parent's end of its socket."""

    def __init__(self, spec: bytes, threads: int) -> None:
        ours, theirs = socket.socketpair()  # private to the two processes
        # The parent's import path (a script may have added to sys.path), and a share of the cores for the tokenizer.
        path = os.pathsep.join(p for p in sys.path if p)
        env = {**os.environ, "RAYON_NUM_THREADS": str(threads), "PYTHONPATH": path}
        with ours, theirs:
            fd = theirs.fileno()  # the same number in the child (pass_fds keeps it)
            self.proc = subprocess.Popen([sys.executable, "-m", "crossrank.runtime.tokenizer_child", str(fd)],
                                         pass_fds=(fd,), env=env)
            self.conn: Connection | None = Connection(ours.detach())
        try:
            self.conn.send_bytes(spec)
        except OSError:
            self.close()
            raise

    def wait_ready(self) -> None:
        conn = self.conn
        assert conn is not None
        waited = 0.0
        while not conn.poll(0.5):
            waited += 0.5
            if self.proc.poll() is not None or waited > START_TIMEOUT:
                raise TokenizerProcessError(f"a tokenizer process did not start (exit code {self.proc.poll()})")
        try:
            status, detail = conn.recv()
        except (OSError, EOFError) as exc:
            raise TokenizerProcessError(f"a tokenizer process did not start (exit code {self.proc.poll()})") from exc
        if status != "ready":
            raise detail

    @property
    def alive(self) -> bool:
        return self.conn is not None and self.proc.poll() is None

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(OSError):
                self.conn.send(None)
            self.conn.close()
            self.conn = None
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class TokenizerPool:
    """``processes`` children that tokenise pairs as ``encoder`` would, kept until :meth:`close`."""

    def __init__(self, tokenizer: Any, encoder: PairEncoder, chunk_overlap: int, processes: int) -> None:
        if processes < 1:
            raise ValueError("a tokenizer pool needs at least one process")
        self._spec = pickle.dumps({
            "tokenizer": tokenizer, "max_length": encoder.max_length, "query_max_length": encoder.query_max_length,
            "fast_join": encoder.fast_join, "chunk_overlap": chunk_overlap,
        })
        self._threads = CHILD_THREADS or max(1, (os.cpu_count() or 1) // processes)
        self._children: list[_Child] = []
        self._lock = threading.Lock()  # one call at a time: answers come back in request order
        try:
            self._children = [_Child(self._spec, self._threads) for _ in range(processes)]
            for child in self._children:  # started together, waited for in turn
                child.wait_ready()
        except BaseException:
            self.close()
            raise

    @property
    def size(self) -> int:
        return len(self._children)

    def _restart_dead(self) -> None:
        for i, child in enumerate(self._children):
            if not child.alive:
                log.warning("a tokenizer process had stopped; starting it again")
                child.close()
                self._children[i] = _Child(self._spec, self._threads)
                self._children[i].wait_ready()

    def encode_slices(self, pairs: Sequence[tuple[str, str]], bounds: Sequence[tuple[int, int]],
                      mode: str) -> Generator[list[EncodedPair], None, None]:
        """The encoded pairs of each ``pairs[start:end]`` of ``bounds``, in order, ``mode`` being ``truncate`` or
        ``chunk``; slice ``j`` goes to child ``j % size``. Children found dead are started again first; one that
        dies during the call fails it."""
        with self._lock:
            self._restart_dead()
            children = self._children
            owed = [0] * len(children)  # answers requested from each child and not read yet
            sent = 0
            try:
                for j in range(len(bounds)):
                    # One slice per child before the first answer is read (the first slice comes back sooner), then
                    # AHEAD per child.
                    while sent < len(bounds) and sent < j + (AHEAD if j else 1) * len(children):
                        start, end = bounds[sent]
                        conn = children[sent % len(children)].conn
                        assert conn is not None
                        conn.send((list(pairs[start:end]), mode))
                        owed[sent % len(children)] += 1
                        sent += 1
                    conn = children[j % len(children)].conn
                    assert conn is not None
                    status, payload = conn.recv()
                    owed[j % len(children)] -= 1
                    if status != "done":
                        raise payload
                    yield payload
            except (OSError, EOFError) as exc:
                raise TokenizerProcessError("a tokenizer process stopped during the call") from exc
            finally:
                # A caller that stopped early (an error while scoring, a failed slice): read the answers still owed,
                # so that the next call starts in step.
                for child, n in zip(children, owed, strict=True):
                    with contextlib.suppress(OSError, EOFError):
                        for _ in range(n):
                            if child.conn is not None:
                                child.conn.recv()

    def close(self) -> None:
        """Stop every child (idempotent)."""
        for child in self._children:
            child.close()
        self._children = []
