"""uvicorn's HTTP/1.1 protocol (httptools, a C parser) with the limits a public server needs and uvicorn lacks: a cap
on open connections, a cap on the bytes of a request head, and deadlines for a request's head and body (uvicorn only
times out idle kept-alive connections).

uvicorn takes a protocol class (``Config(http=...)``); :func:`uvicorn_config` builds the whole configuration from
:class:`~crossrank.core.settings.ServerSettings`, the one place the service's transport limits are set.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from crossrank.core.settings import ServerSettings

REFUSED = (b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\nContent-Type: text/plain\r\n"
           b"Content-Length: 25\r\n\r\ntoo many open connections")
TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
HEAD_TOO_LARGE = b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


class _GuardedProtocol(HttpToolsProtocol):
    """The guards of :func:`guarded_protocol`; its subclass sets the limits."""

    max_open_connections: int
    max_head_bytes: int
    head_timeout: float  # seconds
    body_deadline: float  # seconds
    _deadline: asyncio.TimerHandle | None = None
    _reading_head = True  # a head is due (or arriving): from the connection, and after each request's body
    _head_bytes = 0  # received while reading the head

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_open_connections:
            transport.write(REFUSED)
            transport.close()
            return
        self._arm(self.head_timeout)

    def data_received(self, data: bytes) -> None:
        if self._reading_head:
            self._head_bytes += len(data)
        super().data_received(data)
        # The parser holds an unfinished head in memory: bounded here, as it arrives.
        if self._reading_head and self._head_bytes > self.max_head_bytes and not self.transport.is_closing():
            self.transport.write(HEAD_TOO_LARGE)
            self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # a kept-alive connection's next request: its head is due from its first byte
            self._arm(self.head_timeout)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._reading_head = False
        self._head_bytes = 0
        self._arm(self.body_deadline)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading_head = True
        self._disarm()  # the request is in; between requests uvicorn's keep-alive timer applies

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = None

    def _timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is None or not self.cycle.response_started:  # nothing answered yet: say why before closing
            self.transport.write(TIMED_OUT)
        self.transport.close()


def guarded_protocol(max_connections: int, head_bytes: int, header_timeout: float, body_timeout: float
                     ) -> type[HttpToolsProtocol]:
    """An :class:`HttpToolsProtocol` that answers 503 and closes a connection beyond ``max_connections``; answers 431
    and closes one whose request head grows past ``head_bytes`` before it is complete; and answers 408 and closes
    one whose request head takes over ``header_timeout`` seconds (counted from the connection, or from the first byte
    of a kept-alive connection's next request), or whose body takes over ``body_timeout`` after it."""

    class GuardedProtocol(_GuardedProtocol):
        max_open_connections = max_connections
        max_head_bytes = head_bytes
        head_timeout = header_timeout
        body_deadline = body_timeout

    return GuardedProtocol


def uvicorn_config(app: Any, settings: ServerSettings, **overrides: Any) -> uvicorn.Config:
    """The uvicorn configuration of the service: its address, the guarded protocol and every transport limit."""
    options: dict[str, Any] = {
        "host": settings.host, "port": settings.port,
        "http": guarded_protocol(settings.max_connections, settings.max_header_bytes, settings.header_timeout,
                                 settings.body_timeout),
        "timeout_keep_alive": settings.timeout_keep_alive,
        "timeout_graceful_shutdown": settings.graceful_shutdown_seconds,
        "server_header": False,
    }
    return uvicorn.Config(app, **{**options, **overrides})
