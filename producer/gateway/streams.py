"""Live runs over HTTP: a run's or a session's events as Server-Sent Events, and a
submit that answers with its run's stream.

Each event is a frame ``id: <event id>``, ``event: <type>``, ``data: <JSON>``. A
client resumes after the last id it saw with the ``Last-Event-ID`` header (which
``EventSource`` sends by itself when it reconnects) or ``?after=``; given both, the
header wins, since a browser reconnects to the URL it first opened, ``after``
included, adding the header with where it got to. Nothing is lost or repeated: event
ids are Redis stream ids, strictly increasing in a session.

Everything that can be refused (no such run, a malformed id, a bad submit, no room
for one more stream) is refused before the stream starts, in the gateway's one error
shape. Streams are read with ``redis.asyncio`` on the event loop (``AsyncRunEvents``):
an open stream holds a socket to the client and one to Redis, never a thread, and at
most ``FENCE_API_MAX_STREAMS`` are open at once. A stream that breaks off (Redis
unreachable, the gateway stopping) ends early; the client resumes it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Annotated

import redis
from fastapi import APIRouter, Header, Query, Response
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.types import Receive, Scope, Send

from fence.runs import RunEvent
from fence.runs.events import event_id
from fence.validation import InvalidInput
from producer.api_models import EVENT_STREAM, SubmitBody, event_id_parameter
from producer.gateway.errors import GatewayError, check_session, documented
from producer.gateway.routes import IdempotencyHeader, RunId, SessionId, submit
from producer.gateway.state import Gateway, GatewayState

log = logging.getLogger("fence.gateway")

KEEP_ALIVE = "keep-alive"
"""The comment sent on a quiet stream every ``FENCE_API_HEARTBEAT_S``."""

After = Annotated[
    str | None,
    Query(
        description="Resume after this event id (the id: of the last event seen); "
        "Last-Event-ID wins when both are given.",
        json_schema_extra=event_id_parameter,
    ),
]
LastEventId = Annotated[
    str | None,
    Header(
        alias="Last-Event-ID",
        description="Resume after this event id, as EventSource sends it when it reconnects.",
        json_schema_extra=event_id_parameter,
    ),
]

router = APIRouter(prefix="/v1")


@router.get(
    "/runs/{run_id}/events",
    response_class=Response,
    responses={200: EVENT_STREAM, **documented(404)},
    summary="Stream a run's events (SSE) until it finishes",
)
async def run_events(
    run_id: RunId, gateway: Gateway, after: After = None, last_event_id: LastEventId = None
) -> Response:
    """From its run.accepted (or after the id given) to its run.finished, then it ends."""
    events = await gateway.events.run(run_id, resume_after(last_event_id, after))
    return event_stream(events, gateway)


@router.get(
    "/sessions/{session_id}/events",
    response_class=Response,
    responses={200: EVENT_STREAM},
    summary="Stream every run's events in a session (SSE), without end",
)
async def session_events(
    session_id: SessionId, gateway: Gateway, after: After = None, last_event_id: LastEventId = None
) -> Response:
    """Every run of the session, in order, as they come; it never ends by itself."""
    check_session(session_id)
    events = gateway.events.session(session_id, resume_after(last_event_id, after))
    return event_stream(events, gateway)


@router.post(
    "/sessions/{session_id}/runs/stream",
    response_class=Response,
    responses={200: EVENT_STREAM, **documented(409)},
    summary="Submit a run and stream its events (SSE)",
)
async def submit_and_stream(
    session_id: SessionId,
    body: SubmitBody,
    gateway: Gateway,
    idempotency_header: IdempotencyHeader = None,
) -> Response:
    """The submit of ``POST .../runs`` (the same body, refusals and idempotency), answered
    with the run's stream from its run.accepted (a duplicate: the earlier run's)."""
    with gateway.stream_slots.reserved():  # no room to stream: refused, nothing queued
        run = await submit(gateway, session_id, body, idempotency_header)
        events = await gateway.events.run(run.id, session_id=run.session_id)
    return event_stream(events, gateway, headers={"Location": f"/v1/runs/{run.id}"})


def resume_after(last_event_id: str | None, after: str | None) -> str:
    """The id to resume after: the header's if sent, else ``after``'s, else the start;
    a malformed one is the 422 naming where it came from."""
    try:
        if last_event_id is not None:
            return event_id(last_event_id, "Last-Event-ID")
        return event_id(after)
    except InvalidInput as invalid:
        raise GatewayError.invalid(invalid) from None


def event_stream(
    events: AsyncIterator[RunEvent | None],
    gateway: GatewayState,
    headers: dict[str, str] | None = None,
) -> EventStream:
    """The events as Server-Sent Events in one of the gateway's stream slots (or the 503
    that says none is free)."""
    gateway.stream_slots.take()
    return EventStream(
        _frames(events),
        heartbeat_s=gateway.settings.api_heartbeat_s,
        release=gateway.stream_slots.give_back,
        headers=headers,
    )


class EventStream(EventSourceResponse):
    """Server-Sent Events with a keep-alive comment on a quiet stream, which give their
    slot back however the stream ends (done, the client gone, the gateway stopping)."""

    def __init__(
        self,
        frames: AsyncIterator[ServerSentEvent],
        *,
        heartbeat_s: float,
        release: Callable[[], None],
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(
            frames,
            headers=headers,
            ping=heartbeat_s,
            ping_message_factory=lambda: ServerSentEvent(comment=KEEP_ALIVE, sep="\n"),
            sep="\n",
        )
        self.release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.release()


async def _frames(events: AsyncIterator[RunEvent | None]) -> AsyncIterator[ServerSentEvent]:
    try:
        async for event in events:
            if event is not None:  # a quiet spell: the heartbeat has its own clock
                yield frame(event)
    except redis.RedisError as error:
        log.warning("event stream ended early, redis unavailable: %s", type(error).__name__)


def frame(event: RunEvent) -> ServerSentEvent:
    data = json.dumps(event.to_dict(), ensure_ascii=False, separators=(",", ":"))
    return ServerSentEvent(data, id=event.id, event=event.type.value, sep="\n")
