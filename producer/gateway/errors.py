"""The gateway's one error shape, and every failure turned into it.

Whatever raised it, an error answers::

    {"error": {"code": "invalid", "message": "message: must be a non-empty string",
               "field": "message", "run_id": null, "details": [...]}}

Invalid input (422) is built from ``fence.validation``'s problems, each a field
and a ``field: rule`` line, the same the Python client and the CLI report; the
field comes from where the error was found, never from parsing its text.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import unquote

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Route

from fence.messages import validate_session_id
from fence.runs import NotWaiting, RunNotFound
from fence.validation import InvalidInput, Problem, problem
from producer.api_models import ErrorDetail, ErrorResponse, FieldProblem, SubmitBody

log = logging.getLogger("fence.gateway")

NOT_JSON = "body: must be a JSON object sent with 'Content-Type: application/json'"
REQUEST_PARTS = frozenset({"body", "path", "query", "header", "cookie"})
"""The first element of a FastAPI error's ``loc``: where in the request, not which field."""
DESCRIPTIONS = {
    400: "Malformed request framing (bad Content-Length).",
    401: "Missing or wrong bearer token.",
    404: "No such run (never accepted, or its record expired); error.run_id is the id asked for.",
    409: "Refused: the session is busy and the strategy is reject (error.code rejected; "
    "the run is recorded as rejected), the idempotency key was first used with a "
    "different request (error.code idempotency_conflict), or a decision was sent for a "
    "run that is not waiting for one (error.code not_waiting; the message gives its "
    "state). error.run_id names the run.",
    413: "The request body is larger than FENCE_API_MAX_BODY_BYTES.",
    422: "Invalid input; error.field names the field and error.message the rule "
    "(body: not JSON, not UTF-8, or nested too deep).",
    503: "Redis or the memory backend is unreachable, or (an event stream) the gateway "
    "holds as many streams open as it serves; retry later.",
}
"""What each error status means, as the OpenAPI document says it."""


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
        details: Sequence[Problem] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers
        problems = [FieldProblem(field=each.field, message=each.message) for each in details]
        self.detail = ErrorDetail(
            code=code, message=message, field=field, run_id=run_id, details=problems
        )

    @classmethod
    def invalid(cls, error: InvalidInput) -> GatewayError:
        """The 422: the first problem's field and rule, and every problem in ``details``."""
        first = error.problems[0]
        return cls(422, "invalid", first.message, field=first.field, details=error.problems)

    def response(self) -> JSONResponse:
        body = ErrorResponse(error=self.detail).model_dump(mode="json")
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a route or router: these statuses, in the one error shape."""
    return {s: {"model": ErrorResponse, "description": DESCRIPTIONS[s]} for s in statuses}


def check_session(session_id: str) -> str:
    """``session_id`` if valid, else the 422 naming it."""
    try:
        return validate_session_id(session_id)
    except ValueError as error:
        raise GatewayError.invalid(InvalidInput.at("session_id", str(error))) from None


def request_problem(error: Mapping[str, Any], body: type[BaseModel] = SubmitBody) -> Problem:
    """One of FastAPI's request validation errors as a field and a rule, without the
    input; ``body`` is the model the route reads its body as."""
    loc = [str(part) for part in error.get("loc", ())]
    if loc and loc[0] in REQUEST_PARTS:
        loc = loc[1:]
    if error.get("type") == "json_invalid":
        detail = (error.get("ctx") or {}).get("error", "")
        return problem(["body"], f"body: invalid JSON ({detail})")
    if error.get("type") == "extra_forbidden":
        rule = f"unknown field; allowed: {', '.join(body.model_fields)}"
    else:
        rule = str(error.get("msg", "invalid"))
    return problem(loc or ["body"], rule)


def request_invalid(request: Request, errors: Sequence[Mapping[str, Any]]) -> GatewayError:
    """The 422 for a request FastAPI could not bind; a body that is not JSON says so."""
    body_field = getattr(request.scope.get("route"), "body_field", None)
    body = getattr(getattr(body_field, "field_info", None), "annotation", None)
    if not (isinstance(body, type) and issubclass(body, BaseModel)):
        body = SubmitBody
    problems = [request_problem(error, body) for error in errors]
    body_error = any(tuple(error.get("loc", ()))[:1] == ("body",) for error in errors)
    if body_error and "json" not in request.headers.get("content-type", ""):
        problems = [problem(["body"], NOT_JSON)]
    return GatewayError.invalid(InvalidInput(problems or [Problem(None, "invalid request")]))


def slashed_session(request: Request, routes: Iterable[BaseRoute]) -> GatewayError | None:
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
                check_session(unquote(match["session_id"]))
            except GatewayError as invalid:
                return invalid
    return None


def http_error(
    request: Request, error: StarletteHTTPException, routes: Iterable[BaseRoute]
) -> GatewayError:
    """Starlette's own errors (no route, wrong method) in the one shape."""
    invalid = slashed_session(request, routes) if error.status_code == 404 else None
    if invalid is not None:
        return invalid
    codes = {404: "not_found", 405: "method_not_allowed"}
    messages = {404: "no such path", 405: "method not allowed on this path"}
    headers = getattr(error, "headers", None)
    if error.status_code == 405:  # Starlette names the first matching route's methods only
        headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request, routes))}
    return GatewayError(
        error.status_code,
        codes.get(error.status_code, "http_error"),
        messages.get(error.status_code, str(error.detail)),
        headers=headers,
    )


def allowed_methods(request: Request, routes: Iterable[BaseRoute]) -> list[str]:
    """Every method some route serves on the request's path."""
    path = request.scope["path"]
    methods = {
        method
        for route in routes
        if isinstance(route, Route) and route.path_regex.match(path)
        for method in route.methods or ()
    }
    return sorted(methods)


def install_error_handlers(app: FastAPI, routes: Iterable[BaseRoute]) -> None:
    """Answer every exception a route can raise in the one error shape (``routes``:
    every route with its full path)."""

    @app.exception_handler(GatewayError)
    async def gateway_error(_: Request, error: GatewayError) -> JSONResponse:
        return error.response()

    @app.exception_handler(RequestValidationError)
    async def unbound(request: Request, error: RequestValidationError) -> JSONResponse:
        return request_invalid(request, error.errors()).response()

    @app.exception_handler(RunNotFound)
    async def run_not_found(_: Request, error: RunNotFound) -> JSONResponse:
        message = "run not found (never accepted, or its record expired)"
        return GatewayError(404, "not_found", message, run_id=error.run_id).response()

    @app.exception_handler(NotWaiting)
    async def not_waiting(_: Request, error: NotWaiting) -> JSONResponse:
        return GatewayError(409, "not_waiting", str(error), run_id=error.run_id).response()

    @app.exception_handler(StarletteHTTPException)
    async def starlette_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return http_error(request, error, routes).response()

    @app.exception_handler(redis.RedisError)
    async def redis_down(_: Request, error: redis.RedisError) -> JSONResponse:
        log.warning("redis unavailable: %s", type(error).__name__)
        return GatewayError(503, "unavailable", "Redis is unreachable; retry later").response()

    @app.exception_handler(Exception)
    async def internal(_: Request, error: Exception) -> JSONResponse:
        log.error("unhandled error", exc_info=error)
        return GatewayError(500, "internal", "internal error; see the gateway's log").response()
