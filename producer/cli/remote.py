"""The run commands through the HTTP gateway: ``FenceClient``'s answers as the runtime's
own types, so the commands print what they print against Redis, and the API's errors as
``CliError``s that read as the same errors read from Redis (so ``main`` needs no httpx)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ParamSpec, TypeVar

from fence.messages import Message
from fence.runs import EventType, RunEvent, RunNotFound, RunRecord, RunState, RunTimeout
from fence.runs.listing import Page, SessionSummary
from producer.api_models import RunEventView, RunView
from producer.cli.backend import History, RunHandle
from producer.cli.errors import CliError
from producer.cli.output import record_dict
from producer.http import (
    FenceAPIError,
    FenceClient,
    GatewayUnreachable,
    InvalidRequest,
    NotFound,
    Rejected,
    Unauthorized,
    WaitTimeout,
)

P = ParamSpec("P")
R = TypeVar("R")
HISTORY_PAGE = 500
"""The gateway's largest history page."""


def record(view: RunView) -> RunRecord:
    return RunRecord.model_validate({**view.model_dump(exclude={"run_id"}), "id": view.run_id})


def event(view: RunEventView) -> RunEvent:
    return RunEvent(view.id, view.run_id, view.session_id, EventType(view.type), view.at, view.data)


def cli_error(error: FenceAPIError) -> CliError:
    """An API error as ``fence`` reports the same error from Redis (each problem's
    ``field: rule``, the run not found), or with what to set."""
    message = error.message
    if isinstance(error, InvalidRequest) and error.details:
        message = "; ".join(problem.message for problem in error.details)
    elif isinstance(error, NotFound) and error.run_id:
        message = f"run: {RunNotFound(error.run_id)}"
    elif isinstance(error, Unauthorized):
        message = f"{message} (the CLI sends FENCE_API_TOKEN)"
    elif isinstance(error, GatewayUnreachable):
        message = f"{message}; is the gateway running? set FENCE_API_URL or --url"
    return CliError(message, code=error.code, run_id=error.run_id)


def translated(method: Callable[P, R]) -> Callable[P, R]:
    """``method``, raising ``cli_error`` for the API's errors."""

    @functools.wraps(method)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except FenceAPIError as error:
            raise cli_error(error) from None

    return call


class RemoteRun:
    """A run handle whose calls go through the gateway."""

    def __init__(
        self,
        client: FenceClient,
        run_id: str,
        session_id: str,
        state: RunState,
        *,
        position: int | None = None,
        duplicate: bool = False,
    ) -> None:
        self._client = client
        self.id = run_id
        self.session_id = session_id
        self.state = state
        self.position = position
        self.duplicate = duplicate

    @translated
    def status(self) -> RunRecord:
        return record(self._client.status(self.id))

    @translated
    def cancel(self) -> RunRecord:
        return record(self._client.cancel(self.id))

    @translated
    def approve(self, arguments: dict[str, Any] | None = None) -> RunRecord:
        return record(self._client.approve(self.id, arguments))

    @translated
    def deny(self, reason: str = "") -> RunRecord:
        return record(self._client.deny(self.id, reason or None))

    def events(self, after: str | None = None, timeout: float | None = None) -> Iterator[RunEvent]:
        try:
            for view in self._client.events(self.id, after, timeout=timeout):
                yield event(view)
        except FenceAPIError as error:
            raise cli_error(error) from None


class GatewayBackend:
    """The gateway at ``url``, with the token in ``FENCE_API_TOKEN``."""

    def __init__(self, url: str) -> None:
        self.client = FenceClient(url)

    @translated
    def submit(self, session_id: str, message: str, **options: Any) -> RunHandle:
        """As ``Producer.submit``: a rejected double text is a run, recorded as rejected."""
        try:
            accepted = self.client.submit(session_id, message, **options)
        except Rejected as rejected:
            if rejected.run_id is None:
                raise
            return RemoteRun(self.client, rejected.run_id, session_id, RunState.REJECTED)
        return RemoteRun(
            self.client,
            accepted.run_id,
            accepted.session_id,
            accepted.state,
            position=accepted.position,
            duplicate=accepted.position is None,
        )

    @translated
    def run(self, run_id: str) -> RunHandle:
        view = self.client.status(run_id)
        return RemoteRun(self.client, view.run_id, view.session_id, view.state)

    @translated
    def wait(self, run_id: str, timeout: float) -> RunRecord:
        try:
            return record(self.client.wait(run_id, timeout))
        except WaitTimeout as timed_out:
            raise RunTimeout(str(timed_out)) from None

    def events(self, run: RunHandle, after: str, *, follow: bool) -> Iterable[RunEvent]:
        """A finished run's stream ends by itself; a running run's can only be followed."""
        if not follow and not run.state.terminal:
            raise CliError(
                f"--no-follow: run {run.id} is {run.state.value}; through the gateway its "
                "events can only be followed until it ends (drop --no-follow)"
            )
        return run.events(after=after)

    @translated
    def sessions(self, state: str | None, limit: int, cursor: str | None) -> Page[SessionSummary]:
        page = self.client.sessions(state, limit, cursor)
        summaries = [SessionSummary(**view.model_dump()) for view in page.sessions]
        return Page(summaries, page.next_cursor)

    @translated
    def runs(self, session_id: str, limit: int, cursor: str | None) -> Page[RunRecord]:
        page = self.client.runs(session_id, limit, cursor)
        return Page([record(view) for view in page.runs], page.next_cursor)

    @translated
    def history(self, session_id: str, limit: int | None) -> History:
        """Paged from the newest back; the API serves no system prompt (``system``: None)."""
        newest_first: list[Message] = []
        before: int | None = None
        while limit is None or len(newest_first) < limit:
            size = HISTORY_PAGE if limit is None else min(HISTORY_PAGE, limit - len(newest_first))
            page = self.client.history(session_id, size, before)
            newest_first += [
                Message.model_validate(m.model_dump(), context={"stored": True})
                for m in page.messages
            ]
            before = page.next_before_seq
            if before is None:
                break
        return History(newest_first[::-1], None, f"the gateway at {self.client.target.where}")

    @translated
    def session(self, session_id: str) -> dict[str, Any]:
        """What the API shows of a session (no lease or progress: those need Redis)."""
        info = self.client.session(session_id)
        active: dict[str, Any] | None = None
        if info.active_run:
            try:
                active = record_dict(record(self.client.status(info.active_run)))
            except NotFound:
                active = {"run_id": info.active_run, "state": "missing (record expired)"}
        return {
            "session_id": session_id,
            "state": info.state,
            "active_run": active,
            "queued": info.queued,
            "queued_count": info.queued_count,
        }

    def close(self) -> None:
        self.client.close()
