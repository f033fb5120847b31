"""The HTTP gateway: enqueue and follow agent runs from any language.

``create_app`` builds the FastAPI app over a ``Producer`` (so validation,
idempotency and double-texting behave exactly as in the Python client);
``serve`` runs it with uvicorn and refuses to listen beyond loopback without
bearer tokens; ``python -m producer.gateway --host 127.0.0.1 --port 8000``
does that from the command line. FastAPI is the optional ``api`` extra, so
only ``producer/gateway*.py`` import it.

Every error, whatever raised it, has one shape::

    {"error": {"code": "invalid", "message": "message: must be a non-empty string",
               "field": "message", "run_id": null, "details": [...]}}

With tokens configured, every path needs one except ``/healthz``,
``/metrics`` and the API document (``/openapi.json``, ``/docs``, ``/redoc``),
which probes and scrapers read and which reveal no session content.

History pages go newest first: ``GET .../messages?limit=50`` gives the newest
50 and ``next_before_seq``; pass it as ``before_seq`` for the older ones.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import ipaddress
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any
from urllib.parse import unquote

import anyio
import anyio.to_thread
import redis
from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route

from fence.memory.sqlite import MissingDatabaseError
from fence.memory.url import memory_factory
from fence.messages import validate_session_id
from fence.plain_json import nesting_rule, text_nesting
from fence.runs import IdempotencyConflict, RunNotFound, RunRecord, RunState, RunStore, RunTimeout
from fence.runs.schema import MAX_METADATA_DEPTH
from fence.settings import InvalidSettingsError, Settings, get_settings
from fence.validation import InvalidInput, clip, problem
from producer.client import Producer
from producer.gateway_metrics import GatewayMetrics
from producer.gateway_models import (
    NAME_SCHEMA,
    ComponentHealth,
    ErrorDetail,
    ErrorResponse,
    FieldProblem,
    HealthResponse,
    HistoryPage,
    MessageView,
    RunView,
    SessionView,
    SubmitBody,
    SubmitResponse,
)

log = logging.getLogger("fence.gateway")

MAX_WAIT_S = 60.0
"""Longest long poll; a client wanting longer polls again."""
MAX_CONCURRENT_WAITS = 256
"""Long polls blocked in threads at once; more queue for a thread (their own limiter, so
waiting clients never starve the threads that serve submits)."""
QUEUED_SHOWN = 100
MAX_HISTORY_PAGE = 500
HEALTH_TIMEOUT_S = 3.0
HEALTH_SESSION = "fence-healthz"
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
KNOWN_METHODS = BODY_METHODS | {"GET", "HEAD", "OPTIONS"}
"""Metric labels stay bounded whatever method a client sends."""
OPEN_PATHS = frozenset({"/healthz", "/metrics", "/openapi.json", "/docs", "/redoc"})
"""Served without a token (probes, scrapers, the API document); everything else needs one."""
NOT_JSON = "body: must be a JSON object sent with 'Content-Type: application/json'"
NOT_UTF8 = "body: must be JSON encoded as UTF-8 (found bytes that are not UTF-8)"
NO_DATABASE = (
    "history: the memory database (FENCE_MEMORY) does not exist yet; no turn has been written to it"
)

ASGIApp = Callable[[MutableMapping[str, Any], Callable, Callable], Awaitable[None]]
Scope = MutableMapping[str, Any]


class GatewayConfigError(ValueError):
    """The gateway was asked to start in a way that would be unsafe or cannot work."""


class GatewayError(Exception):
    """An HTTP error in the gateway's one error shape."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        run_id: str | None = None,
        details: Sequence[FieldProblem] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers
        self.detail = ErrorDetail(
            code=code, message=message, field=field, run_id=run_id, details=list(details)
        )

    def response(self) -> JSONResponse:
        body = ErrorResponse(error=self.detail).model_dump(mode="json")
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def _error(status: int, code: str, message: str, **fields: Any) -> JSONResponse:
    return GatewayError(status, code, message, **fields).response()


# -- turning validation failures into "which field, which rule" ------------------------------


def _problems(errors: Iterable[dict[str, Any]]) -> list[FieldProblem]:
    """Field and message of each pydantic error, without the offending input."""
    problems = []
    for error in errors:
        loc = [str(part) for part in error.get("loc", ())]
        if loc and loc[0] in {"body", "path", "query", "header", "cookie"}:
            loc = loc[1:]
        if error.get("type") == "json_invalid":
            detail = (error.get("ctx") or {}).get("error", "")
            problems.append(FieldProblem(field="body", message=f"body: invalid JSON ({detail})"))
            continue
        if error.get("type") == "extra_forbidden":
            message = f"unknown field; allowed: {', '.join(SubmitBody.model_fields)}"
        else:
            message = str(error.get("msg", "invalid"))
        found = problem(loc or ["body"], message)
        problems.append(FieldProblem(field=found.field, message=found.message))
    return problems or [FieldProblem(field=None, message="invalid request")]


def _invalid(problems: list[FieldProblem]) -> GatewayError:
    first = problems[0]
    return GatewayError(422, "invalid", first.message, field=first.field, details=problems)


REQUEST_FIELDS = frozenset({"session_id", *SubmitBody.model_fields})


def _invalid_from_value_error(error: ValueError) -> GatewayError | None:
    """``Producer`` and the validators say ``"field: rule"``; keep that split. A ValueError
    naming no request field is not the client's fault (None: let it be a 500)."""
    if isinstance(error, InvalidInput):
        return _invalid([FieldProblem(field=p.field, message=p.message) for p in error.problems])
    text = str(error)
    field, sep, _ = text.partition(":")
    if not sep or field not in REQUEST_FIELDS:
        return None
    return _invalid([FieldProblem(field=field, message=text)])


def _check_json_body(headers: Headers, body: bytes) -> GatewayError | None:
    """What a JSON body needs before it is parsed: UTF-8 (RFC 8259), and nesting that
    the parser can take without recursing. Only metadata may nest (at most
    ``MAX_METADATA_DEPTH`` levels, inside the body's object), so deeper is refused
    naming metadata, with the rule ``RunRequest`` gives, or the body."""
    if "json" not in headers.get("content-type", ""):
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return _invalid([FieldProblem(field="body", message=NOT_UTF8)])
    depth, member = text_nesting(text)
    if depth <= MAX_METADATA_DEPTH + 1:
        return None
    if member == "metadata":
        message = f"metadata: {nesting_rule(MAX_METADATA_DEPTH)}"
        return _invalid([FieldProblem(field="metadata", message=message)])
    message = f"body: {nesting_rule(MAX_METADATA_DEPTH + 1)}"
    return _invalid([FieldProblem(field="body", message=message)])


def _check_session(session_id: str) -> str:
    try:
        return validate_session_id(session_id)
    except ValueError as error:
        raise _invalid([FieldProblem(field="session_id", message=str(error))]) from None


def _slashed_session(request: Request, routes: Iterable[Any]) -> GatewayError | None:
    """Starlette decodes ``%2F`` before routing, so ``/v1/sessions/a%2Fb`` matches no
    route. Matched on the path as sent, it is a session route with an invalid session
    id: the 422 naming ``session_id``, not "no such path"."""
    raw_path = request.scope.get("raw_path")
    if raw_path is None:
        return None
    for route in routes:
        if not isinstance(route, Route) or "session_id" not in route.param_convertors:
            continue
        match = route.path_regex.match(raw_path.decode("latin-1"))
        if match and request.method in (route.methods or ()):
            try:
                _check_session(unquote(match["session_id"]))
            except GatewayError as invalid:
                return invalid
    return None


# -- the guard: auth and body size, before routing or parsing ---------------------------------


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
        routes: Callable[[], Sequence[Any]],
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
            response = _error(
                401,
                "unauthorized",
                "send 'Authorization: Bearer <token>' with a token from FENCE_API_TOKENS",
                headers={"WWW-Authenticate": 'Bearer realm="fence"'},
            )
            await response(scope, receive, send)
            return
        if scope["method"] in BODY_METHODS or "content-length" in headers:
            body = await self._read_body(headers, receive)
            if isinstance(body, JSONResponse):
                await body(scope, receive, send)
                return
            if body is None:  # the client went away
                return
            refused = _check_json_body(headers, body)
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

    async def _read_body(self, headers: Headers, receive: Callable) -> bytes | JSONResponse | None:
        too_large = _error(
            413,
            "too_large",
            f"body: larger than {self.max_body} bytes (FENCE_API_MAX_BODY_BYTES)",
            field="body",
        )
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                return _error(400, "invalid", "Content-Length: not a number", field="body")
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
        """The route template (bounded label values), also for requests refused before routing."""
        route = scope.get("route")
        if route is None:
            for candidate in self.routes():
                if not hasattr(candidate, "path"):
                    continue
                match, _ = candidate.matches(scope)
                if match is Match.FULL:
                    route = candidate
                    break
        return getattr(route, "path", None) or "unmatched"


def _replay(body: bytes, receive: Callable) -> Callable:
    sent = False

    async def replay() -> MutableMapping[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


# -- the app ----------------------------------------------------------------------------------


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        400: "Malformed request framing (bad Content-Length).",
        401: "Missing or wrong bearer token.",
        404: "No such run (never accepted, or its record expired); error.run_id is the id "
        "asked for.",
        409: "Refused: the session is busy and the strategy is reject (error.code rejected; "
        "the run is recorded as rejected), or the idempotency key was first used with a "
        "different request (error.code idempotency_conflict). error.run_id names the run.",
        413: "The request body is larger than FENCE_API_MAX_BODY_BYTES.",
        422: "Invalid input; error.field names the field and error.message the rule "
        "(body: not JSON, not UTF-8, or nested too deep).",
        503: "Redis or the memory backend is unreachable.",
    }
    return {s: {"model": ErrorResponse, "description": descriptions[s]} for s in statuses}


SessionId = Annotated[
    str,
    Path(description="The session (conversation) id.", json_schema_extra=NAME_SCHEMA),
]
RunId = Annotated[str, Path(description="A run id returned by submit.")]


def create_app(
    settings: Settings | None = None,
    producer: Producer | None = None,
    *,
    require_auth: bool | None = None,
) -> FastAPI:
    """Build the gateway. ``require_auth`` defaults to "tokens are configured"; whether it
    may be off is the launcher's decision (``serve`` allows that only on loopback)."""
    settings = settings or (producer.settings if producer else get_settings())
    if require_auth is None:
        require_auth = bool(settings.api_tokens)
    if require_auth and not settings.api_tokens:
        raise GatewayConfigError("auth is required but FENCE_API_TOKENS names no token")
    if producer is None:
        producer = Producer(settings=settings)
    if settings.default_agent not in producer.agents:  # loads FENCE_AGENTS: fails at start
        log.warning(
            "FENCE_DEFAULT_AGENT %r is not in FENCE_AGENTS (%s): requests must name an agent",
            settings.default_agent,
            ", ".join(sorted(producer.agents)),
        )
    store = producer.store
    open_memory = memory_factory(settings.memory)
    read_history = memory_factory(settings.memory, missing_ok=False)  # creates no database
    probe = redis.Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_timeout=HEALTH_TIMEOUT_S,
        socket_connect_timeout=HEALTH_TIMEOUT_S,
    )
    metrics = GatewayMetrics(RunStore(probe, settings))
    limiters: list[anyio.CapacityLimiter] = []

    def wait_limiter() -> anyio.CapacityLimiter:
        if not limiters:  # made on the event loop, on first use
            limiters.append(anyio.CapacityLimiter(MAX_CONCURRENT_WAITS))
        return limiters[0]

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        probe.close()
        store.redis.close()

    app = FastAPI(
        title="Fence gateway",
        version="1",
        description="Enqueue agent runs keyed by session and follow them. Errors always have "
        "the shape {error: {code, message, field, run_id, details}}.",
        lifespan=lifespan,
    )
    app.state.producer = producer

    def routes() -> list[Any]:
        return [*v1.routes, *app.router.routes]

    app.add_middleware(
        Guard,
        tokens=settings.api_tokens,
        require_auth=require_auth,
        max_body=settings.api_max_body_bytes,
        metrics=metrics,
        routes=routes,
    )
    _install_error_handlers(app, routes)

    bearer = HTTPBearer(auto_error=False, description="A token from FENCE_API_TOKENS.")
    v1 = APIRouter(
        prefix="/v1",
        dependencies=[Depends(bearer)] if require_auth else [],
        responses=_errors(400, 401, 413, 422, 503) if require_auth else _errors(400, 413, 422, 503),
    )

    @v1.post(
        "/sessions/{session_id}/runs",
        status_code=202,
        response_model=SubmitResponse,
        responses=_errors(409),
        summary="Submit a run to a session",
    )
    def submit_run(
        session_id: SessionId,
        body: SubmitBody,
        response: Response,
        idempotency_header: Annotated[
            str | None,
            Header(
                alias="Idempotency-Key",
                description="The same as the body's idempotency_key (give one, or both equal).",
                json_schema_extra=NAME_SCHEMA,
            ),
        ] = None,
    ) -> SubmitResponse:
        """Accepted means durable: the run is in Redis before this answers."""
        key = body.idempotency_key
        if idempotency_header is not None and key is not None and idempotency_header != key:
            raise _invalid(
                [
                    FieldProblem(
                        field="idempotency_key",
                        message="idempotency_key: the Idempotency-Key header and the body's "
                        "idempotency_key differ",
                    )
                ]
            )
        try:
            run = producer.submit(
                session_id,
                body.message,
                agent=body.agent,
                idempotency_key=key if key is not None else idempotency_header,
                strategy=body.strategy,
                metadata=body.metadata,
            )
        except IdempotencyConflict as conflict:
            raise GatewayError(
                409,
                "idempotency_conflict",
                str(conflict),
                field="idempotency_key",
                run_id=conflict.run_id,
            ) from None
        except ValueError as error:
            invalid = _invalid_from_value_error(error)
            if invalid is None:
                raise
            raise invalid from None
        state, position = RunState.QUEUED, run.position
        if run.position < 0:  # rejected, or an earlier run with this idempotency key
            record = run.status()
            state, position = record.state, None
            if record.state is RunState.REJECTED:
                raise GatewayError(
                    409,
                    "rejected",
                    record.error or "session is busy and strategy is reject",
                    run_id=run.id,
                )
        response.headers["Location"] = f"/v1/runs/{run.id}"
        return SubmitResponse(
            run_id=run.id, session_id=run.session_id, state=state, position=position
        )

    @v1.get(
        "/runs/{run_id}",
        response_model=RunView,
        responses=_errors(404),
        summary="Get a run, optionally waiting for it to finish",
    )
    async def get_run(
        run_id: RunId,
        wait: Annotated[
            float | None,
            Query(
                ge=0,
                le=MAX_WAIT_S,
                allow_inf_nan=False,
                description=f"Seconds to wait for the run to finish (at most {MAX_WAIT_S:g}); "
                "the answer is the record then, finished or not.",
            ),
        ] = None,
    ) -> RunView:
        if not wait:
            return RunView.of(await anyio.to_thread.run_sync(store.get, run_id))

        def wait_for_run() -> RunRecord:
            try:
                return store.wait(run_id, wait)
            except RunTimeout:
                return store.get(run_id)

        record = await anyio.to_thread.run_sync(wait_for_run, limiter=wait_limiter())
        return RunView.of(record)

    @v1.post(
        "/runs/{run_id}/cancel",
        response_model=RunView,
        responses=_errors(404),
        summary="Cancel a run",
    )
    def cancel_run(run_id: RunId) -> RunView:
        """A queued run leaves the queue; a running one stops at its next step and commits
        nothing (``cancel_requested`` is true until it does). A finished run is unchanged."""
        return RunView.of(store.cancel(run_id))

    @v1.get(
        "/sessions/{session_id}",
        response_model=SessionView,
        summary="A session's run in flight and queue",
    )
    def get_session(session_id: SessionId) -> SessionView:
        _check_session(session_id)
        info = store.session(session_id, queued_limit=QUEUED_SHOWN)
        return SessionView(
            session_id=session_id,
            state=info.state,
            active_run=info.active_run,
            queued=info.queued,
            queued_count=info.queued_count,
        )

    @v1.get(
        "/sessions/{session_id}/messages",
        response_model=HistoryPage,
        responses={
            404: {
                "model": ErrorResponse,
                "description": "FENCE_MEMORY names a SQLite file that does not exist yet: "
                "no turn has been written to it (reading creates none).",
            }
        },
        summary="A session's history, newest first",
    )
    def get_messages(
        session_id: SessionId,
        limit: Annotated[int, Query(ge=1, le=MAX_HISTORY_PAGE, description="Page size.")] = 50,
        before_seq: Annotated[
            int | None,
            Query(ge=1, description="Only messages with a smaller seq (from next_before_seq)."),
        ] = None,
    ) -> HistoryPage:
        _check_session(session_id)
        try:
            messages = read_history(session_id).get_messages()
        except MissingDatabaseError:
            raise GatewayError(404, "not_found", NO_DATABASE) from None
        except Exception as error:  # the id is valid, so this is the backend's failure
            raise GatewayError(
                503, "unavailable", f"memory backend: {type(error).__name__}"
            ) from error
        if before_seq is not None:
            messages = [m for m in messages if (m.seq or 0) < before_seq]
        page = messages[-limit:][::-1]
        more = len(messages) > limit
        return HistoryPage(
            session_id=session_id,
            messages=[MessageView.of(m) for m in page],
            next_before_seq=page[-1].seq if more and page else None,
        )

    app.include_router(v1)
    _declare_agents(app, sorted(producer.agents))

    @app.get(
        "/healthz",
        response_model=HealthResponse,
        responses={503: {"model": HealthResponse, "description": "A component is down."}},
        summary="Redis and the memory backend are reachable",
    )
    async def healthz(response: Response) -> HealthResponse:
        def redis_ok() -> None:
            probe.ping()

        def memory_ok() -> None:
            open_memory(HEALTH_SESSION).get_window(0)

        components = {
            "redis": await _probe(redis_ok),
            "memory": await _probe(memory_ok),
        }
        healthy = all(c.ok for c in components.values())
        response.status_code = 200 if healthy else 503
        return HealthResponse(status="ok" if healthy else "unavailable", components=components)

    @app.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
        summary="Prometheus metrics: gateway, runtime queues, and workers (multiprocess dir)",
    )
    def prometheus_metrics() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app


def _declare_agents(app: FastAPI, agents: list[str]) -> None:
    """Name the agents this deployment runs in the document, so clients (and schemathesis)
    know which values are valid; they come from ``FENCE_AGENTS`` at start-up."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            agent = document["components"]["schemas"]["SubmitBody"]["properties"]["agent"]
            agent["anyOf"] = [{"type": "string", "enum": agents}, {"type": "null"}]
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


async def _probe(check: Callable[[], None]) -> ComponentHealth:
    """Run a blocking check in a thread, bounded in time even if the thread is stuck."""
    error = f"no answer within {HEALTH_TIMEOUT_S:g}s"
    with anyio.move_on_after(HEALTH_TIMEOUT_S):
        try:
            await anyio.to_thread.run_sync(check, abandon_on_cancel=True)
            return ComponentHealth(ok=True)
        except Exception as failure:
            error = f"{type(failure).__name__}: {clip(str(failure), 200)}"
    return ComponentHealth(ok=False, error=error)


def _install_error_handlers(app: FastAPI, routes: Callable[[], Sequence[Any]]) -> None:
    @app.exception_handler(GatewayError)
    async def gateway_error(_: Request, error: GatewayError) -> JSONResponse:
        return error.response()

    @app.exception_handler(RequestValidationError)
    async def request_invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = _problems(error.errors())
        body_error = any(e.get("loc", ())[:1] == ("body",) for e in error.errors())
        if body_error and "json" not in request.headers.get("content-type", ""):
            problems = [FieldProblem(field="body", message=NOT_JSON)]
        return _invalid(problems).response()

    @app.exception_handler(RunNotFound)
    async def run_not_found(_: Request, error: RunNotFound) -> JSONResponse:
        return _error(
            404,
            "not_found",
            "run not found (never accepted, or its record expired)",
            run_id=error.run_id,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        invalid = _slashed_session(request, routes()) if error.status_code == 404 else None
        if invalid is not None:
            return invalid.response()
        codes = {404: "not_found", 405: "method_not_allowed"}
        message = {404: "no such path", 405: "method not allowed on this path"}.get(
            error.status_code, str(error.detail)
        )
        return _error(
            error.status_code,
            codes.get(error.status_code, "http_error"),
            message,
            headers=getattr(error, "headers", None),
        )

    @app.exception_handler(redis.RedisError)
    async def redis_down(_: Request, error: redis.RedisError) -> JSONResponse:
        log.warning("redis unavailable: %s", type(error).__name__)
        return _error(503, "unavailable", "Redis is unreachable; retry later")

    @app.exception_handler(Exception)
    async def internal(_: Request, error: Exception) -> JSONResponse:
        log.error("unhandled error", exc_info=error)
        return _error(500, "internal", "internal error; see the gateway's log")


# -- launching ---------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (``localhost``, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(
    host: str,
    port: int,
    settings: Settings | None = None,
    *,
    log_level: str = "info",
    access_log: bool = True,
) -> None:
    """Run the gateway with uvicorn until interrupted.

    Without tokens auth is off, which is only safe when nothing but this machine can
    connect: on any other address this raises ``GatewayConfigError`` instead of serving.
    """
    settings = settings or get_settings()
    if not settings.api_tokens and not is_loopback(host):
        raise GatewayConfigError(
            f"refusing to serve on {host}:{port} without authentication: set FENCE_API_TOKENS "
            "to one or more comma-separated bearer tokens, or bind to 127.0.0.1"
        )
    import uvicorn

    app = create_app(settings, require_auth=bool(settings.api_tokens))
    auth = f"on, {len(settings.api_tokens)} token(s)" if settings.api_tokens else "off (loopback)"
    print(f"fence gateway: auth {auth}", file=sys.stderr, flush=True)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        server_header=False,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m producer.gateway``: settings come from ``FENCE_*`` variables."""
    parser = argparse.ArgumentParser(
        prog="python -m producer.gateway",
        description="Serve the Fence HTTP gateway (settings from FENCE_* variables).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--log-level", default="info")
    parser.add_argument(
        "--no-access-log", action="store_true", help="do not log each request (load tests)"
    )
    args = parser.parse_args(argv)
    try:
        serve(
            args.host,
            args.port,
            get_settings(),
            log_level=args.log_level,
            access_log=not args.no_access_log,
        )
    except (GatewayConfigError, InvalidSettingsError) as error:
        print(f"fence gateway: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
