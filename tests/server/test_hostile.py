"""What a hostile or careless client sends, in process: odd paths, wrong methods and media types, malformed text,
header floods; and the security headers every answer carries."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
from servertools import API_KEY, MakeClient

AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
def page_dir(tmp_path: Path) -> Path:
    (tmp_path / "index.html").write_text("<!doctype html><title>crossrank</title>")
    (tmp_path / "app.js").write_text("console.log(1)")
    return tmp_path


@pytest.mark.parametrize("path", ["/%00", "/index.html%00", "/v1/rerank%00", "/%0d%0aINFO:%20FAKE%00"])
async def test_control_characters_in_the_path_are_a_clean_4xx(make_client: MakeClient, page_dir: Path, path: str,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    keyed = await make_client(static_dir=page_dir, api_key=API_KEY)
    open_service = await make_client(static_dir=page_dir)
    with caplog.at_level(logging.DEBUG):
        assert (await keyed.get(path)).status_code == 401
        for client, headers in ((keyed, AUTH), (open_service, {})):
            resp = await client.get(path, headers=headers)
            assert resp.status_code == 404 and "control characters" in resp.json()["error"]
    assert not any("\n" in r.getMessage() or r.exc_info for r in caplog.records)


@pytest.mark.parametrize("path", ["/v1/models/..%2F..%2Fapp.js", "/v1/models/..%2Fapp.js", "/info/..%2Fapp.js",
                                  "/.%2Fapp.js"])
async def test_no_route_is_public_through_a_page_file_name(make_client: MakeClient, page_dir: Path,
                                                           path: str) -> None:
    client = await make_client(static_dir=page_dir, api_key=API_KEY)
    resp = await client.get(path)
    assert resp.status_code == 401, resp.text
    assert "tiny" not in resp.text  # nothing about the model, its name or its path
    for public in ("/", "/index.html", "/app.js"):
        assert (await client.get(public)).status_code == 200, public


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/rerank", b'{"query": "q \\ud800", "documents": ["a"]}'),
    ("/v2/rerank", b'{"query": "q", "documents": ["a", "b \\udfff"]}'),
    ("/rerank", b'{"query": "q", "documents": [{"text": "\\ud83d"}]}'),
    ("/rerank", b'{"query": "q", "texts": ["fine", "x\\ud800y"]}'),
])
async def test_lone_surrogates_are_422_naming_the_field(client: httpx.AsyncClient, path: str, body: bytes) -> None:
    resp = await client.post(path, content=body, headers={"content-type": "application/json"})
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert resp.json()["error_type"] == "validation" and "lone surrogate" in error
    expected = {b"q \\ud800": "query:", b"b \\udfff": "documents[1]:", b"\\ud83d": "documents[0]:",
                b"x\\ud800y": "texts[1]:"}
    assert any(field in error for marker, field in expected.items() if marker in body), error


async def test_wrong_methods_are_405_with_the_true_allow(make_client: MakeClient, page_dir: Path) -> None:
    client = await make_client(static_dir=page_dir, api_key=API_KEY)
    for method, path, allow in [("GET", "/v1/rerank", "POST"), ("OPTIONS", "/v1/rerank", "POST"),
                                ("PUT", "/rerank", "POST"), ("DELETE", "/v1/models/x", "GET, HEAD"),
                                ("POST", "/health", "GET, HEAD"), ("PATCH", "/info", "GET, HEAD")]:
        resp = await client.request(method, path, headers=AUTH)
        assert resp.status_code == 405, (method, path, resp.status_code)
        assert resp.headers["allow"] == allow and resp.json()["error_type"] == "method_not_allowed"
    head = await client.head("/health")
    assert head.status_code == 200 and head.content == b""
    assert (await client.head("/info", headers=AUTH)).status_code == 200
    assert (await client.get("/no-such-file.js", headers=AUTH)).status_code == 404


@pytest.mark.parametrize("headers", [{"content-type": "text/plain"},
                                     {"content-type": "application/x-www-form-urlencoded"}, {}])
async def test_a_body_that_is_not_json_is_415(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    resp = await client.post("/v1/rerank", content=b'{"query": "q", "documents": ["a"]}', headers=headers)
    assert resp.status_code == 415 and resp.json()["error_type"] == "unsupported_media_type"
    ok = await client.post("/v1/rerank", content=b'{"query": "q", "documents": ["a"]}',
                           headers={"content-type": "application/json; charset=utf-8"})
    assert ok.status_code == 200


async def test_too_many_headers_is_431(client: httpx.AsyncClient) -> None:
    many = [(f"x-h{i}", "v") for i in range(150)]
    assert (await client.get("/health", headers=many)).status_code == 431
    assert (await client.get("/health", headers=many[:50])).status_code == 200


async def test_every_answer_carries_the_security_headers(make_client: MakeClient, page_dir: Path) -> None:
    client = await make_client(static_dir=page_dir, api_key=API_KEY)
    answers = [await client.get("/"), await client.get("/app.js"), await client.get("/health"),
               await client.get("/info"), await client.get("/info", headers=AUTH),
               await client.get("/nothing", headers=AUTH), await client.get("/v1/rerank", headers=AUTH),
               await client.post("/v1/rerank", json={"query": "q", "documents": ["a"]}, headers=AUTH)]
    assert {r.status_code for r in answers} == {200, 401, 404, 405}
    for resp in answers:
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert resp.headers["x-frame-options"] == "DENY"
        assert resp.headers["referrer-policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in answers[0].headers["content-security-policy"]
