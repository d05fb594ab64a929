"""API-key check for every route but ``/health`` (and the static web page's files), as one ASGI middleware so no
route can be forgotten. Accepts ``Authorization: Bearer KEY`` and the raw key (the llama-index TEI client sends it)."""

from __future__ import annotations

import hmac
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from crossrank.server.errors import error_response

PUBLIC_PATHS = frozenset({"/health"})


def key_matches(header: str | None, key: str) -> bool:
    """Constant-time comparison of the presented credential with the key; the key is never echoed."""
    if not header:
        return False
    token = header.strip()
    scheme, _, rest = token.partition(" ")
    if scheme.lower() == "bearer" and rest:
        token = rest.strip()
    return hmac.compare_digest(token.encode("utf-8", "surrogatepass"), key.encode("utf-8", "surrogatepass"))


class ApiKeyMiddleware:
    def __init__(self, app: ASGIApp, *, api_key: str, is_public: Callable[[str, str], bool]) -> None:
        self.app = app
        self.api_key = api_key
        self.is_public = is_public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS or self.is_public(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        header = None
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                header = value.decode("latin-1")
                break
        if not key_matches(header, self.api_key):
            response = error_response(401, "unauthorized", "missing or wrong API key: send Authorization: Bearer KEY",
                                      {"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
