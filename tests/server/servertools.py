"""Helpers of the service tests: the test API key and a live uvicorn server on 127.0.0.1 in a thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import torch

from crossrank.runtime.device import DeviceRuntime

API_KEY = "test-key-123"

MakeClient = Callable[..., Awaitable[httpx.AsyncClient]]


@dataclass
class LiveServer:
    url: str
    app: Any
    server: Any
    thread: threading.Thread


def start_live_server(app: Any, settings: Any = None) -> LiveServer:
    """uvicorn on 127.0.0.1 at a free port, in a thread of this process, configured as ``crossrank serve`` configures
    it (the guarded protocol and limits of ``settings``); returns once it accepts connections."""
    import uvicorn

    from crossrank.core.settings import ServerSettings
    from crossrank.server.protocol import uvicorn_config

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn_config(app, settings or ServerSettings(), log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the live server did not start")
        time.sleep(0.02)
    return LiveServer(f"http://127.0.0.1:{port}", app, server, thread)


def stop_live_server(live: LiveServer) -> None:
    live.server.should_exit = True
    live.thread.join(30)


class GatedBackend:
    """The tiny model's backend, held at the door until ``gate`` is set: makes "busy" deterministic."""

    def __init__(self, inner: Any, gate: threading.Event) -> None:
        self.inner, self.gate = inner, gate
        self.entered = threading.Event()  # set when a batch reaches the door
        self.name, self.device, self.dtype, self.padded = "gated", inner.device, inner.dtype, inner.padded

    def forward(self, batch: Any) -> torch.Tensor:
        self.entered.set()
        self.gate.wait(30)
        return self.inner.forward(batch)


class FakeReranker:
    def __init__(self, inner: Any, backend: Any) -> None:
        self.settings, self.max_length, self.model_name = inner.settings, inner.max_length, inner.model_name
        self.encode_later, self.describe = inner.encode_later, inner.describe
        self.runtime = DeviceRuntime(backend, inner.settings.max_batch_tokens)
