"""The HTTP API's errors as exceptions: one class per ``error.code``, each carrying the
API's ``code``, ``field``, ``run_id``, ``details`` and the HTTP ``status``.

Catch ``FenceAPIError`` for any of them, ``Conflict`` for every 409, or the class
of the one case you handle (``IdempotencyConflict``, ``Rejected``, ``NotWaiting``).
A message is the gateway's, which never echoes a message or a token; the client's
own (``GatewayUnreachable``) names the URL without its credentials. ``WaitTimeout``
(a ``TimeoutError``, not an API error) says a wait ended before its run did.
"""

from __future__ import annotations

import json
from typing import Any

from producer.api_models import ErrorResponse, FieldProblem, RunView


class FenceAPIError(Exception):
    """An error answer of the HTTP API (or no answer: ``GatewayUnreachable``)."""

    default_code = "http_error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        field: str | None = None,
        run_id: str | None = None,
        details: list[FieldProblem] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        """The HTTP status; None when no answer came."""
        self.code = code or self.default_code
        """The API's ``error.code``: ``invalid``, ``not_found``, ``rejected``, ..."""
        self.field = field
        """The request field at fault (422), else None."""
        self.run_id = run_id
        """The run concerned (409, and 404: the run asked for)."""
        self.details = details or []
        """Every problem found, when there are several (422)."""

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, "
            f"field={self.field!r}, run_id={self.run_id!r}, message={self.message!r})"
        )


class InvalidRequest(FenceAPIError):
    """422 (or 400): ``field`` names the input at fault and the message the rule."""

    default_code = "invalid"


class Unauthorized(FenceAPIError):
    """401: no token, or one the gateway does not accept (FENCE_API_TOKEN)."""

    default_code = "unauthorized"


class NotFound(FenceAPIError):
    """404: no such run (``run_id``), path, or history database."""

    default_code = "not_found"


class MethodNotAllowed(FenceAPIError):
    default_code = "method_not_allowed"


class Conflict(FenceAPIError):
    """409: the request was refused in the run's or session's current state."""

    default_code = "conflict"


class IdempotencyConflict(Conflict):
    """The idempotency key was first used for a different request (``run_id``: that run)."""

    default_code = "idempotency_conflict"


class Rejected(Conflict):
    """The session is busy and the strategy is reject; ``run_id`` is recorded as rejected."""

    default_code = "rejected"


class NotWaiting(Conflict):
    """A decision for a run that waits for none; the message gives its state."""

    default_code = "not_waiting"


class TooLarge(FenceAPIError):
    """413: the body is over FENCE_API_MAX_BODY_BYTES."""

    default_code = "too_large"


class InternalError(FenceAPIError):
    """500: a bug in the gateway; its log has the traceback."""

    default_code = "internal"


class Unavailable(FenceAPIError):
    """503 (or 502, 504): Redis or memory unreachable, or no stream slot free."""

    default_code = "unavailable"


class GatewayUnreachable(Unavailable):
    """No answer: the gateway could not be reached (or the connection broke) on every try."""


class WaitTimeout(TimeoutError):
    """``wait`` ended before the run did; ``run`` is its view then. The run goes on."""

    def __init__(self, run: RunView, timeout: float) -> None:
        super().__init__(f"run {run.run_id} still {run.state.value} after {timeout:g} s")
        self.run = run


BY_CODE: dict[str, type[FenceAPIError]] = {
    cls.default_code: cls
    for cls in (
        InvalidRequest,
        Unauthorized,
        NotFound,
        MethodNotAllowed,
        IdempotencyConflict,
        Rejected,
        NotWaiting,
        TooLarge,
        InternalError,
        Unavailable,
    )
}
BY_STATUS: dict[int, type[FenceAPIError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    404: NotFound,
    405: MethodNotAllowed,
    409: Conflict,
    413: TooLarge,
    422: InvalidRequest,
    500: InternalError,
    502: Unavailable,
    503: Unavailable,
    504: Unavailable,
}


def api_error(status: int, body: bytes) -> FenceAPIError:
    """The exception for an error answer: from its ``{"error": {...}}`` body, or (a
    proxy's page, say) from its status alone."""
    detail = _detail(body)
    if detail is None:
        cls = BY_STATUS.get(status, FenceAPIError)
        return cls(f"HTTP {status} from the gateway (no API error body)", status=status)
    cls = BY_CODE.get(detail.code) or BY_STATUS.get(status, FenceAPIError)
    return cls(
        detail.message,
        status=status,
        code=detail.code,
        field=detail.field,
        run_id=detail.run_id,
        details=detail.details,
    )


def _detail(body: bytes) -> Any:
    try:
        return ErrorResponse.model_validate(json.loads(body)).error
    except ValueError:  # not JSON, or not the API's error shape
        return None
