"""32 concurrent clients on loopback: every answer equals a sequential library run, and batches mix requests."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import httpx
import pytest
from servertools import API_KEY, LiveServer

from crossrank.testing import generated_sentences

CLIENTS = 32
REQUESTS_PER_CLIENT = 3
DOCS = list(generated_sentences(60, seed=21))


def _request(client_no: int, round_no: int) -> tuple[str, list[str]]:
    start = (client_no * 7 + round_no * 3) % len(DOCS)
    return f"query {client_no} {round_no} about search engines", (DOCS[start:] + DOCS[:start])[:20]


async def test_thirty_two_concurrent_clients(live_server: LiveServer, tiny_reranker: Any) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    answers: dict[tuple[int, int], list[dict[str, Any]]] = {}
    deadline = time.monotonic() + 120  # bounded: a hang fails instead of blocking the suite

    async def one_client(client_no: int, client: httpx.AsyncClient) -> None:
        for round_no in range(REQUESTS_PER_CLIENT):
            assert time.monotonic() < deadline
            query, docs = _request(client_no, round_no)
            resp = await client.post("/v1/rerank", json={"query": query, "documents": docs}, headers=headers)
            assert resp.status_code == 200, resp.text
            answers[client_no, round_no] = resp.json()["results"]

    limits = httpx.Limits(max_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=live_server.url, limits=limits, timeout=60) as client:
        await asyncio.wait_for(asyncio.gather(*(one_client(i, client) for i in range(CLIENTS))), 150)
        metrics = (await client.get("/metrics", headers=headers)).text

    assert len(answers) == CLIENTS * REQUESTS_PER_CLIENT
    for (client_no, round_no), results in answers.items():
        query, docs = _request(client_no, round_no)
        expected = tiny_reranker.rerank(query, docs)
        assert [r["index"] for r in results] == [r.index for r in expected]
        assert [r["relevance_score"] for r in results] == pytest.approx([r.score for r in expected], abs=1e-6)

    single = float(re.search(r'crossrank_batch_requests_bucket\{le="1.0"\} (\S+)', metrics).group(1))  # type: ignore[union-attr]
    total = float(re.search(r"crossrank_batch_requests_count (\S+)", metrics).group(1))  # type: ignore[union-attr]
    assert total > single, "no batch held pairs of more than one request"
