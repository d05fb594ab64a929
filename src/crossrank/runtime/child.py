"""A child process that answers requests in order: the one helper under the worker and the tokenizer processes.

A :class:`Child` starts ``python -m crossrank.runtime.child_main KIND FD`` over a private socket pair (no re-import of
the caller's script, so scripts need no main guard), sends it its spec and waits for its first message: ``ready`` or
the error that stopped it. Then :meth:`Child.request` hands a message to a sender thread and returns a future; a
receiver thread resolves the futures in order as answers come (``done`` or ``failed`` with the child's exception). A
child that dies fails every future still owed with :class:`ChildError`. Neither side ever blocks the other on a
full socket: both read in threads of their own, and an interrupted caller (Ctrl-C) never leaves a message half sent.
"""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import subprocess
import sys
import threading
from collections import deque
from concurrent.futures import Future
from multiprocessing.connection import Connection
from typing import Any

STOP = None
"""The message that ends a child."""


class ChildError(RuntimeError):
    """A child process died, could not start, or did not start in time."""


class Child:
    """One child process of ``kind`` (see :mod:`crossrank.runtime.child_main`), started at once; :meth:`wait_ready`
    completes the handshake."""

    def __init__(self, kind: str, spec: Any, *, name: str, env: dict[str, str] | None = None) -> None:
        self.name = name
        ours, theirs = socket.socketpair()  # private to the two processes: nobody else can connect
        # The parent's import path (a script may have added to sys.path).
        path = os.pathsep.join(p for p in sys.path if p)
        with ours, theirs:
            fd = theirs.fileno()  # the same number in the child (pass_fds keeps it)
            self._proc = subprocess.Popen([sys.executable, "-m", "crossrank.runtime.child_main", kind, str(fd)],
                                          pass_fds=(fd,), env={**os.environ, "PYTHONPATH": path, **(env or {})})
            self._conn = Connection(ours.detach())
        self._owed: deque[Future[Any]] = deque()
        self._outbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._error: str | None = None
        self._started = False
        with contextlib.suppress(OSError):  # a child that died at once: wait_ready says so
            self._conn.send(spec)

    def wait_ready(self, timeout: float) -> Any:
        """The child's answer to its spec (what it reports when ready); raises the child's own error if it could not
        start, :class:`ChildError` if it died or took longer than ``timeout`` seconds."""
        waited = 0.0
        while not self._conn.poll(0.5):
            waited += 0.5
            if self._proc.poll() is not None:
                raise ChildError(f"the {self.name} exited while starting (exit code {self._proc.poll()})")
            if waited > timeout:
                raise ChildError(f"the {self.name} did not start within {timeout:.0f} s")
        try:
            status, detail = self._conn.recv()
        except (EOFError, OSError) as exc:
            raise ChildError(f"the {self.name} exited while starting (exit code {self._proc.poll()})") from exc
        if status != "ready":
            raise detail
        for target in (self._send, self._receive):
            threading.Thread(target=target, name=f"crossrank-{self.name}", daemon=True).start()
        self._started = True
        return detail

    @property
    def alive(self) -> bool:
        return self._error is None and self._proc.poll() is None

    @property
    def owed(self) -> int:
        """Requests sent and not answered yet."""
        return len(self._owed)

    def request(self, message: Any) -> Future[Any]:
        """Send ``message``; the future holds the child's answer (or its exception)."""
        future: Future[Any] = Future()
        with self._lock:
            if self._error is not None:
                future.set_exception(ChildError(self._error))
                return future
            self._owed.append(future)
            self._outbox.put(message)
        return future

    def _send(self) -> None:
        while (message := self._outbox.get()) is not STOP:
            try:
                self._conn.send(message)
            except OSError:
                self._fail()
                return
        with contextlib.suppress(OSError):
            self._conn.send(STOP)

    def _receive(self) -> None:
        while True:
            try:
                status, payload = self._conn.recv()
            except (EOFError, OSError):
                self._fail()
                return
            with self._lock:
                future = self._owed.popleft()
            if status == "done":
                future.set_result(payload)
            else:
                future.set_exception(payload)

    def _fail(self) -> None:
        """The child is gone: every answer still owed fails, and so does every later request."""
        code = None
        with contextlib.suppress(subprocess.TimeoutExpired):  # a closed socket: the child is exiting, or has
            code = self._proc.wait(timeout=5)
        with self._lock:
            if self._error is None:
                self._error = (f"the {self.name} stopped (exit code {code}); its own messages, if any, are on stderr "
                               "(a child killed while working is most often out of host memory)")
            owed, self._owed = list(self._owed), deque()
        for future in owed:
            if not future.done():
                future.set_exception(ChildError(self._error))

    def close(self, timeout: float = 30.0) -> None:
        """Ask the child to stop once it has answered what it was sent, wait ``timeout`` seconds, then kill it."""
        if self._started:
            self._outbox.put(STOP)
        else:
            with contextlib.suppress(OSError):
                self._conn.send(STOP)
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._conn.close()


def start_children(kind: str, specs: list[Any], names: list[str], timeout: float,
                   env: dict[str, str] | None = None) -> tuple[list[Child], list[Any]]:
    """Start one child per spec together, then wait for each in turn; on any failure every one is stopped again.
    Returns the children and what each reported when ready."""
    children: list[Child] = []
    try:
        children = [Child(kind, spec, name=name, env=env) for spec, name in zip(specs, names, strict=True)]
        ready = [child.wait_ready(timeout) for child in children]
    except BaseException:
        for child in children:
            child.close(timeout=5)
        raise
    return children, ready
