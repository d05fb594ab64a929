"""Fixtures of the service tests: in-process clients over create_app, and a live uvicorn server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from servertools import API_KEY, LiveServer, MakeClient, start_live_server, stop_live_server

from crossrank.core.settings import ServerSettings
from crossrank.engine import Engine
from crossrank.server.app import create_app


@pytest.fixture
async def make_client(tiny_reranker: Any) -> AsyncIterator[MakeClient]:
    """``await make_client(api_key=..., ...)`` → an httpx client bound to a started app (its lifespan entered)."""
    async with AsyncExitStack() as stack:

        async def make(*, reranker: Any = None, start: bool = True, static_dir: Any = None,
                       **overrides: Any) -> httpx.AsyncClient:
            settings = ServerSettings(**overrides)
            engine = Engine(reranker or tiny_reranker, max_queued_pairs=settings.max_queued_pairs,
                            max_queue_seconds=settings.max_queue_seconds)
            app = create_app(settings, engine, static_dir=static_dir)
            if start:
                await stack.enter_async_context(app.router.lifespan_context(app))
            client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
            client.app = app  # type: ignore[attr-defined]
            return await stack.enter_async_context(client)

        yield make


@pytest.fixture
async def client(make_client: MakeClient) -> httpx.AsyncClient:
    return await make_client()


@pytest.fixture(scope="module")
def live_server(tiny_reranker: Any) -> Iterator[LiveServer]:
    """A started service with an API key, shared by a module's tests."""
    settings = ServerSettings(api_key=API_KEY)
    live = start_live_server(create_app(settings, Engine(tiny_reranker), static_dir=None), settings)
    yield live
    stop_live_server(live)
