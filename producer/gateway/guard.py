"""The gateway's front door: bearer auth, the body limit and request metrics, as ASGI
middleware that runs before FastAPI routes or parses anything.

With tokens configured, every path needs one except ``OPEN_PATHS``, which probes
and scrapers read and which reveal no session content.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from starlette.datastructures import Headers
from starlette.routing import BaseRoute, Match

from fence.plain_json import nesting_rule, text_nesting
from fence.runs.schema import MAX_METADATA_DEPTH
from fence.validation import InvalidInput
from producer.gateway.console import CONSOLE_PATHS
from producer.gateway.docs import ASSET_PATHS, DOCS_URL, REDOC_URL
from producer.gateway.errors import GatewayError
from producer.gateway.metrics import GatewayMetrics

BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
KNOWN_METHODS = BODY_METHODS | {"GET", "HEAD", "OPTIONS"}
"""Metric labels stay bounded whatever method a client sends."""
OPEN_PATHS = (
    frozenset({"/healthz", "/metrics", "/openapi.json", DOCS_URL, REDOC_URL})
    | ASSET_PATHS
    | CONSOLE_PATHS
)
"""Served without a token (probes, scrapers, the API document and the pages showing it, the
console's page, with their assets); everything else needs one."""
NOT_UTF8 = "body: must be JSON encoded as UTF-8 (found bytes that are not UTF-8)"

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable, Callable], Awaitable[None]]


def check_json_body(headers: Headers, body: bytes) -> GatewayError | None:
    """What a JSON body needs before it is parsed: UTF-8 (RFC 8259), and nesting that
    the parser can take without recursing. Only metadata may nest (at most
    ``MAX_METADATA_DEPTH`` levels, inside the body's object), so deeper is refused
    naming metadata, with the rule ``RunRequest`` gives, or the body."""
    if "json" not in headers.get("content-type", ""):
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return GatewayError.invalid(InvalidInput.at("body", NOT_UTF8))
    depth, member = text_nesting(text)
    if depth <= MAX_METADATA_DEPTH + 1:
        return None
    if member == "metadata":
        return GatewayError.invalid(InvalidInput.at("metadata", nesting_rule(MAX_METADATA_DEPTH)))
    return GatewayError.invalid(InvalidInput.at("body", nesting_rule(MAX_METADATA_DEPTH + 1)))


def _digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


class Guard:
    """ASGI middleware: bearer auth (all but ``OPEN_PATHS``), the body limit, and metrics.

    It runs before FastAPI reads the body, so an oversized request is refused
    (413) without being parsed, and an unauthenticated one (401) without being
    read at all.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        tokens: Sequence[str],
        require_auth: bool,
        max_body: int,
        metrics: GatewayMetrics,
        routes: Sequence[BaseRoute],
    ) -> None:
        self.app = app
        self.digests = [_digest(token.encode()) for token in tokens]
        self.require_auth = require_auth
        self.max_body = max_body
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_tracked(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._guarded(scope, receive, send_tracked)
        finally:
            method = scope["method"] if scope["method"] in KNOWN_METHODS else "other"
            self.metrics.observe(method, self._route(scope), status, time.perf_counter() - started)

    async def _guarded(self, scope: Scope, receive: Callable, send: Callable) -> None:
        headers = Headers(scope=scope)
        protected = self.require_auth and scope["path"] not in OPEN_PATHS
        if protected and not self._authorized(headers.get("authorization")):
            refused = GatewayError(
                401,
                "unauthorized",
                "send 'Authorization: Bearer <token>' with a token from FENCE_API_TOKENS",
                headers={"WWW-Authenticate": 'Bearer realm="fence"'},
            )
            await refused.response()(scope, receive, send)
            return
        if scope["method"] in BODY_METHODS or "content-length" in headers:
            body = await self._read_body(headers, receive)
            if body is None:  # the client went away
                return
            refused = body if isinstance(body, GatewayError) else check_json_body(headers, body)
            if refused is not None:
                await refused.response()(scope, receive, send)
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send)

    def _authorized(self, header: str | None) -> bool:
        """Constant time in the token: every configured token is compared, by digest."""
        scheme, _, credentials = (header or "").partition(" ")
        offered = _digest(credentials.strip().encode("utf-8", "surrogateescape"))
        matched = False
        for digest in self.digests:
            matched |= hmac.compare_digest(digest, offered)
        return matched and scheme.lower() == "bearer"

    async def _read_body(self, headers: Headers, receive: Callable) -> bytes | GatewayError | None:
        """The whole body, the error refusing it, or None when the client disconnected."""
        too_large = GatewayError(
            413,
            "too_large",
            f"body: larger than {self.max_body} bytes (FENCE_API_MAX_BODY_BYTES)",
            field="body",
        )
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                return GatewayError(400, "invalid", "Content-Length: not a number", field="body")
            if int(declared) > self.max_body:
                return too_large
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            if len(body) > self.max_body:
                return too_large
            if not message.get("more_body", False):
                return bytes(body)

    def _route(self, scope: Scope) -> str:
        """The route template (bounded label values), also for requests refused before
        routing."""
        route = scope.get("route")
        if route is None:
            for candidate in self.routes:
                if not hasattr(candidate, "path"):
                    continue
                match, _ = candidate.matches(scope)
                if match is Match.FULL:
                    route = candidate
                    break
        return getattr(route, "path", None) or "unmatched"


def _replay(body: bytes, receive: Callable) -> Callable:
    """A ``receive`` that hands the app the body already read, then the client's own."""
    sent = False

    async def replay() -> MutableMapping[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
