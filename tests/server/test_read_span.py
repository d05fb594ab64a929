"""The ``return_read_span`` extension: which characters of each document the model read, only when asked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from servertools import MakeClient

from crossrank import Reranker
from crossrank.core.tokenize import read_spans

QUERY = "vitamin D deficiency"
LONG = "Low vitamin D levels are linked to fatigue and bone pain. " * 40
DOCS = ["short passage about sunlight", LONG, "Iron deficiency anemia shows up as pale skin."]


async def test_read_span_says_where_a_cut_passage_stops(make_client: MakeClient, tiny_model_dir: Path) -> None:
    reranker = Reranker(str(tiny_model_dir), device="cpu", max_length=64)
    try:
        client = await make_client(reranker=reranker)
        body = {"query": QUERY, "documents": DOCS, "return_read_span": True, "top_n": 2}
        results = (await client.post("/v1/rerank", json=body)).json()["results"]
        plain = (await client.post("/v1/rerank", json={"query": QUERY, "documents": DOCS})).json()["results"]
    finally:
        reranker.close()
    assert all("read_span" not in r for r in plain), "read_span only when asked"
    assert len(results) == 2
    expected = read_spans(reranker.encoder, QUERY, [DOCS[r["index"]] for r in results], [0, 0],
                          long_passages="truncate", overlap=reranker.settings.chunk_overlap)
    assert expected is not None
    assert [r["read_span"] for r in results] == [vars(s) for s in expected]
    spans = {r["index"]: r["read_span"] for r in results}
    if 1 in spans:   # the long passage: read from its start to well before its end
        assert spans[1]["start"] == 0 and 0 < spans[1]["end"] < len(LONG) and spans[1]["windows"] == 1


async def test_read_span_names_the_winning_window(make_client: MakeClient, tiny_model_dir: Path) -> None:
    reranker = Reranker(str(tiny_model_dir), device="cpu", max_length=64, long_passages="chunk", chunk_overlap=8)
    try:
        library = reranker.rerank(QUERY, DOCS)
        client = await make_client(reranker=reranker)
        body: dict[str, Any] = {"query": QUERY, "documents": DOCS, "return_read_span": True}
        results = (await client.post("/v1/rerank", json=body)).json()["results"]
    finally:
        reranker.close()
    by_index = {r["index"]: r["read_span"] for r in results}
    won = {r.index: r.chunk for r in library}
    assert won[1] > 0   # so a route that always said "window 0" would fail
    assert {i: s["window"] for i, s in by_index.items()} == won
    assert by_index[1]["windows"] > 3 and by_index[0] == {"start": 0, "end": len(DOCS[0]), "tokens":
                                                            by_index[0]["tokens"], "window": 0, "windows": 1}


async def test_read_spans_cost_nothing_unless_asked(make_client: MakeClient, monkeypatch: Any) -> None:
    calls: list[int] = []
    monkeypatch.setattr("crossrank.server.routes.read_spans", lambda *a, **k: calls.append(1))
    client = await make_client()
    for path in ("/v1/rerank", "/v2/rerank", "/rerank"):
        assert (await client.post(path, json={"query": QUERY, "documents": DOCS})).status_code == 200
    assert (await client.post("/rerank", json={"query": QUERY, "texts": DOCS})).status_code == 200
    assert calls == []
    body = (await client.post("/v1/rerank", json={"query": QUERY, "documents": DOCS, "return_read_span": True})).json()
    assert calls == [1] and all("read_span" not in r for r in body["results"])   # no offsets: nothing claimed
