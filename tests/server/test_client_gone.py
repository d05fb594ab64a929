"""A client that disconnects loses its place: its pairs never reach the model, and the request counts as a 499.

Over a live uvicorn server on 127.0.0.1, because only a real connection can go away (httpx's in-process transport
cancels the app instead of sending ``http.disconnect``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
import pytest
import torch
from servertools import start_live_server, stop_live_server

from crossrank.core.settings import ServerSettings
from crossrank.engine import Engine
from crossrank.runtime.device import DeviceRuntime
from crossrank.server.app import create_app


class _HeldBackend:
    """The tiny model's backend, counting the sequences it scores; each forward waits for ``gate`` after saying it
    started (``entered``), so "the worker is busy" is a state the test controls."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name, self.device, self.dtype, self.padded = "held", inner.device, inner.dtype, inner.padded
        self.gate, self.entered = threading.Event(), threading.Event()
        self.scored = 0

    def forward(self, batch: Any) -> torch.Tensor:
        self.entered.set()
        assert self.gate.wait(30), "the test never released the model"
        self.scored += len(batch)
        return self.inner.forward(batch)


class _HeldReranker:
    def __init__(self, inner: Any, backend: _HeldBackend) -> None:
        self.settings, self.max_length, self.model_name = inner.settings, inner.max_length, inner.model_name
        self.encode_later, self.describe = inner.encode_later, inner.describe
        self.runtime = DeviceRuntime(backend, inner.settings.max_batch_tokens)


async def _wait_until(condition: Any, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def test_pairs_of_a_client_that_went_away_are_never_scored(tiny_reranker: Any) -> None:
    backend = _HeldBackend(tiny_reranker.runtime.backend)
    backend.gate.set()  # let the warm-up through
    engine = Engine(_HeldReranker(tiny_reranker, backend))  # type: ignore[arg-type]
    app = create_app(ServerSettings(), engine, static_dir=None)
    live = start_live_server(app)
    try:
        scored_after_warm_up = backend.scored
        assert scored_after_warm_up == engine.stats().pairs >= 1
        backend.gate.clear()
        backend.entered.clear()
        async with httpx.AsyncClient(base_url=live.url, timeout=30) as patient:
            blocker = asyncio.create_task(patient.post("/v1/rerank", json={"query": "q", "documents": ["a"] * 4}))
            await _wait_until(lambda: backend.entered.is_set(), "the blocker's batch to hold the model")

            # This client gives up while its 40 pairs wait behind the blocker; its connection closes.
            async with httpx.AsyncClient(base_url=live.url, timeout=0.5) as impatient:
                with pytest.raises(httpx.ReadTimeout):
                    await impatient.post("/v1/rerank", json={"query": "gone", "documents": ["b", "c"] * 20})

            def gone() -> float:
                return app.state.metrics.registry.get_sample_value(
                    "crossrank_requests_total", {"route": "/v1/rerank", "status": "499"}) or 0.0

            await _wait_until(lambda: gone() == 1.0 and engine.queued_pairs == 4, "the server to see the client go")
            backend.gate.set()
            answered = await blocker
            assert answered.status_code == 200 and len(answered.json()["results"]) == 4
            after = await patient.post("/v1/rerank", json={"query": "q", "documents": ["d", "e"]})
            assert after.status_code == 200
            metrics = app.state.metrics.registry
    finally:
        backend.gate.set()
        stop_live_server(live)

    # The blocker's 4 pairs and the last request's 2 went through the model; none of the 40 of the client that left.
    assert backend.scored - scored_after_warm_up == 6
    assert engine.stats().pairs - scored_after_warm_up == 6
    assert metrics.get_sample_value("crossrank_requests_total", {"route": "/v1/rerank", "status": "499"}) == 1.0
    assert metrics.get_sample_value("crossrank_requests_total", {"route": "/v1/rerank", "status": "200"}) == 2.0
