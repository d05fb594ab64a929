"""uvicorn's HTTP/1.1 protocol (h11) with the limits a public server needs and uvicorn lacks: a cap on open
connections, and deadlines for a request's head and body (uvicorn only times out idle kept-alive connections).

uvicorn takes a protocol class (``Config(http=...)``); :func:`uvicorn_config` builds the whole configuration from
:class:`~crossrank.core.settings.ServerSettings`, the one place the service's transport limits are set.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from crossrank.core.settings import ServerSettings

REFUSED = (b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\nContent-Type: text/plain\r\n"
           b"Content-Length: 25\r\n\r\ntoo many open connections")
TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


class _GuardedH11Protocol(H11Protocol):
    """The guards of :func:`guarded_h11_protocol`; its subclass sets the limits."""

    max_open_connections: int
    head_timeout: float  # seconds
    body_deadline: float  # seconds
    _deadline: asyncio.TimerHandle | None = None
    _waiting_for: object = None  # h11.IDLE while a head is due, h11.SEND_BODY while a body is

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_open_connections:
            transport.write(REFUSED)
            transport.close()
            return
        self._expect(h11.IDLE, self.head_timeout)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow(idle=True)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _follow(self, idle: bool = False) -> None:
        """Arm the deadline that fits what the client still owes us."""
        state = self.conn.their_state
        if state is h11.IDLE and not idle:
            if self._waiting_for is not h11.IDLE:
                self._expect(h11.IDLE, self.head_timeout)
        elif state is h11.SEND_BODY:
            if self._waiting_for is not h11.SEND_BODY:
                self._expect(h11.SEND_BODY, self.body_deadline)
        else:  # the request is in (or the connection idles between requests: uvicorn's keep-alive timer)
            self._disarm()

    def _expect(self, state: object, seconds: float) -> None:
        self._disarm()
        self._waiting_for = state
        self._deadline = self.loop.call_later(seconds, self._timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = None
        self._waiting_for = None

    def _timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.conn.our_state is h11.IDLE:  # nothing answered yet: say why before closing
            self.transport.write(TIMED_OUT)
        self.transport.close()


def guarded_h11_protocol(max_connections: int, header_timeout: float, body_timeout: float) -> type[H11Protocol]:
    """An :class:`H11Protocol` that answers 503 and closes a connection beyond ``max_connections``, and answers 408
    and closes one whose request head takes over ``header_timeout`` seconds (counted from the connection, or from
    the first byte of a kept-alive connection's next request), or whose body takes over ``body_timeout`` after it."""

    class GuardedH11Protocol(_GuardedH11Protocol):
        max_open_connections = max_connections
        head_timeout = header_timeout
        body_deadline = body_timeout

    return GuardedH11Protocol


def uvicorn_config(app: Any, settings: ServerSettings, **overrides: Any) -> uvicorn.Config:
    """The uvicorn configuration of the service: its address, the guarded protocol and every transport limit."""
    options: dict[str, Any] = {
        "host": settings.host, "port": settings.port,
        "http": guarded_h11_protocol(settings.max_connections, settings.header_timeout, settings.body_timeout),
        "timeout_keep_alive": settings.timeout_keep_alive,
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "timeout_graceful_shutdown": settings.graceful_shutdown_seconds,
        "server_header": False,
    }
    return uvicorn.Config(app, **{**options, **overrides})
