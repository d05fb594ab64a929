"""The transport limits on a live server (the guarded protocol): sockets that send nothing or send slowly are
answered 408 and closed, connections over the cap are answered 503, oversized heads are refused."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from servertools import LiveServer, start_live_server, stop_live_server

from crossrank.core.settings import ServerSettings
from crossrank.engine import Engine
from crossrank.server.app import create_app

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def strict_server(tiny_reranker: Any) -> Iterator[LiveServer]:
    settings = ServerSettings(max_connections=4, header_timeout=0.5, body_timeout=0.5, timeout_keep_alive=1)
    live = start_live_server(create_app(settings, Engine(tiny_reranker), static_dir=None), settings)
    yield live
    stop_live_server(live)


def _connect(live: LiveServer) -> socket.socket:
    host, port = live.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    """What the server sends until it closes the connection (fails if it keeps it open past the socket timeout)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_a_socket_that_sends_nothing_is_closed(strict_server: LiveServer) -> None:
    with _connect(strict_server) as sock:
        started = time.monotonic()
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408 ") and time.monotonic() - started < 3


def test_a_slow_head_is_closed(strict_server: LiveServer) -> None:
    with _connect(strict_server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.2)
        sock.sendall(b"X-Slow: 1\r\n")  # bytes keep coming, the head never completes
        assert _read_all(sock).startswith(b"HTTP/1.1 408 ")


def test_a_half_sent_body_is_closed(strict_server: LiveServer) -> None:
    with _connect(strict_server) as sock:
        sock.sendall(b"POST /v1/rerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"query\":")
        started = time.monotonic()
        _read_all(sock)
    assert time.monotonic() - started < 3


def test_keep_alive_still_serves_requests_in_turn(strict_server: LiveServer) -> None:
    with httpx.Client(base_url=strict_server.url) as client:
        for _ in range(3):
            assert client.get("/health").status_code == 200
            time.sleep(0.3)  # under the keep-alive timeout: the same connection is reused


def test_connections_over_the_cap_are_answered_503(strict_server: LiveServer) -> None:
    held = [_connect(strict_server) for _ in range(4)]
    try:
        time.sleep(0.1)
        with _connect(strict_server) as extra:
            answer = _read_all(extra)
        assert answer.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 1" in answer
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.2)
    assert httpx.get(strict_server.url + "/health").status_code == 200  # room again once they are gone


def test_an_oversized_head_is_refused(strict_server: LiveServer) -> None:
    headers = "".join(f"X-H{i}: v\r\n" for i in range(10_000))
    with _connect(strict_server) as sock:
        sock.sendall(f"GET /health HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
        answer = _read_all(sock)
    # The protocol bounds a head's bytes as it arrives; a head that arrived whole is counted by the request guard.
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    with _connect(strict_server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 20_000)
        time.sleep(0.1)
        sock.sendall(b"v" * 20_000 + b"\r\n\r\n")
        assert _read_all(sock).startswith(b"HTTP/1.1 431 ")


def test_heads_are_bounded_one_request_at_a_time(strict_server: LiveServer) -> None:
    # Two 10 KB heads in pieces on one kept-alive connection: each under the 16 KiB bound, together over it.
    head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 10_000 + b"\r\n\r\n"
    with _connect(strict_server) as sock:
        for _ in range(2):
            sock.sendall(head[:5_000])
            time.sleep(0.05)
            sock.sendall(head[5_000:])
            answer = sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
