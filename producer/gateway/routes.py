"""The ``/v1`` API: submit runs to a session, follow and cancel them, read a session.

Submits go through ``Producer.submit``, so validation, idempotency and double
texting behave exactly as in the Python client. History pages go newest first:
``GET .../messages?limit=50`` gives the newest 50 and ``next_before_seq``; pass
it as ``before_seq`` for the older ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Header, Path, Query, Response

from fence.memory.sqlite import MissingDatabaseError
from fence.runs import IdempotencyConflict, RunRecord, RunState, RunTimeout
from fence.runs.listing import CURSOR, MAX_PAGE, Page, SessionState
from fence.validation import InvalidInput
from producer.api_models import (
    MAX_WAIT_S,
    NAME_SCHEMA,
    ApprovalBody,
    ErrorResponse,
    HistoryPage,
    MessageView,
    RunsPage,
    RunView,
    SessionsPage,
    SessionSummaryView,
    SessionView,
    SubmitBody,
    SubmitResponse,
)
from producer.client import Run, log_lost_publish
from producer.gateway.errors import GatewayError, check_session, documented
from producer.gateway.state import Gateway, GatewayState

QUEUED_SHOWN = 100
MAX_HISTORY_PAGE = 500
NO_DATABASE = (
    "history: the memory database (FENCE_MEMORY) does not exist yet; no turn has been written to it"
)

SessionId = Annotated[
    str,
    Path(description="The session (conversation) id.", json_schema_extra=NAME_SCHEMA),
]
RunId = Annotated[str, Path(description="A run id returned by submit.")]
IdempotencyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="The same as the body's idempotency_key (give one, or both equal).",
        json_schema_extra=NAME_SCHEMA,
    ),
]
Wait = Annotated[
    float | None,
    Query(
        ge=0,
        le=MAX_WAIT_S,
        allow_inf_nan=False,
        description=f"Seconds to wait for the run to finish (at most {MAX_WAIT_S:g}); "
        "the answer is the record then, finished or not.",
    ),
]

PageLimit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Items per page.")]
PageCursor = Annotated[
    str | None,
    Query(
        description="The next_cursor of the previous page; none for the first.",
        pattern=f"^{CURSOR.pattern}$",
    ),
]

router = APIRouter(prefix="/v1")


@router.post(
    "/sessions/{session_id}/runs",
    status_code=202,
    response_model=SubmitResponse,
    responses=documented(409),
    summary="Submit a run to a session",
)
async def submit_run(
    session_id: SessionId,
    body: SubmitBody,
    response: Response,
    gateway: Gateway,
    idempotency_header: IdempotencyHeader = None,
) -> SubmitResponse:
    """Accepted means durable: the run is in Redis before this answers."""
    run = await submit(gateway, session_id, body, idempotency_header)
    response.headers["Location"] = f"/v1/runs/{run.id}"
    return SubmitResponse(
        run_id=run.id, session_id=run.session_id, state=run.state, position=run.position
    )


async def submit(
    gateway: GatewayState, session_id: str, body: SubmitBody, idempotency_header: str | None
) -> Run:
    """Submit as ``Producer.submit`` does, on the event loop (``AsyncRunStore``), or raise
    the error the submit routes answer with (422 invalid, 409 conflict or rejected):
    nothing is queued then."""
    key = body.idempotency_key
    if idempotency_header is not None and key is not None and idempotency_header != key:
        rule = "the Idempotency-Key header and the body's idempotency_key differ"
        raise GatewayError.invalid(InvalidInput.at("idempotency_key", rule))
    try:
        request = gateway.producer.request(
            session_id,
            body.message,
            agent=body.agent,
            idempotency_key=key if key is not None else idempotency_header,
            strategy=body.strategy,
            metadata=body.metadata,
            webhook=body.webhook,
        )
        submission = await gateway.submits.submit(request)
    except IdempotencyConflict as conflict:
        raise GatewayError(
            409,
            "idempotency_conflict",
            str(conflict),
            field="idempotency_key",
            run_id=conflict.run_id,
        ) from None
    except InvalidInput as invalid:
        raise GatewayError.invalid(invalid) from None
    for run_id in submission.to_publish:
        try:
            await gateway.submits.publish(session_id, run_id)
        except Exception:  # accepted already: the sweeper publishes it later
            log_lost_publish(session_id, run_id)
    if submission.state is RunState.REJECTED:
        error = (await gateway.submits.get(submission.run_id, session_id)).error
        raise GatewayError(
            409,
            "rejected",
            error or "session is busy and strategy is reject",
            run_id=submission.run_id,
        )
    return gateway.producer.handle(submission, session_id)


@router.get(
    "/runs/{run_id}",
    response_model=RunView,
    responses=documented(404),
    summary="Get a run, optionally waiting for it to finish",
)
async def get_run(run_id: RunId, gateway: Gateway, wait: Wait = None) -> RunView:
    store = gateway.store
    if not wait:
        return RunView.of(await anyio.to_thread.run_sync(store.get, run_id))

    def wait_for_run() -> RunRecord:
        try:
            return store.wait(run_id, wait)
        except RunTimeout:
            return store.get(run_id)

    record = await anyio.to_thread.run_sync(wait_for_run, limiter=gateway.wait_limiter)
    return RunView.of(record)


@router.post(
    "/runs/{run_id}/cancel",
    response_model=RunView,
    responses=documented(404),
    summary="Cancel a run",
)
def cancel_run(run_id: RunId, gateway: Gateway) -> RunView:
    """A queued run leaves the queue; a running one stops at its next step and commits
    nothing (``cancel_requested`` is true until it does). A finished run is unchanged."""
    return RunView.of(gateway.store.cancel(run_id))


@router.post(
    "/runs/{run_id}/approval",
    response_model=RunView,
    responses=documented(404, 409),
    summary="Approve or deny the tool call a waiting run waits on",
)
def decide_run(run_id: RunId, body: ApprovalBody, gateway: Gateway) -> RunView:
    """The run resumes where it paused: an approved call runs (with ``arguments`` if
    given), a denied one returns ``reason`` to the model as the tool's result. 409 if the
    run is not waiting; 422 naming ``arguments.<name>`` if they do not match the tool."""
    try:
        record = gateway.store.decide(
            run_id, approved=body.approve, arguments=body.arguments, reason=body.reason
        )
    except InvalidInput as invalid:
        raise GatewayError.invalid(invalid) from None
    return RunView.of(record)


@router.get(
    "/sessions", response_model=SessionsPage, summary="Sessions, most recently active first"
)
def list_sessions(
    gateway: Gateway,
    state: Annotated[SessionState | None, Query(description="Only sessions in this state.")] = None,
    limit: PageLimit = 50,
    cursor: PageCursor = None,
) -> SessionsPage:
    page = _listed(lambda: gateway.store.sessions(state, limit, cursor))
    return SessionsPage(
        sessions=[SessionSummaryView.of(s) for s in page.items], next_cursor=page.next_cursor
    )


@router.get(
    "/sessions/{session_id}/runs",
    response_model=RunsPage,
    summary="A session's runs, newest first",
)
def list_runs(
    session_id: SessionId, gateway: Gateway, limit: PageLimit = 50, cursor: PageCursor = None
) -> RunsPage:
    """Finished runs stay listed until their records expire (FENCE_RUN_TTL_S)."""
    check_session(session_id)
    page = _listed(lambda: gateway.store.runs(session_id, limit, cursor))
    return RunsPage(
        session_id=session_id,
        runs=[RunView.of(record) for record in page.items],
        next_cursor=page.next_cursor,
    )


def _listed(read: Callable[[], Page]) -> Page:
    try:
        return read()
    except InvalidInput as invalid:
        raise GatewayError.invalid(invalid) from None


@router.get(
    "/sessions/{session_id}",
    response_model=SessionView,
    summary="A session's run in flight and queue",
)
def get_session(session_id: SessionId, gateway: Gateway) -> SessionView:
    check_session(session_id)
    info = gateway.store.session(session_id, queued_limit=QUEUED_SHOWN)
    return SessionView(
        session_id=session_id,
        state=info.state,
        active_run=info.active_run,
        queued=info.queued,
        queued_count=info.queued_count,
    )


@router.get(
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
    gateway: Gateway,
    limit: Annotated[int, Query(ge=1, le=MAX_HISTORY_PAGE, description="Page size.")] = 50,
    before_seq: Annotated[
        int | None,
        Query(ge=1, description="Only messages with a smaller seq (from next_before_seq)."),
    ] = None,
) -> HistoryPage:
    check_session(session_id)
    try:
        messages = gateway.read_history(session_id).get_messages()
    except MissingDatabaseError:
        raise GatewayError(404, "not_found", NO_DATABASE) from None
    except Exception as error:  # the id is valid, so this is the backend's failure
        raise GatewayError(503, "unavailable", f"memory backend: {type(error).__name__}") from error
    if before_seq is not None:
        messages = [m for m in messages if (m.seq or 0) < before_seq]
    page = messages[-limit:][::-1]
    more = len(messages) > limit
    return HistoryPage(
        session_id=session_id,
        messages=[MessageView.of(m) for m in page],
        next_before_seq=page[-1].seq if more and page else None,
    )
