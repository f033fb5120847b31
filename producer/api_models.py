"""The HTTP API's request and response bodies, as they appear in its OpenAPI document.

The gateway answers with them and the client libraries (``producer.http``) read its
answers as them, so both agree on every field; this module needs pydantic, not FastAPI.

The request body declares types and documents the rules (patterns, limits) so
that the OpenAPI document is honest, but the rules themselves are enforced by
``RunRequest`` and ``Producer.submit``: the gateway adds no validation of its
own beyond what JSON and HTTP need.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from fence.messages import IDENTIFIER_PATTERN, IDENTIFIER_RULE, Message, ToolCall
from fence.runs import EventType, RunRecord, RunState, Strategy
from fence.runs.events import EVENT_ID
from fence.runs.listing import SessionState, SessionSummary
from fence.runs.schema import (
    MAX_METADATA_BYTES,
    MAX_METADATA_DEPTH,
    MAX_METADATA_KEY_CHARS,
    PendingApproval,
    WebhookState,
)
from fence.runs.webhooks import MAX_WEBHOOK_CHARS

# JSON Schema patterns are searched, not full-matched, and ``$`` means end of text there.
NAME_SCHEMA: dict[str, Any] = {
    "pattern": IDENTIFIER_PATTERN.pattern,
    "minLength": 1,
    "maxLength": 128,
}
EVENT_ID_SCHEMA: dict[str, Any] = {
    "pattern": f"^{EVENT_ID.pattern}$",
    "examples": ["1700000000000-0"],
}
EVENT_TYPES = [kind.value for kind in EventType]
MAX_WAIT_S = 60.0
"""Longest long poll (``GET /v1/runs/{id}?wait=``); a client wanting longer polls again."""


def event_id_parameter(schema: dict[str, Any]) -> None:
    """An optional event id header or query parameter, as the document shows it: a
    string, without the null branch of ``str | None`` (a value that is sent is text, so
    ``null`` would be a malformed id; a missing one is simply not sent)."""
    schema.pop("anyOf", None)
    schema.update(type="string", **EVENT_ID_SCHEMA)


class FieldProblem(BaseModel):
    field: str | None = Field(description="The input that is wrong (dotted path), if any.")
    message: str


class ErrorDetail(BaseModel):
    code: str = Field(
        description="Machine-readable: invalid, unauthorized, not_found, too_large, rejected, "
        "method_not_allowed, unavailable or internal."
    )
    message: str = Field(description="What is wrong and what to do; never echoes the message.")
    field: str | None = Field(
        default=None, description="The request field at fault (422), else null."
    )
    run_id: str | None = Field(
        default=None, description="The run concerned (409; 404: the run asked for)."
    )
    details: list[FieldProblem] = Field(
        default_factory=list, description="Every problem found, when there are several (422)."
    )


class ErrorResponse(BaseModel):
    """The one error shape of every 4xx and 5xx response."""

    error: ErrorDetail


class SubmitBody(BaseModel):
    """A run request for the session named in the path."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    message: str = Field(
        description="The user message. Non-empty, at most FENCE_MAX_MESSAGE_BYTES UTF-8 bytes "
        "(default 262144).",
        json_schema_extra={"minLength": 1, "pattern": r"\S"},
    )
    agent: str | None = Field(
        default=None,
        description=f"Agent name from the workers' registry ({IDENTIFIER_RULE}); "
        "default FENCE_DEFAULT_AGENT.",
        json_schema_extra=NAME_SCHEMA,
    )
    idempotency_key: str | None = Field(
        default=None,
        description=f"Submitting again with the same key returns the same run ({IDENTIFIER_RULE}).",
        json_schema_extra=NAME_SCHEMA,
    )
    strategy: Strategy = Field(
        default=Strategy.ENQUEUE,
        description="When the session is busy: enqueue (run after the others), reject (409) or "
        "interrupt (cancel the running turn, run this one next).",
    )
    metadata: dict[str, Any] | None = Field(
        default=None,
        description="Free-form JSON object stored with the run: at most "
        f"{MAX_METADATA_BYTES} bytes as compact UTF-8 JSON, {MAX_METADATA_DEPTH} levels of "
        f"objects and arrays (itself included), keys of at most {MAX_METADATA_KEY_CHARS} "
        "characters; no NaN or infinity, no lone surrogates.",
    )
    webhook: str | None = Field(
        default=None,
        description="An http(s) URL that must start with one of FENCE_WEBHOOK_ALLOW's "
        f"prefixes (at most {MAX_WEBHOOK_CHARS} characters): when the run ends, workers POST "
        "its outcome there, signed (see the runtime guide's Webhooks).",
        json_schema_extra={"maxLength": MAX_WEBHOOK_CHARS},
    )


class SubmitResponse(BaseModel):
    run_id: str
    session_id: str
    state: RunState
    position: int | None = Field(
        description="Runs ahead of this one when it was accepted (0: it runs now); null when "
        "the request matched an earlier run by idempotency_key."
    )


class RunView(BaseModel):
    """A run's state and the message it answers. Timestamps are Unix epoch seconds."""

    run_id: str
    session_id: str
    agent: str
    message: str = Field(description="The user message the run was submitted with.")
    strategy: Strategy
    state: RunState
    idempotency_key: str | None
    metadata: dict[str, Any]
    accepted_at: float
    started_at: float | None
    finished_at: float | None
    worker: str | None = Field(description="Celery hostname of the worker that ran it.")
    deliveries: int = Field(
        description="Times a worker took the run; above 1, a worker died, stalled past its "
        "lease or could not reach memory, and another took over."
    )
    attempts: int = Field(description="Times the turn was tried, retries included.")
    result: str | None = Field(description="The agent's answer (succeeded runs).")
    error: str | None = Field(description="Why it failed, was cancelled or rejected.")
    cancel_requested: bool
    approval: PendingApproval | None = Field(
        description="The tool call a waiting run needs a decision on (POST .../approval): "
        "its id, tool name, arguments, the tool's JSON schema (parameters), and deadline "
        "(epoch s; the run fails after it)."
    )
    waits: int = Field(description="Times the run paused for an approval.")
    corrupt: str | None = Field(
        description="What of the stored record could not be read (those fields show safe "
        "values); null when it is intact. A worker fails such a run."
    )
    webhook: str | None = Field(description="Where the run's outcome is POSTed, if anywhere.")
    webhook_state: WebhookState | None = Field(
        description="pending, delivered or failed; null without a webhook."
    )
    webhook_attempts: int = Field(description="Delivery attempts made so far.")
    webhook_error: str | None = Field(description="Why the last delivery attempt failed.")

    @classmethod
    def of(cls, record: RunRecord) -> RunView:
        return cls(run_id=record.id, **record.model_dump(exclude={"id"}))


class ApprovalBody(BaseModel):
    """A decision on the tool call a waiting run waits on."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    approve: bool = Field(description="true runs the tool call, false denies it.")
    arguments: dict[str, Any] | None = Field(
        default=None,
        description="With approve: run the tool with these instead of the model's "
        "arguments; they must match the tool's schema (approval.parameters).",
    )
    reason: str | None = Field(
        default=None,
        description="With a denial: told to the model as the tool's result.",
        max_length=2000,
    )


class SessionView(BaseModel):
    session_id: str
    state: str = Field(description="busy (a run in flight) or idle.")
    active_run: str | None
    queued: list[str] = Field(
        description="Ids of runs waiting, oldest first (at most the first 100)."
    )
    queued_count: int


class SessionSummaryView(BaseModel):
    session_id: str
    state: SessionState = Field(
        description="idle, busy (a run in flight) or waiting (its run waits for an approval)."
    )
    active_run: str | None
    queued_count: int = Field(description="Runs queued behind the active one.")
    last_activity: float = Field(
        description="When a run of it was last accepted, paused, decided or finished."
    )

    @classmethod
    def of(cls, summary: SessionSummary) -> SessionSummaryView:
        return cls(**vars(summary))


class SessionsPage(BaseModel):
    sessions: list[SessionSummaryView] = Field(description="Most recently active first.")
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null last.")


class RunsPage(BaseModel):
    session_id: str
    runs: list[RunView] = Field(description="Newest first.")
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null last.")


class ToolCallView(BaseModel):
    id: str
    name: str
    arguments: dict[str, Any]

    @classmethod
    def of(cls, call: ToolCall) -> ToolCallView:
        return cls(id=call.id, name=call.name, arguments=call.arguments)


class MessageView(BaseModel):
    seq: int = Field(description="Position in the session's history; rises by one per message.")
    role: str
    content: str
    turn_id: str | None = Field(description="The run that wrote it (null: written directly).")
    tool_calls: list[ToolCallView]
    tool_call_id: str | None
    name: str | None
    tokens: int | None
    meta: dict[str, Any]

    @classmethod
    def of(cls, message: Message) -> MessageView:
        return cls(
            seq=message.seq or 0,
            role=message.role.value,
            content=message.content,
            turn_id=message.turn_id,
            tool_calls=[ToolCallView.of(call) for call in message.tool_calls],
            tool_call_id=message.tool_call_id,
            name=message.name,
            tokens=message.tokens,
            meta=message.meta,
        )


class HistoryPage(BaseModel):
    """One page of history, newest message first."""

    session_id: str
    messages: list[MessageView]
    next_before_seq: int | None = Field(
        description="Pass as before_seq to get the next (older) page; null on the last page."
    )


class ComponentHealth(BaseModel):
    ok: bool
    error: str | None = None


class HealthResponse(BaseModel):
    status: str = Field(description="ok, or unavailable when a component failed.")
    components: dict[str, ComponentHealth] = Field(description="redis and memory.")


class RunEventView(BaseModel):
    """One event of a run: the JSON of an event stream's data: line."""

    id: str = Field(description="The event id, as in the id: line; strictly increasing.")
    run_id: str
    session_id: str
    type: str = Field(
        description="As in the event: line. run.finished is the run's last, exactly once.",
        json_schema_extra={"enum": EVENT_TYPES},
    )
    at: float = Field(description="When it happened, Unix epoch seconds.")
    data: dict[str, Any] = Field(
        description="By type: run.accepted position; turn.started attempt, delivery, worker; "
        "text.delta text, step; run.finished state and, unless it succeeded, error."
    )


EVENT_STREAM: dict[str, Any] = {
    "description": "Server-Sent Events, one per event of the run (or session) in order: "
    "id: the event id, event: its type, data: the event as JSON (RunEventView). A comment "
    "line (: keep-alive) comes every FENCE_API_HEARTBEAT_S seconds. Resume after the last "
    "id seen with the Last-Event-ID header or ?after=.",
    "content": {
        "text/event-stream": {
            "schema": {
                "type": "object",
                "description": "One event, as a Server-Sent Events parser reads it.",
                "required": ["id", "event", "data"],
                "properties": {
                    "id": {"type": "string", **EVENT_ID_SCHEMA},
                    "event": {"type": "string", "enum": EVENT_TYPES},
                    "data": {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "contentSchema": RunEventView.model_json_schema(),
                    },
                },
            }
        }
    },
}
"""The 200 of an event stream in the OpenAPI document (Open API 3.1: ``schema`` is one
event's)."""
