"""Several devices of one host, one process each: ``Reranker(devices=...)``'s default (``workers="processes"``).

With worker threads (:mod:`~workers`) one Python process launches every GPU's kernels, and on two fast GPUs
that host side, not the GPUs, sets the pace (benchmarks/RESULTS.md, issue 7). Here each device gets a child process
holding a plain single-device :class:`crossrank.Reranker`, which scores the slices it is handed, so no interpreter
lock is shared.

- Children are started as ``python -m worker_process``, never by re-importing the caller's script (what
  multiprocessing's spawn does), so scripts need no ``if __name__ == "__main__":`` guard. Each talks to the parent
  over its own socket pair (messages framed by :mod:`multiprocessing.connection`) and loads its model once.
- The parent hands out whole slices, exactly those a single device scores one after the other
  (:func:`crossrank.reranker.encode_slices`), tokenised by the parent's tokenizer processes
  (:mod:`~tokenizer_pool`), several slices at once: a child tokenising its own slices beside launching its
  GPU's batches kept the GPU waiting while the slices grew (benchmarks/multi_gpu_processes_timeline.py). Where there
  are no tokenizer processes, each child tokenises the texts it is sent instead.
- Each slice goes to the child with least work queued among those with room (:func:`pick_child`; three slices in
  flight at most each). Same slices, same batches, so the scores equal one device's. The slices end small
  (``reranker.ENCODE_TAPER``), so that the children finish together. The parent loads no model, only the tokenizer.
- A child launches its next slice while its device runs the previous one, and answers slices in the order it got
  them. An error in one slice (out of memory even for one pair, say) comes back as that slice's exception.
- A call interrupted (Ctrl-C, a progress callback that raises) leaves answers owed; the next call takes them first.
  Only a child that died, or an interrupt in the middle of a message, makes the workers unusable (a clear error).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import socket
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

from crossrank.core.settings import ModelSettings
from crossrank.core.tokenize import EncodedPair

log = logging.getLogger(__name__)

IN_FLIGHT = 3
"""Slices handed to one child and not yet answered: one running, one launched behind it, one waiting in the pipe so the
child never has to wait for the parent before it launches (or tokenises) the next. Two instead measured 0.05-0.07
lower on 2 x H200s, alternated (benchmarks/RESULTS.md, eleventh session)."""
START_TIMEOUT = 600.0
"""Seconds a child may take to connect and load its model."""
SUPPORTED = os.name == "posix"
"""Children inherit their end of the socket by file descriptor (``pass_fds``), which only POSIX systems offer."""

Slice = tuple[str, list[tuple[str, str]], str] | tuple[str, list[EncodedPair]]
"""What a child is sent to score: ``("pairs", pairs, mode)``, to tokenise itself (``mode``: ``truncate`` or
``chunk``), or ``("encoded", encoded pairs)``, tokenised already."""
SliceResult = tuple[list[float], list[int], list[int]]
"""One slice's logits, and for each logit the pair (within the slice) and passage chunk it belongs to."""


def pick_child(in_flight: Sequence[int], queued_work: Sequence[int], limit: int) -> int | None:
    """The child to send the next slice to: of those with fewer than ``limit`` slices in flight, the one with the
    least work queued (so that a call's last, small slices go to whichever child will finish first), then the one
    with fewest slices, then the first; None when every child is full.

    >>> pick_child([2, 2], [5000, 900], limit=3), pick_child([3, 2], [0, 9000], limit=3), pick_child([3, 3], [1, 1], 3)
    (1, 1, None)
    """
    room = [c for c, n in enumerate(in_flight) if n < limit]
    return min(room, key=lambda c: (queued_work[c], in_flight[c], c)) if room else None


def slice_work(message: Slice) -> int:
    """How much scoring a slice asks for: its tokens where it is tokenised already, else its pairs."""
    if message[0] == "encoded":
        return sum(len(e) for e in message[1])
    return len(message[1])


class WorkerProcessError(RuntimeError):
    """A worker process died or could not start."""


class ProcessWorkers:
    """One child process per device, each a single-device Reranker, started once and kept until :meth:`close`."""

    def __init__(self, settings: ModelSettings, devices: Sequence[str]) -> None:
        if not devices:
            raise ValueError("process workers need at least one device")
        if not SUPPORTED:
            raise WorkerProcessError("worker processes need a POSIX system (Linux, macOS); use workers='threads'")
        self.devices = list(devices)
        self._procs: list[subprocess.Popen[bytes]] = []
        self._conns: list[Connection] = []
        self._lock = threading.Lock()  # one call at a time: the children answer in order
        self._broken: str | None = None  # set when a call stopped mid-message: the stream, and the order, are lost
        self._owed = [0] * len(devices)  # answers each child still sends for a call that was interrupted
        self._in_io = False  # sending or receiving a message and noting it (an interrupt there loses track)
        self.backend = ""
        try:
            for device in self.devices:
                ours, theirs = socket.socketpair()  # private to the two processes: nobody else can connect
                with ours, theirs:
                    fd = theirs.fileno()  # the same number in the child (pass_fds keeps it)
                    proc = subprocess.Popen([sys.executable, "-m", "crossrank.runtime.worker_process"],
                                            stdin=subprocess.PIPE, pass_fds=(fd,))
                    self._procs.append(proc)
                    self._conns.append(Connection(ours.detach()))
                assert proc.stdin is not None
                child = dataclasses.replace(settings, device=device, devices="")
                with contextlib.suppress(BrokenPipeError):  # a child that died at once: _wait_ready says so
                    proc.stdin.write(json.dumps({"fd": fd, "settings": dataclasses.asdict(child)}).encode())
                    proc.stdin.close()
            for child_index, device in enumerate(self.devices):
                status, detail = self._wait_ready(child_index)
                if status != "ready":
                    raise detail if isinstance(detail, BaseException) else WorkerProcessError(str(detail))
                self.backend = detail  # the backend the children chose (the same in each: same settings and kind)
                log.info("worker process for %s ready", device)
        except BaseException:
            self.close()
            raise

    def _wait_ready(self, child: int) -> Any:
        """The child's first message (ready, or the error that stopped it loading); fails, not hangs, if it exits."""
        waited = 0.0
        while not self._conns[child].poll(0.5) and self._procs[child].poll() is None:
            waited += 0.5
            if waited > START_TIMEOUT:
                raise WorkerProcessError(f"the worker process for {self.devices[child]} did not load its model "
                                         f"within {START_TIMEOUT:.0f} s")
        return self._recv(child)

    @property
    def size(self) -> int:
        return len(self._conns)

    def score_slices(self, slices: Iterable[Slice], on_slice: Callable[[int], None] | None = None
                     ) -> list[SliceResult]:
        """Score each slice on the child :func:`pick_child` chooses; results in order. A slice is taken from
        ``slices`` only when a child has room for it, so a generator may tokenise the next ones meanwhile.
        ``on_slice(k)`` is called as slice ``k`` comes back."""
        with self._lock:
            if self._broken is not None:
                raise WorkerProcessError(f"the worker processes are unusable: {self._broken}; make a new Reranker")
            queued: list[deque[int]] = [deque() for _ in self._conns]
            try:
                self._drain_owed()
                results, errors = self._score_slices(slices, on_slice, queued)
            except WorkerProcessError as exc:
                self._broken = str(exc)
                raise
            except BaseException as exc:  # interrupted (Ctrl-C, or the progress callback raised)
                if self._in_io:
                    self._broken = f"a call was interrupted mid-message ({type(exc).__name__})"
                else:  # between messages: the next call first takes the answers still owed, and goes on
                    self._owed = [owed + len(q) for owed, q in zip(self._owed, queued, strict=True)]
                raise
        if errors:  # every answer is in: the children are in step for the next call
            raise errors[min(errors)]
        return [results[k] for k in range(len(results))]

    def _drain_owed(self) -> None:
        """Take and drop the answers an interrupted call left owed, so that each child's next answer is this call's."""
        for child in range(len(self._owed)):
            while self._owed[child]:
                self._in_io = True
                self._recv(child)
                self._owed[child] -= 1
                self._in_io = False

    def _score_slices(self, slices: Iterable[Slice], on_slice: Callable[[int], None] | None,
                      queued: list[deque[int]]) -> tuple[dict[int, SliceResult], dict[int, BaseException]]:
        """Hand out the slices and collect the answers; ``queued`` (the caller's, so that it knows what is owed if
        this is interrupted) holds each child's slices sent and not yet answered."""
        results: dict[int, SliceResult] = {}
        errors: dict[int, BaseException] = {}
        work: list[int] = []  # each slice's work (slice_work)
        queued_work = [0] * len(queued)

        def take_answers(timeout: float | None) -> None:
            for conn in wait([self._conns[c] for c in range(len(queued)) if queued[c]], timeout):
                assert isinstance(conn, Connection)
                child = self._conns.index(conn)
                self._in_io = True
                status, payload = self._recv(child)
                k = queued[child].popleft()
                queued_work[child] -= work[k]
                self._in_io = False
                if status == "done":
                    results[k] = payload
                else:
                    errors[k] = payload
                if on_slice is not None:
                    on_slice(k)

        source = iter(slices)
        more = True
        while more or any(queued):
            while more and pick_child([len(q) for q in queued], queued_work, IN_FLIGHT) is not None:
                message = next(source, None)  # where a generator tokenises the slices, this waits for the next one
                if message is None:
                    more = False
                    break
                take_answers(timeout=0)  # those that came in meanwhile, so that the choice sees them
                child = pick_child([len(q) for q in queued], queued_work, IN_FLIGHT)
                assert child is not None
                work.append(slice_work(message))
                self._in_io = True  # a message and its bookkeeping: an interrupt here loses track
                self._send(child, message)
                queued[child].append(len(work) - 1)
                queued_work[child] += work[-1]
                self._in_io = False
            if any(queued):
                take_answers(timeout=None)
        return results, errors

    def _send(self, child: int, message: object) -> None:
        try:
            self._conns[child].send(message)
        except OSError as exc:
            raise WorkerProcessError(f"the worker process for {self.devices[child]} is gone") from exc

    def _recv(self, child: int) -> Any:
        try:
            return self._conns[child].recv()
        except (EOFError, OSError) as exc:
            code = self._procs[child].poll()
            raise WorkerProcessError(
                f"the worker process for {self.devices[child]} stopped (exit code {code}); its own messages, if "
                "any, are on stderr (a child killed while scoring is most often out of host memory)"
            ) from exc

    def close(self) -> None:
        """Stop every child (idempotent): ask, then wait a little, then kill."""
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.send(("stop",))
        for proc in self._procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for conn in self._conns:
            conn.close()
        self._conns, self._procs = [], []
