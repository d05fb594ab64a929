"""The endpoints: translate wire bodies into engine calls and engine outcomes back into wire shapes, nothing more."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import math
import uuid
from collections.abc import Coroutine
from typing import Any

from fastapi import APIRouter, Request, Response

from crossrank import __version__
from crossrank.core.inputs import find_lone_surrogate
from crossrank.core.settings import ServerSettings
from crossrank.core.tokenize import read_spans
from crossrank.engine import Engine, RerankOutcome
from crossrank.server.errors import READ_ERRORS, RERANK_ERRORS, ApiError, engine_error, error_responses
from crossrank.server.metrics import ServiceMetrics
from crossrank.server.schemas import (
    AnyRerankRequest,
    BilledUnits,
    CohereRerankRequest,
    HealthResponse,
    InfoResponse,
    Meta,
    ModelCard,
    ModelList,
    ModelType,
    ReadSpan,
    RerankerType,
    RerankResponse,
    RerankResultItem,
    ResultDocument,
    TEIRank,
    TEIRerankRequest,
    Tokens,
    Usage,
)

router = APIRouter()
CLIENT_GONE = 499  # nginx's "client closed request": only ever seen in metrics, nobody is there to read it


class ClientGoneError(Exception):
    pass


def _engine(request: Request) -> Engine:
    engine: Engine | None = getattr(request.app.state, "engine", None)
    if engine is None or not getattr(request.app.state, "ready", False) or not engine.running:
        raise ApiError(503, "unhealthy", "the model is not ready yet (loading or shutting down)",
                       {"Retry-After": "1"})
    return engine


def _settings(request: Request) -> ServerSettings:
    settings: ServerSettings = request.app.state.settings
    return settings


def _metrics(request: Request) -> ServiceMetrics:
    metrics: ServiceMetrics = request.app.state.metrics
    return metrics


async def _wait_for_disconnect(request: Request) -> None:
    # The body has been read already, so the next ASGI message is the disconnect (or the end of the response).
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def _until_disconnected(request: Request, work: Coroutine[Any, Any, RerankOutcome]) -> RerankOutcome:
    """Run ``work``; if the client goes away first, cancel it so its pairs never reach the model."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_for_disconnect(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            # cancel() only asks: wait until the task has finished cancelling (its pairs are then marked dropped),
            # else it is neither cancelled nor done below and task.result() raises InvalidStateError, a 500.
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        raise ClientGoneError
    return task.result()


def served_names(request: Request) -> tuple[str, ...]:
    """The names a request's ``model`` may give, the first being the one responses carry: ``--served-model-name``
    values, else the model id and its last path component (what users type into a platform)."""
    settings = _settings(request)
    if settings.served_model_names:
        return settings.served_model_names
    model_id = _engine(request).reranker.model_name
    return tuple(dict.fromkeys((model_id, model_id.rstrip("/").rsplit("/", 1)[-1])))


def _check_model_name(request: Request, name: str | None, *, in_path: bool = False) -> None:
    if name is None or _settings(request).any_model_name:
        return
    names = served_names(request)
    # In a URL the slashes of a path-like id (/models/x) cannot be told from the URL's own.
    known = {n.strip("/") for n in names} if in_path else set(names)
    if (name.strip("/") if in_path else name) not in known:
        raise ApiError(404, "model_not_found",
                       f"model {name!r} is not served here; this service answers to "
                       + ", ".join(repr(n) for n in names))


def _check_text(query: str, texts: list[str], field: str) -> None:
    """Lone surrogates (JSON's ``"\ud800"``) are not text a tokenizer takes: a 422 naming the field."""
    for i, text in enumerate([query, *texts]):
        at = find_lone_surrogate(text)
        if at is not None:
            name = f"{field}[{i - 1}]" if i else "query"
            raise ApiError(422, "validation", f"invalid request: {name}: a lone surrogate (U+{ord(text[at]):04X}) "
                                              f"at character {at} is not valid Unicode text")


async def _rerank(request: Request, response: Response, query: str, texts: list[str], top_n: int | None,
                  truncate: bool, field: str) -> RerankOutcome:
    """Check the limits, run the engine, set TEI's timing headers."""
    engine = _engine(request)
    settings = _settings(request)
    if not texts:
        raise ApiError(400, "empty", "the list of documents is empty: send at least one document to rank")
    if len(texts) > settings.max_client_batch_size:
        raise ApiError(413, "validation",
                       f"{len(texts)} documents is more than max_client_batch_size={settings.max_client_batch_size}")
    longest = max(max(len(t) for t in texts), len(query))
    if longest > settings.max_document_chars:
        raise ApiError(413, "validation",
                       f"a text of {longest} characters is over max_document_chars={settings.max_document_chars}")
    _check_text(query, texts, field)
    try:
        outcome = await _until_disconnected(request, engine.rerank(query, texts, top_n, truncate=truncate))
    except ClientGoneError:
        raise
    except Exception as exc:
        raise engine_error(exc) from exc
    _metrics(request).observe_rerank(outcome, len(texts))
    ms = lambda seconds: str(round(seconds * 1000))  # noqa: E731 - TEI sends whole milliseconds
    response.headers["x-compute-time"] = ms(outcome.total_seconds)
    response.headers["x-queue-time"] = ms(outcome.queue_seconds)
    response.headers["x-inference-time"] = ms(outcome.inference_seconds)
    response.headers["x-compute-tokens"] = str(outcome.tokens)
    response.headers["x-compute-type"] = str(engine.reranker.settings.device)
    return outcome


async def _read_spans(engine: Engine, query: str, outcome: RerankOutcome) -> list[ReadSpan | None]:
    """Which characters of each result the model read: tokenised again off the event loop, only when asked."""
    reranker = engine.reranker  # its public encoder and settings: how passages were cut or split
    results = outcome.results
    spans = await asyncio.get_running_loop().run_in_executor(
        None, functools.partial(read_spans, reranker.encoder, query, [r.text for r in results],
                                [r.chunk for r in results], long_passages=reranker.settings.long_passages,
                                overlap=reranker.settings.chunk_overlap))
    if spans is None:
        return [None] * len(results)
    return [ReadSpan(**dataclasses.asdict(s)) for s in spans]


def _cohere_response(request: Request, body: CohereRerankRequest, outcome: RerankOutcome,
                     spans: list[ReadSpan | None] | None = None) -> RerankResponse:
    with_text = bool(body.return_documents)
    with_raw = bool(body.raw_scores)
    spans = spans or [None] * len(outcome.results)
    return RerankResponse(
        id=str(uuid.uuid4()),
        model=served_names(request)[0],
        results=[
            RerankResultItem(index=r.index, relevance_score=r.score,
                             document=ResultDocument(text=r.text) if with_text else None,
                             raw_score=r.raw_score if with_raw else None, read_span=span)
            for r, span in zip(outcome.results, spans, strict=True)
        ],
        usage=Usage(prompt_tokens=outcome.tokens, total_tokens=outcome.tokens),
        meta=Meta(billed_units=BilledUnits(search_units=max(1, math.ceil(len(body.documents) / 100))),
                  tokens=Tokens(input_tokens=outcome.tokens)),
    )


async def _cohere(request: Request, response: Response, body: CohereRerankRequest) -> RerankResponse:
    _check_model_name(request, body.model)
    texts = body.texts()
    outcome = await _rerank(request, response, body.query, texts, body.top_n, truncate=True, field="documents")
    spans = await _read_spans(_engine(request), body.query, outcome) if body.return_read_span else None
    return _cohere_response(request, body, outcome, spans)


async def _tei(request: Request, response: Response, body: TEIRerankRequest) -> list[TEIRank]:
    truncate = body.truncate is not False
    outcome = await _rerank(request, response, body.query, body.texts, None, truncate=truncate, field="texts")
    return [TEIRank(index=r.index, score=r.raw_score if body.raw_scores else r.score,
                    text=r.text if body.return_text else None) for r in outcome.results]


RERANK_ROUTE: dict[str, Any] = {"response_model_exclude_none": True, "responses": RERANK_ERRORS}


@router.post("/v2/rerank", response_model=RerankResponse, summary="Cohere v2 rerank", **RERANK_ROUTE)
async def rerank_v2(request: Request, response: Response, body: CohereRerankRequest) -> RerankResponse:
    return await _cohere(request, response, body)


@router.post("/v1/rerank", response_model=RerankResponse, summary="Cohere v1 / Jina rerank", **RERANK_ROUTE)
async def rerank_v1(request: Request, response: Response, body: CohereRerankRequest) -> RerankResponse:
    return await _cohere(request, response, body)


@router.post("/rerank", response_model=RerankResponse | list[TEIRank],
             summary="TEI rerank (texts) or Cohere-style (documents)", **RERANK_ROUTE)
async def rerank_any(request: Request, response: Response, body: AnyRerankRequest) -> RerankResponse | list[TEIRank]:
    if isinstance(body, TEIRerankRequest):
        return await _tei(request, response, body)
    return await _cohere(request, response, body)


@router.get("/health", response_model=HealthResponse, responses={503: {"model": HealthResponse}})
async def health(request: Request, response: Response) -> HealthResponse:
    """Readiness from state, no model work: loaded, model thread alive, queued work moving (busy is healthy)."""
    engine: Engine | None = getattr(request.app.state, "engine", None)
    ready = engine is not None and getattr(request.app.state, "ready", False)
    if ready and engine is not None and engine.health(_settings(request).health_stall_seconds).ok:
        return HealthResponse(status="ok")
    response.status_code = 503
    return HealthResponse(status="unavailable")


def _model_card(request: Request) -> ModelCard:
    engine = _engine(request)
    return ModelCard(id=served_names(request)[0], created=int(request.app.state.started_at),
                     max_input_length=engine.reranker.max_length)


@router.get("/info", response_model=InfoResponse, responses=READ_ERRORS)
async def info(request: Request) -> InfoResponse:
    engine = _engine(request)
    settings = _settings(request)
    described = engine.reranker.describe()
    return InfoResponse(
        model_id=engine.reranker.model_name, model_dtype=described["dtype"], model_device=described["device"],
        backend=described["backend"],
        model_type=ModelType(reranker=RerankerType(id2label={"0": "LABEL_0"}, label2id={"LABEL_0": 0})),
        max_input_length=engine.reranker.max_length, max_batch_tokens=engine.max_batch_tokens,
        max_client_batch_size=settings.max_client_batch_size, max_queued_pairs=engine.max_queued_pairs,
        payload_limit=settings.payload_limit, version=__version__,
    )


@router.get("/v1/models", response_model=ModelList, responses=READ_ERRORS)
async def list_models(request: Request) -> ModelList:
    return ModelList(data=[_model_card(request)])


@router.get("/v1/models/{model_id:path}", response_model=ModelCard, responses={**READ_ERRORS, **error_responses(404)})
async def get_model(request: Request, model_id: str) -> ModelCard:
    card = _model_card(request)
    _check_model_name(request, model_id, in_path=True)
    return card


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}, **READ_ERRORS})
async def metrics(request: Request) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST

    return Response(_metrics(request).render(), media_type=CONTENT_TYPE_LATEST)

