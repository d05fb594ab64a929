"""The checks every request meets before a route: a sane path, a bounded header count, the right method (405 with
an honest ``Allow``, HEAD answered as GET), a JSON content type on bodies; and the security headers every response
carries."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crossrank.server.asgi import HttpMiddleware
from crossrank.server.errors import error_response

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


def with_security_headers(send: Send) -> Send:
    """``send`` that adds :data:`SECURITY_HEADERS` to the response head."""

    async def send_secured(message: Message) -> None:
        if message["type"] == "http.response.start":
            present = {name.lower() for name, _ in message.get("headers", [])}
            message["headers"] = [*message.get("headers", []),
                                  *((n, v) for n, v in SECURITY_HEADERS if n not in present)]
        await send(message)

    return send_secured


def has_control_characters(text: str) -> bool:
    """True for C0 controls and DEL: a decoded path with a NUL or CR/LF is never a real resource."""
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in text)


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class RequestGuardMiddleware(HttpMiddleware):
    """Answers, before any route runs: 404 for control characters in the path, 431 for more than ``max_headers``
    headers, 405 (with ``Allow``) for a method a route does not take, 415 for a body that is not JSON. HEAD on a GET
    route is answered as GET without the body."""

    def __init__(self, app: ASGIApp, *, routes: Sequence[Route], max_headers: int) -> None:
        super().__init__(app)
        self.routes = routes
        self.max_headers = max_headers

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if has_control_characters(scope["path"]):
            # No resource here has control characters in its name: a 404, whatever the route (a model id included).
            await error_response(404, "not_found", "no such path: it holds control characters")(scope, receive, send)
            return
        if len(scope.get("headers", [])) > self.max_headers:
            await error_response(431, "headers_too_large",
                                 f"more than {self.max_headers} request headers")(scope, receive, send)
            return
        allowed = self._methods_here(scope)
        method = scope["method"]
        if allowed and method not in allowed:
            if method == "HEAD" and "GET" in allowed:
                await self.app({**scope, "method": "GET"}, receive, _without_body(send))
                return
            allow = ", ".join(sorted(allowed | ({"HEAD"} if "GET" in allowed else set())))
            await error_response(405, "method_not_allowed", f"{method} is not allowed here; use {allow}",
                                 {"Allow": allow})(scope, receive, send)
            return
        if allowed and method == "POST" and not _is_json(_header(scope, b"content-type")):
            await error_response(415, "unsupported_media_type",
                                 "send the body as JSON with Content-Type: application/json")(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _methods_here(self, scope: Scope) -> set[str]:
        """The methods of the routes whose path matches (empty when none does: static files or a 404)."""
        methods: set[str] = set()
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is not Match.NONE:
                methods |= set(route.methods or ())
        return methods


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return ""


def _without_body(send: Send) -> Send:
    async def send_head(message: Message) -> None:
        if message["type"] == "http.response.body":
            message = {**message, "body": b""}
        await send(message)

    return send_head
