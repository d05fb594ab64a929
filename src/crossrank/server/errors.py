"""Errors the routes raise on purpose, and the handlers that turn every error into ``{"error", "error_type"}``."""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from crossrank.engine import (
    EngineNotRunningError,
    InputTooLongError,
    QueueFullError,
    QueueTimeoutError,
    RequestTooLargeError,
)
from crossrank.server.schemas import ErrorResponse

RETRY_AFTER_SECONDS = "1"


class ApiError(Exception):
    """A client-visible error with its status code and a short kind (TEI's ``error_type``)."""

    def __init__(self, status: int, error_type: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.headers = headers or {}


def error_response(status: int, error_type: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorResponse(error=message, error_type=error_type).model_dump()
    return JSONResponse(body, status_code=status, headers=headers)


def engine_error(exc: Exception) -> ApiError:
    """Map the engine's own exceptions to HTTP; anything else is a server error for the caller to handle."""
    if isinstance(exc, QueueFullError):
        return ApiError(429, "overloaded", f"{exc}; retry later", {"Retry-After": RETRY_AFTER_SECONDS})
    if isinstance(exc, (RequestTooLargeError, InputTooLongError)):
        return ApiError(413, "validation", str(exc))
    if isinstance(exc, QueueTimeoutError):
        retry = str(max(1, math.ceil(exc.retry_after)))
        return ApiError(503, "overloaded", f"{exc}; retry later", {"Retry-After": retry})
    if isinstance(exc, EngineNotRunningError):
        return ApiError(503, "unhealthy", str(exc), {"Retry-After": RETRY_AFTER_SECONDS})
    raise exc


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(x) for x in err.get("loc", ()) if x not in ("body",)) or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    async def on_api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.error_type, exc.message, exc.headers)

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        if any(err.get("type") == "json_invalid" for err in exc.errors()):
            return _invalid_json()
        return error_response(422, "validation", _describe_validation(exc))

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400:  # FastAPI's only 400: a body it could not decode (not UTF-8, say)
            return _invalid_json()
        kind = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(exc.status_code, "http")
        return error_response(exc.status_code, kind, str(exc.detail), dict(exc.headers or {}))

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)


def _invalid_json() -> JSONResponse:
    # One answer for every body that is not JSON text (a syntax error, bytes that are not UTF-8), as TEI's 400.
    return error_response(400, "invalid_json", "the request body is not valid JSON (UTF-8 text)")


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route can answer with."""
    return {code: {"model": ErrorResponse, "description": _ERROR_DESCRIPTIONS[code]} for code in codes}


_ERROR_DESCRIPTIONS = {
    400: "Body that is not valid JSON, or an empty document list",
    401: "Missing or wrong API key",
    404: "A model name this service does not serve",
    413: "Body, document count or document length over the limits, or an over-long text with truncate=false",
    415: "Body not sent as application/json",
    422: "Invalid body",
    429: "Queue full; see Retry-After",
    503: "Not ready, shutting down, or the queue holds more than max_queue_seconds of work; see Retry-After",
}
RERANK_ERRORS = error_responses(400, 401, 404, 413, 415, 422, 429, 503)
READ_ERRORS = error_responses(401, 503)
