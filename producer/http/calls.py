"""What each API call sends, how its answer reads, and when a failed try is made again.

``FenceClient`` and ``AsyncFenceClient`` only execute these plans on their transport
(``httpx.Client`` or ``httpx.AsyncClient``), so the two cannot drift apart: a
``Call`` says what to send and reads the answer, ``Attempts`` decides whether and
when to try again, ``Waiting`` slices a wait into long polls and ``EventFollow``
reads and resumes a run's event stream.

Retries: a try that never reached the gateway (no connection) is made again for any
call; one that may have reached it (a broken connection, a 5xx) only for calls that
are safe to repeat: reads, cancels, and submits, which always carry an idempotency key
(generated if the caller gave none), so a retried submit is one run.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from fence.runs import Strategy
from producer.api_models import (
    MAX_WAIT_S,
    HistoryPage,
    RunEventView,
    RunsPage,
    RunView,
    SessionsPage,
    SessionView,
    SubmitResponse,
)
from producer.http.errors import GatewayUnreachable, WaitTimeout, api_error

T = TypeVar("T")

WAIT_MARGIN_S = 10.0
"""How much longer than a long poll's ``wait`` its answer may take to come."""
RETRIED_STATUSES = frozenset({500, 502, 503, 504})
MAX_RETRY_AFTER_S = 60.0
"""A ``Retry-After`` longer than this is not waited for: the error is raised."""
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
"""Transport errors raised before any byte of the request left: always safe to retry."""
FINISHED = "run.finished"


@dataclass(frozen=True, repr=False)
class Target:
    """Where the gateway is and the token it takes; ``where`` names it in messages (and
    the repr), never the token or a password in the URL."""

    url: str
    token: str | None = None

    def __repr__(self) -> str:
        return f"Target(url={self.where!r})"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    @property
    def where(self) -> str:
        """The URL without credentials (``https://user:pass@host`` shows the host only)."""
        parts = urlsplit(self.url)
        return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def target(url: str | None, token: str | None, environ: Mapping[str, str]) -> Target:
    """The gateway from the arguments, else ``FENCE_API_URL`` and ``FENCE_API_TOKEN``."""
    url = url or environ.get("FENCE_API_URL")
    if not url:
        raise ValueError("url: give the gateway's URL, or set FENCE_API_URL")
    if urlsplit(url).scheme not in ("http", "https"):
        raise ValueError("url: must be an http:// or https:// URL")
    return Target(url.rstrip("/"), token or environ.get("FENCE_API_TOKEN") or None)


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 3
    """Tries after the first."""
    backoff_s: float = 0.5
    """Delay before the first retry; it doubles each time (with jitter)."""
    max_backoff_s: float = 10.0


class Attempts:
    """The tries of one call: how long to wait before the next, or the error to raise."""

    def __init__(self, policy: RetryPolicy, idempotent: bool, where: str) -> None:
        self.policy = policy
        self.idempotent = idempotent
        self.where = where
        self.tries = 0

    def after_error(self, error: httpx.TransportError) -> float:
        """The delay before trying again after ``error``; ``GatewayUnreachable`` if not."""
        why = f"{type(error).__name__}: {error}"
        if not self.idempotent and not isinstance(error, NOT_SENT):
            raise self.unreachable(f"{why}; not tried again: it may have been done") from error
        if self.tries >= self.policy.retries:
            raise self.unreachable(why) from error
        return self._next()

    def after_status(self, status: int, headers: Mapping[str, str]) -> float | None:
        """The delay before trying again after this answer, or None to take it."""
        if status not in RETRIED_STATUSES or not self.idempotent:
            return None
        if self.tries >= self.policy.retries:
            return None
        retry_after = _seconds(headers.get("Retry-After"))
        if retry_after is not None and retry_after > MAX_RETRY_AFTER_S:
            return None
        return max(self._next(), retry_after or 0.0)

    def after_early_end(self) -> float:
        """A stream that ended before its run did: the delay before resuming it."""
        if self.tries >= self.policy.retries:
            raise self.unreachable("the event stream ended before the run finished")
        return self._next()

    def reset(self) -> None:
        """Progress was made (an event came): the next failure starts a fresh count."""
        self.tries = 0

    def unreachable(self, why: str) -> GatewayUnreachable:
        tries = self.tries + 1
        return GatewayUnreachable(
            f"cannot reach the gateway at {self.where} ({why}; tries: {tries})"
        )

    def _next(self) -> float:
        delay = min(self.policy.backoff_s * 2**self.tries, self.policy.max_backoff_s)
        self.tries += 1
        return delay * (0.5 + random.random() / 2)


def _seconds(value: str | None) -> float | None:
    """A ``Retry-After`` in seconds (an HTTP date is not worth parsing: None)."""
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request, and how its JSON answer becomes the result."""

    method: str
    path: str
    read: Callable[[Any], T]
    params: dict[str, Any] = field(default_factory=dict)
    json: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    idempotent: bool = True
    """Safe to send again when the first try may have reached the gateway."""
    read_timeout_s: float | None = None
    """How long its answer may take, if not the client's timeout (a long poll)."""

    def timeout(self, default: httpx.Timeout) -> httpx.Timeout:
        if self.read_timeout_s is None:
            return default
        return httpx.Timeout(
            default.connect, read=self.read_timeout_s, write=default.write, pool=default.pool
        )

    def answer(self, status: int, body: bytes) -> T:
        """The result of a final answer, or its ``FenceAPIError``."""
        if status >= 400:
            raise api_error(status, body)
        return self.read(json.loads(body))


def _segment(value: str) -> str:
    """A path segment: ``/`` and the like are sent escaped, so the gateway names the id."""
    return quote(value, safe="")


def _present(**values: Any) -> dict[str, Any]:
    return {name: value for name, value in values.items() if value is not None}


def new_idempotency_key() -> str:
    return f"client-{uuid.uuid4().hex}"


def submit(
    session_id: str,
    message: str,
    *,
    agent: str | None,
    idempotency_key: str | None,
    strategy: str | Strategy,
    metadata: dict[str, Any] | None,
    webhook: str | None,
) -> Call[SubmitResponse]:
    body = _present(
        message=message,
        agent=agent,
        idempotency_key=idempotency_key or new_idempotency_key(),
        strategy=strategy,
        metadata=metadata,
        webhook=webhook,
    )
    path = f"/v1/sessions/{_segment(session_id)}/runs"
    return Call("POST", path, SubmitResponse.model_validate, json=body)


def status(run_id: str, wait: float | None = None) -> Call[RunView]:
    if not wait:
        return Call("GET", f"/v1/runs/{_segment(run_id)}", RunView.model_validate)
    return Call(
        "GET",
        f"/v1/runs/{_segment(run_id)}",
        RunView.model_validate,
        params={"wait": wait},
        read_timeout_s=wait + WAIT_MARGIN_S,
    )


def cancel(run_id: str) -> Call[RunView]:
    """Safe to repeat: cancelling a cancelled (or finished) run changes nothing."""
    return Call("POST", f"/v1/runs/{_segment(run_id)}/cancel", RunView.model_validate)


def decide(
    run_id: str,
    approve: bool,
    arguments: dict[str, Any] | None = None,
    reason: str | None = None,
) -> Call[RunView]:
    """Not repeated once it may have arrived: a second decision is a 409 not_waiting."""
    body = {"approve": approve, **_present(arguments=arguments, reason=reason)}
    path = f"/v1/runs/{_segment(run_id)}/approval"
    return Call("POST", path, RunView.model_validate, json=body, idempotent=False)


def session(session_id: str) -> Call[SessionView]:
    return Call("GET", f"/v1/sessions/{_segment(session_id)}", SessionView.model_validate)


def sessions(state: str | None, limit: int, cursor: str | None) -> Call[SessionsPage]:
    params = _present(state=state, limit=limit, cursor=cursor)
    return Call("GET", "/v1/sessions", SessionsPage.model_validate, params=params)


def runs(session_id: str, limit: int, cursor: str | None) -> Call[RunsPage]:
    path = f"/v1/sessions/{_segment(session_id)}/runs"
    return Call("GET", path, RunsPage.model_validate, params=_present(limit=limit, cursor=cursor))


def history(session_id: str, limit: int, before_seq: int | None) -> Call[HistoryPage]:
    path = f"/v1/sessions/{_segment(session_id)}/messages"
    params = _present(limit=limit, before_seq=before_seq)
    return Call("GET", path, HistoryPage.model_validate, params=params)


class Waiting:
    """A wait for a run to end, as long polls of at most ``MAX_WAIT_S`` each."""

    def __init__(self, run_id: str, timeout: float | None) -> None:
        self.run_id = run_id
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout

    def call(self) -> Call[RunView]:
        if self.deadline is None:
            return status(self.run_id, MAX_WAIT_S)
        remaining = self.deadline - time.monotonic()
        return status(self.run_id, min(MAX_WAIT_S, max(remaining, 0.0)) or None)

    def ended(self, view: RunView) -> bool:
        """True once the run is terminal; ``WaitTimeout`` once the deadline passed."""
        if view.state.terminal:
            return True
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise WaitTimeout(view, self.timeout or 0.0)
        return False


class EventFollow:
    """One reading of a run's events: the request that opens (or resumes) its stream
    after the last event seen, the stream's lines parsed into events, and when to stop
    (after ``run.finished``, or at the deadline).

    A run's stream also ends cleanly, without ``run.finished``, when the run had ended
    and nothing is logged after the id asked for, and when it breaks off (the gateway
    stopping). So a stream that ended with nothing new is told apart by the run's state:
    if it has ended, one more look that also finds nothing ends the reading."""

    def __init__(self, run_id: str, after: str | None, timeout: float | None) -> None:
        self.run_id = run_id
        self.last_id = after
        """Where to resume: sent as ``Last-Event-ID``."""
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.finished = False
        self.run_ended = False
        """The run was found terminal after a stream that brought nothing new."""
        self._fresh = 0
        self._data: list[str] = []

    @property
    def over(self) -> bool:
        return self.finished or (self.deadline is not None and time.monotonic() >= self.deadline)

    def call(self, default: httpx.Timeout) -> Call[None]:
        """The request of a new connection; with a deadline, no read waits past it (a
        quiet stream's keep-alive comes every FENCE_API_HEARTBEAT_S anyway)."""
        self._fresh, self._data = 0, []
        headers = {"Accept": "text/event-stream"}
        if self.last_id is not None:
            headers["Last-Event-ID"] = self.last_id
        read = None
        if self.deadline is not None:
            remaining = max(self.deadline - time.monotonic(), 0.001)
            read = min(remaining, default.read) if default.read is not None else remaining
        path = f"/v1/runs/{_segment(self.run_id)}/events"
        return Call("GET", path, lambda _: None, headers=headers, read_timeout_s=read)

    def feed(self, line: str) -> RunEventView | None:
        """One line of the stream; the event it completes, if any (only ``data:`` is
        read: the event's JSON holds its id and type)."""
        if line:
            if line.startswith("data:"):
                self._data.append(line.removeprefix("data:").removeprefix(" "))
            return None
        data, self._data = self._data, []
        if not data:
            return None
        event = RunEventView.model_validate_json("\n".join(data))
        self.last_id = event.id
        self.finished = event.type == FINISHED
        self._fresh += 1
        return event

    def after_end(self) -> str:
        """The stream ended before ``run.finished``: ``"resume"`` (events came, or the
        run goes on), ``"check"`` (nothing came: look up whether the run has ended, tell
        ``checked``), or ``"stop"`` (it has, and another look found nothing either)."""
        if self._fresh:
            return "resume"
        return "stop" if self.run_ended else "check"

    def checked(self, terminal: bool) -> bool:
        self.run_ended = terminal
        return terminal
