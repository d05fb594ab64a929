"""/health from state (no model work, healthy while busy, 503 when stalled) and the queue bound in seconds of work;
the model names a request may give."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
from servertools import FakeReranker, GatedBackend, MakeClient

BODY = {"query": "q", "documents": ["a", "b", "c", "d"]}


async def _gated_client(make_client: MakeClient, tiny_reranker: Any, **settings: Any) -> tuple[Any, threading.Event]:
    gate = threading.Event()
    gate.set()  # let the warm-up through
    client = await make_client(reranker=FakeReranker(tiny_reranker, GatedBackend(tiny_reranker.runtime.backend, gate)),
                               **settings)
    gate.clear()
    client.app.state.engine.runtime.backend.entered.clear()
    return client, gate


async def _until_in_model(engine: Any) -> None:
    """Until a batch waits at the gated backend's door: its request has started, and a later one cannot join it."""
    for _ in range(500):
        if engine.runtime.backend.entered.is_set():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no batch reached the model")


async def test_health_does_no_model_work_and_stays_ok_while_busy(make_client: MakeClient, tiny_reranker: Any) -> None:
    client, gate = await _gated_client(make_client, tiny_reranker)
    engine = client.app.state.engine
    batches = engine.stats().batches
    busy = asyncio.create_task(client.post("/v1/rerank", json=BODY))
    await _until_in_model(engine)
    probes = await asyncio.wait_for(asyncio.gather(*(client.get("/health") for _ in range(50))), 5)
    assert {p.status_code for p in probes} == {200}  # busy is not unhealthy
    assert engine.queued_pairs == len(BODY["documents"])  # the probes queued nothing
    gate.set()
    assert (await busy).status_code == 200
    assert engine.stats().batches == batches + 1  # only the request's own batch ran


async def test_health_is_503_when_queued_work_stalls_or_the_worker_died(make_client: MakeClient,
                                                                         tiny_reranker: Any) -> None:
    client, gate = await _gated_client(make_client, tiny_reranker, health_stall_seconds=0.3)
    engine = client.app.state.engine
    busy = asyncio.create_task(client.post("/v1/rerank", json=BODY))
    await _until_in_model(engine)
    assert (await client.get("/health")).status_code == 200
    await asyncio.sleep(0.5)
    stalled = await client.get("/health")
    assert stalled.status_code == 503 and stalled.json() == {"status": "unavailable"}
    gate.set()
    assert (await busy).status_code == 200
    assert (await client.get("/health")).status_code == 200
    alive, engine._worker = engine._worker, threading.Thread(target=lambda: None)  # a model thread not alive
    try:
        assert (await client.get("/health")).status_code == 503
    finally:
        engine._worker = alive


async def test_a_request_that_cannot_start_in_time_is_503_with_retry_after(make_client: MakeClient,
                                                                           tiny_reranker: Any) -> None:
    client, gate = await _gated_client(make_client, tiny_reranker, max_queue_seconds=0.5)
    engine = client.app.state.engine
    first = asyncio.create_task(client.post("/v1/rerank", json=BODY))
    await _until_in_model(engine)
    engine._pairs_per_second = None  # no throughput known: only the start deadline can refuse it
    late = await client.post("/v2/rerank", json=BODY)
    assert late.status_code == 503 and late.json()["error_type"] == "overloaded"
    assert int(late.headers["retry-after"]) >= 1 and "did not start" in late.json()["error"]
    engine._pairs_per_second = 1.0  # 4 pairs queued at 1 pair/s: 4 s of work, over the 0.5 s bound
    refused = await asyncio.wait_for(client.post("/v1/rerank", json=BODY), 0.4)  # at once, not after waiting
    assert refused.status_code == 503 and int(refused.headers["retry-after"]) >= 3
    assert "s of work" in refused.json()["error"]
    gate.set()
    assert (await first).status_code == 200  # the one that had started is answered


async def test_model_names(make_client: MakeClient, tiny_reranker: Any) -> None:
    default = await make_client()
    last = tiny_reranker.model_name.rstrip("/").rsplit("/", 1)[-1]
    for name in (tiny_reranker.model_name, last, None):
        resp = await default.post("/v1/rerank", json={**BODY, "model": name})
        assert resp.status_code == 200 and resp.json()["model"] == tiny_reranker.model_name
    for path in ("/v1/rerank", "/v2/rerank", "/rerank"):
        wrong = await default.post(path, json={**BODY, "model": "rerank-v3.5"})
        assert wrong.status_code == 404 and wrong.json()["error_type"] == "model_not_found"
        assert "'rerank-v3.5' is not served here" in wrong.json()["error"] and last in wrong.json()["error"]
    assert (await default.post("/rerank", json={"query": "q", "texts": ["a"]})).status_code == 200  # TEI: no model

    aliased = await make_client(served_model_names=("bge-reranker-v2-m3", "BAAI/bge-reranker-v2-m3"))
    resp = await aliased.post("/v2/rerank", json={**BODY, "model": "BAAI/bge-reranker-v2-m3"})
    assert resp.status_code == 200 and resp.json()["model"] == "bge-reranker-v2-m3"
    assert (await aliased.post("/v2/rerank", json={**BODY, "model": last})).status_code == 404
    assert (await aliased.get("/v1/models")).json()["data"][0]["id"] == "bge-reranker-v2-m3"
    assert (await aliased.get("/v1/models/BAAI/bge-reranker-v2-m3")).status_code == 200
    assert (await aliased.get(f"/v1/models/{last}")).status_code == 404

    anything = await make_client(any_model_name=True)
    resp = await anything.post("/v1/rerank", json={**BODY, "model": "rerank-english-v3.0"})
    assert resp.status_code == 200 and resp.json()["model"] == tiny_reranker.model_name


async def test_health_and_info_need_no_model_name(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health")).status_code == 200
    assert (await client.get("/info")).status_code == 200
