"""Pure ASGI middlewares: request ids, metrics and the last-resort 500; the request body size limit."""

from __future__ import annotations

import logging
import time
import uuid

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crossrank.server.asgi import HttpMiddleware
from crossrank.server.errors import error_response
from crossrank.server.guard import with_security_headers
from crossrank.server.metrics import ServiceMetrics

log = logging.getLogger("crossrank.server")


class RequestContextMiddleware(HttpMiddleware):
    """Give each request an id (``x-request-id``) and the security headers, count it by route template and status,
    and turn an unhandled exception into a logged 500 carrying that id. Bodies are never logged; paths are logged
    escaped (a path may carry CR/LF)."""

    def __init__(self, app: ASGIApp, *, metrics: ServiceMetrics) -> None:
        super().__init__(app)
        self.metrics = metrics

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        send = with_security_headers(send)
        request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("internal error in %s %s (request id %s)", scope["method"], ascii(scope["path"]),
                          request_id)
            status = 500
            if not response_started:
                response = error_response(500, "internal", f"internal server error (request id {request_id})",
                                          {"x-request-id": request_id})
                await response(scope, receive, send)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(label, str(status)).inc()
            self.metrics.request_seconds.labels(label).observe(time.perf_counter() - started)


class _BodyTooLarge(StarletteHTTPException):
    """An HTTPException so that FastAPI, reading the body, passes it on to the error handlers as a 413."""

    def __init__(self, message: str) -> None:
        super().__init__(status_code=413, detail=message)


class BodyLimitMiddleware(HttpMiddleware):
    """413 for a body over ``limit`` bytes: at once from Content-Length, or while reading a chunked body."""

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        super().__init__(app)
        self.limit = limit

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"request body is larger than the payload limit of {self.limit} bytes"
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.limit
                except ValueError:
                    too_big = False
                if too_big:
                    await error_response(413, "payload_too_large", message)(scope, receive, send)
                    return
        received = 0
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > self.limit:
                    raise _BodyTooLarge(message)
            return msg

        async def tracking_send(msg: Message) -> None:
            nonlocal response_started
            if msg["type"] == "http.response.start":
                response_started = True
            await send(msg)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if not response_started:
                await error_response(413, "payload_too_large", message)(scope, receive, send)
