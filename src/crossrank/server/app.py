"""The app factory: ``create_app(settings, engine=None)``.

With no engine given, the lifespan loads the model once (off the event loop), warms it up and only then marks the app
ready; tests pass a small engine instead. The engine lives on ``app.state.engine``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request, Response
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crossrank import __version__
from crossrank.core.settings import ServerSettings
from crossrank.engine import Engine
from crossrank.server.auth import ApiKeyMiddleware
from crossrank.server.errors import install_error_handlers
from crossrank.server.guard import RequestGuardMiddleware
from crossrank.server.memory import MemoryReleaser
from crossrank.server.metrics import ServiceMetrics
from crossrank.server.middleware import BodyLimitMiddleware, RequestContextMiddleware
from crossrank.server.routes import CLIENT_GONE, ClientGoneError, router

log = logging.getLogger("crossrank.server")

STATIC_DIR = Path(__file__).parent / "static"
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'"
)


class _WithCsp:
    """Add the page's Content-Security-Policy to every static response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_csp(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
                ]
            await send(message)

        await self.app(scope, receive, send_with_csp)


def public_page_paths(static_dir: Path | None) -> frozenset[str]:
    """The URL paths of the web page's own files, listed once: only these exact paths are public (a browser cannot
    send the key when it loads a page). Matching exact strings, never resolving the request's path on disk, keeps
    ``/v1/models/../../app.js`` (which the router sees as a model id) behind the key."""
    if static_dir is None or not static_dir.is_dir():
        return frozenset()
    paths: set[str] = set()
    for file in static_dir.rglob("*"):
        if file.is_file():
            relative = file.relative_to(static_dir).as_posix()
            paths.add("/" + relative)
            if file.name == "index.html":
                folder = relative[: -len("index.html")]
                paths.add("/" + folder)
    return frozenset(paths)


def _batches_since_last_call(engine: Engine) -> Callable[[], bool]:
    last = -1

    def busy() -> bool:
        nonlocal last
        batches = engine.stats().batches
        changed, last = batches != last, batches
        return changed

    return busy


def create_app(settings: ServerSettings, engine: Engine | None = None, *, static_dir: Path | None = STATIC_DIR
               ) -> FastAPI:
    """Build the service. ``engine``: an engine over an already loaded model (tests); else the model in
    ``settings.model`` is loaded at start-up. The app is ready (``/health`` 200) only after the warm-up."""
    metrics = ServiceMetrics()
    app = FastAPI(
        title="crossrank",
        version=__version__,
        summary="Cross-encoder reranking: Cohere v1/v2, Jina and TEI compatible.",
        lifespan=_lifespan(settings, engine, metrics),
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.engine = engine
    app.state.ready = False
    app.state.started_at = time.time()
    install_error_handlers(app)

    async def on_client_gone(_: Request, __: Exception) -> Response:
        return Response(status_code=CLIENT_GONE)

    app.add_exception_handler(ClientGoneError, on_client_gone)
    app.include_router(router)

    page = public_page_paths(static_dir)
    if page and static_dir is not None:
        app.mount("/", _WithCsp(StaticFiles(directory=static_dir, html=True)), name="static")
    _add_middleware(app, settings, metrics, page)
    return app


def _lifespan(settings: ServerSettings, engine: Engine | None, metrics: ServiceMetrics
              ) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The app's lifespan: load the model unless ``engine`` is given, start and warm up the engine, mark the app
    ready; on shutdown finish what is queued and stop."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        current = engine
        if current is None:
            from crossrank.reranker import Reranker

            log.info("loading model %s", settings.model.model)
            # The engine tokenises requests in the reranker's tokenizer thread (tokenizer processes measured no faster
            # behind HTTP) and batches across requests on the reranker's runtime, one device or several.
            reranker = await asyncio.to_thread(Reranker.from_settings, settings.model, 0)
            current = Engine(reranker, max_queued_pairs=settings.max_queued_pairs,
                             max_queue_seconds=settings.max_queue_seconds)
        current.add_batch_listener(metrics.observe_batch)
        releaser = MemoryReleaser(settings.release_memory_seconds, _batches_since_last_call(current))
        releaser.start()
        metrics.watch_queue(lambda: current.queued_pairs if current is not None else 0)
        metrics.watch_gpu_memory(current.reranker.describe()["devices"])
        await current.start(warm_up=True)
        app.state.engine = current
        app.state.ready = True
        log.info("ready: %r", current.reranker)
        try:
            yield
        finally:
            app.state.ready = False
            await current.stop()  # uvicorn has already waited for open requests; this finishes anything queued
            releaser.stop()
            current.remove_batch_listener(metrics.observe_batch)

    return lifespan


def _add_middleware(app: FastAPI, settings: ServerSettings, metrics: ServiceMetrics, page: frozenset[str]) -> None:
    """The service's middleware around the routes; ``page``: the web page's paths, public when a key is required."""

    def is_page_file(method: str, path: str) -> bool:
        return method in ("GET", "HEAD") and path in page

    # Added innermost first: the request guard, auth, then the body limit, then (outermost of ours) CORS and the
    # request context.
    # FastAPI keeps an included router as one entry of its own: its routes are listed from the router itself.
    api_routes = [r for r in [*app.router.routes, *router.routes] if isinstance(r, Route)]
    app.add_middleware(RequestGuardMiddleware, routes=api_routes, max_headers=settings.max_headers)
    if settings.api_key:
        app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key, is_public=is_page_file)
    app.add_middleware(BodyLimitMiddleware, limit=settings.payload_limit)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"], expose_headers=["x-compute-time", "x-request-id"],
        )
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
