"""Real clients, unmodified, against a live uvicorn server on 127.0.0.1: each must get the library's order."""

from __future__ import annotations

import warnings
from typing import Any

import cohere
import httpx
import pytest
from servertools import API_KEY, LiveServer

# Imported once at collection, not inside tests: importing these large packages in a test while the live server's
# thread imports lazily too can trip CPython 3.11's module-lock race (KeyError in importlib._bootstrap).
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from langchain_cohere import CohereRerank
    from langchain_core.documents import Document
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
    from llama_index.postprocessor.tei_rerank import TextEmbeddingInference

from crossrank.testing import generated_sentences

QUERY = "which vitamin deficiency causes bone pain"
DOCS = list(generated_sentences(10, seed=11))
AUTH = {"Authorization": f"Bearer {API_KEY}"}
MODEL = "tiny-reranker"  # the served model's last path component, one of the names it answers to by default


def library_indices(reranker: Any, docs: list[str] = DOCS, top_k: int | None = None) -> list[int]:
    return [r.index for r in reranker.rerank(QUERY, docs, top_k=top_k)]


def test_cohere_client_v2(live_server: LiveServer, tiny_reranker: Any) -> None:
    client = cohere.ClientV2(api_key=API_KEY, base_url=live_server.url)
    response = client.rerank(model=MODEL, query=QUERY, documents=DOCS, top_n=4)
    assert [r.index for r in response.results] == library_indices(tiny_reranker, top_k=4)
    expected = tiny_reranker.rerank(QUERY, DOCS, top_k=4)
    assert [r.relevance_score for r in response.results] == pytest.approx([r.score for r in expected], abs=1e-6)


def test_cohere_client_v1(live_server: LiveServer, tiny_reranker: Any) -> None:
    client = cohere.Client(api_key=API_KEY, base_url=live_server.url)
    response = client.rerank(model=MODEL, query=QUERY, documents=DOCS, top_n=len(DOCS),
                             return_documents=True)
    assert [r.index for r in response.results] == library_indices(tiny_reranker)
    assert all(r.document is not None and r.document.text == DOCS[r.index] for r in response.results)


def test_cohere_sdk_is_refused_with_a_wrong_key(live_server: LiveServer) -> None:
    client = cohere.ClientV2(api_key="wrong", base_url=live_server.url)
    with pytest.raises(cohere.core.api_error.ApiError) as info:
        client.rerank(model=MODEL, query=QUERY, documents=DOCS)
    assert info.value.status_code == 401


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the SDK leaves its socket to the GC
def test_langchain_cohere_rerank(live_server: LiveServer, tiny_reranker: Any) -> None:
    reranker = CohereRerank(cohere_api_key=API_KEY, base_url=live_server.url, model=MODEL, top_n=3)
    ranked = reranker.rerank(documents=DOCS, query=QUERY)
    assert [r["index"] for r in ranked] == library_indices(tiny_reranker, top_k=3)
    compressed = reranker.compress_documents([Document(page_content=d) for d in DOCS], QUERY)
    assert [d.page_content for d in compressed] == [DOCS[i] for i in library_indices(tiny_reranker, top_k=3)]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the SDK leaves its socket to the GC
def test_llama_index_tei_rerank(live_server: LiveServer, tiny_reranker: Any) -> None:
    # It sends the raw key as Authorization (no "Bearer") and asserts one result per text.
    post = TextEmbeddingInference(base_url=live_server.url, top_n=len(DOCS), auth_token=API_KEY)
    nodes = [NodeWithScore(node=TextNode(text=d), score=0.0) for d in DOCS]
    ranked = post.postprocess_nodes(nodes, QueryBundle(QUERY))
    assert [n.node.get_content() for n in ranked] == [DOCS[i] for i in library_indices(tiny_reranker)]


# Bodies exactly as the platforms' rerank providers send them (REFERENCE.md section 3).

def _indices(results: list[dict[str, Any]], score_key: str = "relevance_score") -> list[int]:
    assert all(0.0 <= r[score_key] <= 1.0 for r in results)
    return [r["index"] for r in results]


def test_dify_openai_compatible_and_localai(live_server: LiveServer, tiny_reranker: Any) -> None:
    body = {"model": MODEL, "query": QUERY, "documents": DOCS, "top_n": 3}
    for path in ("/rerank", "/v1/rerank"):  # base URL with or without /v1
        resp = httpx.post(live_server.url + path, json=body, headers=AUTH)
        assert _indices(resp.json()["results"]) == library_indices(tiny_reranker, top_k=3)


def test_dify_jina_cohere_and_fastgpt(live_server: LiveServer, tiny_reranker: Any) -> None:
    body = {"model": MODEL, "query": QUERY, "documents": DOCS, "top_n": len(DOCS),
            "return_documents": True}
    resp = httpx.post(live_server.url + "/v1/rerank", json=body, headers=AUTH).json()
    assert _indices(resp["results"]) == library_indices(tiny_reranker)
    assert all(r["document"]["text"] == DOCS[r["index"]] for r in resp["results"])
    fastgpt = {"model": MODEL, "query": QUERY, "documents": DOCS}
    resp = httpx.post(live_server.url + "/v1/rerank", json=fastgpt, headers=AUTH).json()
    assert _indices(resp["results"]) == library_indices(tiny_reranker)
    assert all("document" not in r for r in resp["results"])  # null here crashes LiteLLM and Dify's LocalAI


def test_dify_xinference(live_server: LiveServer, tiny_reranker: Any) -> None:
    assert httpx.get(live_server.url + "/v1/cluster/auth", headers=AUTH).status_code == 404
    uid = tiny_reranker.model_name.rstrip("/").rsplit("/", 1)[-1]
    card = httpx.get(f"{live_server.url}/v1/models/{uid}", headers=AUTH).json()
    assert card["model_type"] == "rerank"
    body = {"model": uid, "query": QUERY, "documents": DOCS, "top_n": 5, "max_chunks_per_doc": None,
            "return_documents": True, "return_len": True}
    resp = httpx.post(live_server.url + "/v1/rerank", json=body, headers=AUTH).json()
    assert _indices(resp["results"]) == library_indices(tiny_reranker, top_k=5)
    assert all("document" in r for r in resp["results"])


def test_ragflow_xinference_string_booleans(live_server: LiveServer, tiny_reranker: Any) -> None:
    body = {"model": MODEL, "query": QUERY, "documents": DOCS, "return_documents": "true", "return_len": "true"}
    resp = httpx.post(live_server.url + "/v1/rerank", json=body, headers=AUTH).json()
    assert _indices(resp["results"]) == library_indices(tiny_reranker)
    assert resp["usage"]["total_tokens"] > 0  # RAGFlow's Jina-style check


def test_dify_tei(live_server: LiveServer, tiny_reranker: Any) -> None:
    info = httpx.get(live_server.url + "/info", headers=AUTH).json()
    assert "reranker" in info["model_type"]
    resp = httpx.post(live_server.url + "/rerank", json={"query": QUERY, "texts": DOCS, "return_text": True},
                      headers=AUTH).json()
    assert _indices(resp, "score") == library_indices(tiny_reranker)
    assert all(r["text"] == DOCS[r["index"]] for r in resp)


def test_ragflow_tei_batches_of_eight(live_server: LiveServer, tiny_reranker: Any) -> None:
    scores: dict[int, float] = {}
    for start in range(0, len(DOCS), 8):
        batch = DOCS[start : start + 8]
        body = {"query": QUERY, "texts": batch, "raw_scores": False, "truncate": True}
        resp = httpx.post(live_server.url + "/rerank", json=body, headers=AUTH).json()
        assert len(resp) == len(batch)
        scores.update({start + r["index"]: r["score"] for r in resp})
    expected = tiny_reranker.score([(QUERY, d) for d in DOCS])
    assert [scores[i] for i in range(len(DOCS))] == pytest.approx(expected, abs=1e-6)


def test_langchain_infinity_body(live_server: LiveServer, tiny_reranker: Any) -> None:
    body = {"query": QUERY, "documents": DOCS, "model": MODEL, "return_documents": False, "raw_scores": False}
    resp = httpx.post(live_server.url + "/rerank", json=body, headers=AUTH).json()
    assert _indices(resp["results"]) == library_indices(tiny_reranker)
    assert resp["object"] == "rerank" and resp["model"] == tiny_reranker.model_name
    assert resp["usage"]["prompt_tokens"] == resp["usage"]["total_tokens"] > 0
