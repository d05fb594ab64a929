"""Endpoints in process: shapes, parity with the library, leniency, and every status code of the contract."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from servertools import API_KEY, MakeClient
from servertools import FakeReranker as _FakeReranker
from servertools import GatedBackend as _GatedBackend

from crossrank.testing import generated_sentences

QUERY = "how do I repair a phone screen"
DOCS = list(generated_sentences(12, seed=5))


def library_order(reranker: Any, docs: list[str] = DOCS, top_k: int | None = None) -> list[tuple[int, float]]:
    return [(r.index, r.score) for r in reranker.rerank(QUERY, docs, top_k=top_k)]


def assert_same_ranking(got: list[tuple[int, float]], expected: list[tuple[int, float]]) -> None:
    assert [i for i, _ in got] == [i for i, _ in expected]
    assert [s for _, s in got] == pytest.approx([s for _, s in expected], abs=1e-6)


@pytest.mark.parametrize("path", ["/v2/rerank", "/v1/rerank", "/rerank"])
async def test_cohere_shape_equals_library(client: httpx.AsyncClient, tiny_reranker: Any, path: str) -> None:
    resp = await client.post(path, json={"model": "tiny-reranker", "query": QUERY, "documents": DOCS, "top_n": 5})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["object"] == "rerank" and body["id"] and body["model"] == tiny_reranker.model_name
    got = [(r["index"], r["relevance_score"]) for r in body["results"]]
    assert_same_ranking(got, library_order(tiny_reranker, top_k=5))
    assert all("document" not in r for r in body["results"])  # omitted, never null
    tokens = sum(len(e) for e in tiny_reranker.encode([(QUERY, d) for d in DOCS]))
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    assert body["meta"]["tokens"]["input_tokens"] == tokens and body["meta"]["billed_units"]["search_units"] == 1
    for header in ("x-compute-time", "x-queue-time", "x-inference-time"):
        assert int(resp.headers[header]) >= 0
    assert resp.headers["x-compute-tokens"] == str(tokens)


async def test_v1_documents_as_objects_and_returned(client: httpx.AsyncClient, tiny_reranker: Any) -> None:
    docs = [{"text": d} if i % 2 else d for i, d in enumerate(DOCS)]
    resp = await client.post("/v1/rerank", json={"query": QUERY, "documents": docs, "return_documents": True})
    body = resp.json()
    assert len(body["results"]) == len(DOCS)  # one per document when top_n is absent
    assert_same_ranking([(r["index"], r["relevance_score"]) for r in body["results"]], library_order(tiny_reranker))
    assert all(r["document"] == {"text": DOCS[r["index"]]} for r in body["results"])
    assert all("raw_score" not in r for r in body["results"]), "raw_score only when asked"


async def test_raw_scores_extension_on_cohere_routes(client: httpx.AsyncClient, tiny_reranker: Any) -> None:
    expected = {r.index: r.raw_score for r in tiny_reranker.rerank(QUERY, DOCS)}
    for route in ("/v1/rerank", "/v2/rerank", "/rerank"):
        body = (await client.post(route, json={"query": QUERY, "documents": DOCS, "raw_scores": True})).json()
        assert {r["index"]: r["raw_score"] for r in body["results"]} == pytest.approx(expected, abs=1e-5)


async def test_tei_body_on_rerank(client: httpx.AsyncClient, tiny_reranker: Any) -> None:
    resp = await client.post("/rerank", json={"query": QUERY, "texts": DOCS, "return_text": True})
    body = resp.json()
    assert isinstance(body, list) and len(body) == len(DOCS)
    assert_same_ranking([(r["index"], r["score"]) for r in body], library_order(tiny_reranker))
    assert all(r["text"] == DOCS[r["index"]] for r in body)
    raw = (await client.post("/rerank", json={"query": QUERY, "texts": DOCS, "raw_scores": True})).json()
    expected = tiny_reranker.rerank(QUERY, DOCS)
    assert [r["score"] for r in raw] == pytest.approx([r.raw_score for r in expected], abs=1e-5)
    assert all("text" not in r for r in raw)


async def test_string_booleans_nulls_and_unknown_fields(client: httpx.AsyncClient, tiny_reranker: Any) -> None:
    # RAGFlow's Xinference provider sends "true"; the cohere SDK and LangChain send explicit nulls.
    body = {"query": QUERY, "documents": DOCS, "return_documents": "true", "top_n": "3", "max_chunks_per_doc": 1,
            "return_len": "true", "max_tokens_per_doc": None, "model": None, "something_new": {"x": 1}}
    resp = await client.post("/v1/rerank", json=body)
    assert resp.status_code == 200, resp.text
    results = resp.json()["results"]
    assert len(results) == 3 and all("document" in r for r in results)
    off = await client.post("/v1/rerank", json={**body, "return_documents": "false", "top_n": None})
    assert all("document" not in r for r in off.json()["results"]) and len(off.json()["results"]) == len(DOCS)
    tei = await client.post("/rerank", json={"query": QUERY, "texts": DOCS, "raw_scores": "false", "return_text": None,
                                             "truncate": "true", "truncation_direction": None, "extra": 1})
    assert tei.status_code == 200 and len(tei.json()) == len(DOCS)


@pytest.mark.parametrize(
    "path,body",
    [
        ("/v1/rerank", {"query": "", "documents": ["a"]}),
        ("/v1/rerank", {"query": "   ", "documents": ["a"]}),
        ("/v2/rerank", {"query": 12, "documents": ["a"]}),
        ("/v2/rerank", {"query": "q", "documents": "a single string"}),
        ("/v2/rerank", {"query": "q", "documents": [1, 2]}),
        ("/v2/rerank", {"query": "q", "documents": ["a"], "top_n": 0}),
        ("/v1/rerank", {"query": "q", "documents": ["a"], "return_documents": "maybe"}),
        ("/v1/rerank", {"documents": ["a"]}),
        ("/rerank", {"query": "q", "texts": ["a"], "truncation_direction": "Left"}),
        ("/rerank", {"query": "q"}),
        ("/rerank", [1, 2, 3]),
    ],
)
async def test_invalid_bodies_are_422(client: httpx.AsyncClient, path: str, body: Any) -> None:
    resp = await client.post(path, json=body)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error_type"] == "validation" and resp.json()["error"]


@pytest.mark.parametrize("content", [b'{"query": "q", "documents": [', b'{"query": "\xff", "documents": ["a"]}',
                                     b"not json"])
async def test_unparsable_json_is_one_400(client: httpx.AsyncClient, content: bytes) -> None:
    resp = await client.post("/v1/rerank", content=content, headers={"content-type": "application/json"})
    assert resp.status_code == 400
    assert resp.json() == {"error": "the request body is not valid JSON (UTF-8 text)", "error_type": "invalid_json"}


@pytest.mark.parametrize("path,key", [("/v1/rerank", "documents"), ("/v2/rerank", "documents"), ("/rerank", "texts"),
                                      ("/rerank", "documents")])
async def test_empty_documents_are_400(client: httpx.AsyncClient, path: str, key: str) -> None:
    resp = await client.post(path, json={"query": "q", key: []})
    assert resp.status_code == 400 and "empty" in resp.json()["error"]


async def test_limits_are_413(make_client: MakeClient, tiny_reranker: Any) -> None:
    client = await make_client(payload_limit=2000, max_client_batch_size=5, max_document_chars=300)
    too_many = await client.post("/v1/rerank", json={"query": "q", "documents": ["a"] * 6})
    assert too_many.status_code == 413 and "max_client_batch_size" in too_many.json()["error"]
    too_long = await client.post("/v1/rerank", json={"query": "q", "documents": ["a" * 301]})
    assert too_long.status_code == 413 and "max_document_chars" in too_long.json()["error"]
    big = await client.post("/v1/rerank", json={"query": "q", "documents": ["word " * 100] * 5})
    assert big.status_code == 413 and big.json()["error_type"] == "payload_too_large"

    async def chunked() -> Any:  # no Content-Length: the limit is enforced while reading
        for _ in range(10):
            yield b" " * 300
        yield b'{"query": "q", "documents": ["a"]}'

    streamed = await client.post("/v1/rerank", content=chunked(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413
    ok = await client.post("/v1/rerank", json={"query": "q", "documents": ["a"] * 5})
    assert ok.status_code == 200


async def test_no_truncation_asked_gives_413(client: httpx.AsyncClient) -> None:
    long_text = " ".join(generated_sentences(200, seed=1))
    strict = await client.post("/rerank", json={"query": "q", "texts": ["short", long_text], "truncate": False})
    assert strict.status_code == 413 and "truncation" in strict.json()["error"]
    cut = await client.post("/rerank", json={"query": "q", "texts": ["short", long_text]})
    assert cut.status_code == 200 and len(cut.json()) == 2  # truncated by default, never an error


async def test_queue_full_is_429_with_retry_after(make_client: MakeClient, tiny_reranker: Any) -> None:
    gate = threading.Event()
    gate.set()  # let the warm-up through
    fake = _FakeReranker(tiny_reranker, _GatedBackend(tiny_reranker.runtime.backend, gate))
    client = await make_client(reranker=fake, max_queued_pairs=6)
    gate.clear()
    first = asyncio.create_task(client.post("/v1/rerank", json={"query": "q", "documents": ["a"] * 4}))
    engine = client.app.state.engine  # type: ignore[attr-defined]
    for _ in range(500):
        if engine.queued_pairs:
            break
        await asyncio.sleep(0.01)
    busy = await client.post("/v1/rerank", json={"query": "q", "documents": ["b"] * 4})
    gate.set()
    assert busy.status_code == 429 and busy.headers["retry-after"] == "1"
    assert busy.json()["error_type"] == "overloaded"
    assert (await first).status_code == 200
    assert (await client.post("/v1/rerank", json={"query": "q", "documents": ["b"] * 4})).status_code == 200


async def test_model_failure_is_a_logged_500_with_request_id(make_client: MakeClient, tiny_reranker: Any,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    class NaNBackend(_GatedBackend):
        def forward(self, batch: Any) -> torch.Tensor:
            return torch.full((len(batch),), float("nan"))

    gate = threading.Event()
    client = await make_client(reranker=_FakeReranker(tiny_reranker, NaNBackend(tiny_reranker.runtime.backend, gate)),
                               start=False)
    app = client.app  # type: ignore[attr-defined]
    app.state.engine.start = _no_warm_up(app.state.engine.start)
    async with app.router.lifespan_context(app):
        with caplog.at_level(logging.ERROR):
            resp = await client.post("/v1/rerank", json={"query": "q", "documents": ["a", "b"]})
    assert resp.status_code == 500 and resp.json()["error_type"] == "internal"
    request_id = resp.headers["x-request-id"]
    assert request_id in resp.json()["error"]
    assert any(request_id in r.getMessage() for r in caplog.records)


def _no_warm_up(start: Any) -> Any:
    async def start_without_warm_up(warm_up: bool = True) -> None:
        await start(warm_up=False)

    return start_without_warm_up


def _protected_paths(app: Any) -> list[tuple[str, str, Any]]:
    """Every documented operation plus FastAPI's own documentation pages, /health excepted."""
    out = [("GET", "/docs", None), ("GET", "/redoc", None), ("GET", "/openapi.json", None)]
    for path, operations in app.openapi()["paths"].items():
        for method in operations:
            if path == "/health":
                continue
            body = {"query": "q", "documents": ["a"]} if method == "post" else None
            out.append((method.upper(), path.replace("{model_id}", "m"), body))
    return out


async def test_api_key_guards_every_route_but_health(make_client: MakeClient) -> None:
    client = await make_client(api_key=API_KEY)
    routes = _protected_paths(client.app)  # type: ignore[attr-defined]
    assert {p for _, p, _ in routes} >= {"/v1/rerank", "/v2/rerank", "/rerank", "/info", "/metrics", "/v1/models",
                                         "/docs", "/openapi.json"}
    for method, path, body in [*routes, ("GET", "/no-such-route", None)]:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "wrong"},
                        {"Authorization": f"Basic {API_KEY}"}):
            resp = await client.request(method, path, json=body, headers=headers)
            assert resp.status_code == 401, (method, path, headers)
            assert API_KEY not in resp.text and resp.json()["error_type"] == "unauthorized"
        for headers in ({"Authorization": f"Bearer {API_KEY}"}, {"Authorization": API_KEY},
                        {"Authorization": f"bearer {API_KEY}"}):
            resp = await client.request(method, path, json=body, headers=headers)
            assert resp.status_code != 401, (method, path, headers)
    assert (await client.get("/health")).status_code == 200


async def test_not_ready_is_503(make_client: MakeClient) -> None:
    client = await make_client(start=False)
    for method, path in [("GET", "/health"), ("GET", "/info"), ("GET", "/v1/models"), ("POST", "/v1/rerank"),
                         ("POST", "/rerank")]:
        resp = await client.request(method, path, json={"query": "q", "documents": ["a"]})
        assert resp.status_code == 503, path


async def test_info_and_models(client: httpx.AsyncClient, tiny_reranker: Any) -> None:
    info = (await client.get("/info")).json()
    assert "reranker" in info["model_type"] and info["max_input_length"] == tiny_reranker.max_length
    assert info["model_dtype"] == "fp32" and info["model_device"] == "cpu"
    models = (await client.get("/v1/models")).json()
    assert models["data"][0]["id"] == tiny_reranker.model_name
    card = await client.get(f"/v1/models/{Path(tiny_reranker.model_name).name}")
    assert card.status_code == 200 and card.json()["model_type"] == "rerank"
    assert (await client.get(f"/v1/models{tiny_reranker.model_name}")).status_code == 200
    unknown = await client.get("/v1/models/not-this-one")
    assert unknown.status_code == 404 and unknown.json()["error_type"] == "model_not_found"


async def test_metrics_count_requests_and_batches(client: httpx.AsyncClient) -> None:
    await client.post("/v1/rerank", json={"query": "q", "documents": ["a", "b"]})
    await client.post("/v1/rerank", json={"query": "q", "documents": []})
    text = (await client.get("/metrics")).text
    assert 'crossrank_requests_total{route="/v1/rerank",status="200"} 1.0' in text
    assert 'crossrank_requests_total{route="/v1/rerank",status="400"} 1.0' in text
    assert "crossrank_batch_size_count" in text and "crossrank_queue_duration_seconds_bucket" in text
    assert "crossrank_queued_pairs 0.0" in text


async def test_cors_closed_by_default_open_when_asked(make_client: MakeClient) -> None:
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    closed = await make_client()
    resp = await closed.options("/v1/rerank", headers=preflight)
    assert "access-control-allow-origin" not in resp.headers
    resp = await closed.post("/v1/rerank", json={"query": "q", "documents": ["a"]}, headers={"Origin": "https://x.example"})
    assert "access-control-allow-origin" not in resp.headers
    opened = await make_client(cors_origins=("https://app.example",), api_key=API_KEY)
    resp = await opened.options("/v1/rerank", headers={**preflight, "Origin": "https://app.example"})
    assert resp.status_code == 200 and resp.headers["access-control-allow-origin"] == "https://app.example"
    resp = await opened.options("/v1/rerank", headers=preflight)
    assert "access-control-allow-origin" not in resp.headers


async def test_static_page_mounted_with_csp_and_public(make_client: MakeClient, tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<!doctype html><title>crossrank</title>")
    (tmp_path / "app.js").write_text("console.log(1)")
    client = await make_client(static_dir=tmp_path, api_key=API_KEY)
    page = await client.get("/")
    assert page.status_code == 200 and "crossrank" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert (await client.get("/app.js")).status_code == 200
    assert (await client.get("/v1/models")).status_code == 401  # the API stays guarded
    assert (await client.get("/missing.js")).status_code == 401
    bare = await make_client(static_dir=None)
    assert (await bare.get("/")).status_code == 404


async def test_request_bodies_are_not_logged(client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    secret = "my-private-document-zq81"
    with caplog.at_level(logging.DEBUG):
        await client.post("/v1/rerank", json={"query": "private query zq81", "documents": [secret]})
        await client.post("/v1/rerank", json={"query": "", "documents": [secret]})
    assert not any("zq81" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
async def test_the_service_on_several_devices_tokenises_in_its_engine_not_in_processes(tiny_model_dir: Any) -> None:
    from crossrank.core.settings import ModelSettings, ServerSettings
    from crossrank.server.app import create_app

    settings = ServerSettings(model=ModelSettings(model=str(tiny_model_dir), device="cpu", devices="cpu,cpu"))
    app = create_app(settings, static_dir=None)
    async with app.router.lifespan_context(app):
        reranker = app.state.engine.reranker
        assert reranker.runtime.devices == ["cpu", "cpu"]
        assert reranker.describe()["tokenizer_processes"] == 0  # the engine tokenises each request itself
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            resp = await client.post("/v1/rerank", json={"query": "q", "documents": ["a b", "c"]})
    assert resp.status_code == 200 and len(resp.json()["results"]) == 2
