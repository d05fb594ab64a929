"""Several devices of one host, one process each: ``Reranker(devices=...)``'s default (``workers="processes"``).

With worker threads (:mod:`crossrank.workers`) one Python process tokenises every pair and launches every GPU's
kernels, and on two fast GPUs that host side, not the GPUs, sets the pace (benchmarks/RESULTS.md, issue 7). Here each
device gets a child process holding a plain single-device :class:`crossrank.Reranker`, which tokenises and scores
the slices it is handed, so nothing is shared but the pipe.

- Children are started as ``python -m crossrank.worker_process``, never by re-importing the caller's script (what
  multiprocessing's spawn does), so scripts need no ``if __name__ == "__main__":`` guard. Each talks to the parent
  over its own socket pair (messages framed by :mod:`multiprocessing.connection`) and loads its model once.
- The parent hands out whole slices, exactly those a single device scores one after the other
  (:func:`crossrank.reranker.encode_slices`), to whichever child has fewest in flight (three at most each). Same slices,
  same batches, so the scores equal one device's. The slices end small (``reranker.ENCODE_TAPER``), so that the
  children finish together. The parent loads no model of its own, only the tokenizer.
- A child tokenises its next slice while its device runs the previous one, and answers slices in the order it got
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
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

from crossrank.settings import ModelSettings

log = logging.getLogger(__name__)

IN_FLIGHT = 3
"""Slices handed to one child and not yet answered: one running, one launched behind it, one waiting in the pipe so the
child never has to wait for the parent before it tokenises the next."""
START_TIMEOUT = 600.0
"""Seconds a child may take to connect and load its model."""
SUPPORTED = os.name == "posix"
"""Children inherit their end of the socket by file descriptor (``pass_fds``), which only POSIX systems offer."""

SliceResult = tuple[list[float], list[int], list[int]]
"""One slice's logits, and for each logit the pair (within the slice) and passage chunk it belongs to."""


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
                    proc = subprocess.Popen([sys.executable, "-m", "crossrank.worker_process"],
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

    def score_slices(self, pairs: Sequence[tuple[str, str]], bounds: Sequence[tuple[int, int]], mode: str,
                     on_slice: Callable[[int], None] | None = None) -> list[SliceResult]:
        """Score each ``pairs[start:end]`` of ``bounds`` on whichever child has fewest in flight; results in order.
        ``on_slice(k)`` is called as slice ``k`` comes back."""
        with self._lock:
            if self._broken is not None:
                raise WorkerProcessError(f"the worker processes are unusable: {self._broken}; make a new Reranker")
            queued: list[deque[int]] = [deque() for _ in self._conns]
            try:
                self._drain_owed()
                results, errors = self._score_slices(pairs, bounds, mode, on_slice, queued)
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
        return [results[k] for k in range(len(bounds))]

    def _drain_owed(self) -> None:
        """Take and drop the answers an interrupted call left owed, so that each child's next answer is this call's."""
        for child in range(len(self._owed)):
            while self._owed[child]:
                self._in_io = True
                self._recv(child)
                self._owed[child] -= 1
                self._in_io = False

    def _score_slices(self, pairs: Sequence[tuple[str, str]], bounds: Sequence[tuple[int, int]], mode: str,
                      on_slice: Callable[[int], None] | None, queued: list[deque[int]]
                      ) -> tuple[dict[int, SliceResult], dict[int, BaseException]]:
        """Hand out the slices and collect the answers; ``queued`` (the caller's, so that it knows what is owed if
        this is interrupted) holds each child's slices sent and not yet answered."""
        results: dict[int, SliceResult] = {}
        errors: dict[int, BaseException] = {}
        todo = deque(range(len(bounds)))
        while todo or any(queued):
            while todo:
                child = min(range(len(queued)), key=lambda c: len(queued[c]))
                if len(queued[child]) >= IN_FLIGHT:
                    break
                k = todo.popleft()
                start, end = bounds[k]
                message = ("slice", list(pairs[start:end]), mode)
                self._in_io = True  # a message and its bookkeeping: an interrupt here loses track
                self._send(child, message)
                queued[child].append(k)
                self._in_io = False
            for conn in wait([self._conns[c] for c in range(len(queued)) if queued[c]]):
                assert isinstance(conn, Connection)
                child = self._conns.index(conn)
                self._in_io = True
                status, payload = self._recv(child)
                k = queued[child].popleft()
                self._in_io = False
                if status == "done":
                    results[k] = payload
                else:
                    errors[k] = payload
                if on_slice is not None:
                    on_slice(k)
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
