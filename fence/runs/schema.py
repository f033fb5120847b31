"""The run request and run record that producers and workers share."""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fence.messages import utf8, validate_identifier, validate_session_id
from fence.plain_json import check_plain, nesting_rule, text_nesting
from fence.runs.webhooks import MAX_WEBHOOK_CHARS, webhook_target
from fence.settings import get_settings
from fence.validation import InputModel

MAX_METADATA_BYTES = 16 * 1024
"""Largest metadata, as the compact UTF-8 JSON it is stored as."""
MAX_METADATA_DEPTH = 32
"""Deepest nesting of objects and arrays in metadata, counting the metadata object itself."""
MAX_METADATA_KEY_CHARS = 128
"""Longest key of any object in metadata."""
MAX_TIMESTAMP = 253_402_300_800.0
"""Year 10000: a time a record holds is before this (and not negative), or it is corrupt."""

Timestamp = Annotated[float, Field(ge=0, lt=MAX_TIMESTAMP, allow_inf_nan=False)]


def encode_metadata(metadata: dict[str, Any]) -> str:
    """The form metadata is stored in, and measured in against ``MAX_METADATA_BYTES``."""
    return json.dumps(metadata, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def check_metadata(value: object) -> dict[str, Any]:
    """Return ``value`` if it is metadata that is stored and read back as the same JSON;
    otherwise raise ``ValueError`` naming ``metadata`` and the rule. Never recurses."""
    if not isinstance(value, dict):
        raise ValueError('metadata: must be a JSON object, as in {"k": "v"}')
    check_plain(
        value, "metadata", max_depth=MAX_METADATA_DEPTH, max_key_chars=MAX_METADATA_KEY_CHARS
    )
    try:
        size = len(encode_metadata(value).encode())
    except ValueError as error:  # an int too long to print (sys.get_int_max_str_digits)
        raise ValueError(f"metadata: must be JSON-serialisable ({error})") from None
    if size > MAX_METADATA_BYTES:
        raise ValueError(f"metadata: larger than {MAX_METADATA_BYTES} bytes as JSON")
    return value


def read_metadata(text: str) -> dict[str, Any]:
    """Metadata as stored; ``ValueError`` saying why if it is not metadata ``check_metadata``
    would accept. Nesting is counted before parsing, so deep text cannot recurse."""
    if len(text) > MAX_METADATA_BYTES:
        raise ValueError(f"metadata: larger than {MAX_METADATA_BYTES} bytes as JSON")
    if text_nesting(text)[0] > MAX_METADATA_DEPTH:
        raise ValueError(f"metadata: {nesting_rule(MAX_METADATA_DEPTH)}")
    try:
        value = json.loads(text)
    except ValueError:
        raise ValueError("metadata: not valid JSON") from None
    return check_metadata(value)


class RunState(StrEnum):
    QUEUED = "queued"
    """Accepted, waiting for its turn or for a worker (also after an approval)."""
    RUNNING = "running"
    """A worker holds the session's lease for it."""
    WAITING = "waiting"
    """Paused until a tool call is approved or denied (``RunRecord.approval``); no
    worker holds it, and the session's later runs stay queued behind it."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    """Also when no approval came within ``FENCE_APPROVAL_TIMEOUT_S``."""
    CANCELLED = "cancelled"
    REJECTED = "rejected"

    @property
    def terminal(self) -> bool:
        return self not in (RunState.QUEUED, RunState.RUNNING, RunState.WAITING)


class WebhookState(StrEnum):
    """Where a run's webhook delivery stands (``fence.runs.webhooks``)."""

    PENDING = "pending"
    """Not delivered yet: the run has not ended, or an attempt failed and is retried."""
    DELIVERED = "delivered"
    """The receiver answered an attempt with a 2xx status."""
    FAILED = "failed"
    """Given up: retried for ``FENCE_WEBHOOK_RETRY_FOR_S``, or the workers may not send it."""


class Strategy(StrEnum):
    """What to do with a message that arrives while its session is busy."""

    ENQUEUE = "enqueue"
    """Run it after the turns already accepted (default)."""
    REJECT = "reject"
    """Refuse it: the run is recorded as ``rejected``."""
    INTERRUPT = "interrupt"
    """Cancel the running turn without committing it; run this one next."""


class RunRequest(InputModel):
    """A validated request to run one agent turn. Invalid input never reaches Redis."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True, frozen=True)

    session_id: str
    message: str
    agent: str
    idempotency_key: str | None = None
    strategy: Strategy = Strategy.ENQUEUE
    metadata: dict[str, Any] = Field(default_factory=dict)
    webhook: str | None = None
    """Where the run's outcome is POSTed when it ends; ``RunStore.submit`` checks it
    against ``FENCE_WEBHOOK_ALLOW``."""

    @field_validator("session_id")
    @classmethod
    def _session(cls, value: str) -> str:
        return validate_session_id(value)

    @field_validator("message")
    @classmethod
    def _message(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("message: must be a non-empty string")
        limit = get_settings().max_message_bytes
        if len(utf8(value, "message")) > limit:
            raise ValueError(f"message: longer than {limit} bytes (FENCE_MAX_MESSAGE_BYTES)")
        return value

    @field_validator("agent")
    @classmethod
    def _agent(cls, value: str) -> str:
        return validate_identifier(value, "agent")

    @field_validator("idempotency_key")
    @classmethod
    def _idempotency_key(cls, value: str | None) -> str | None:
        return None if value is None else validate_identifier(value, "idempotency_key")

    @field_validator("metadata", mode="before")
    @classmethod
    def _metadata(cls, value: object) -> dict[str, Any]:
        return check_metadata(value)

    @field_validator("webhook")
    @classmethod
    def _webhook(cls, value: str | None) -> str | None:
        if value is not None:
            webhook_target(value)  # raises naming the rule
        return value


_UNREADABLE: dict[str, Any] = {
    "id": "",
    "session_id": "",
    "agent": "",
    "message": "",
    "strategy": Strategy.ENQUEUE,
    "state": RunState.FAILED,
    "accepted_at": 0.0,
}
"""Safe values for required fields that cannot be read; other fields take their default."""


class PendingApproval(BaseModel):
    """The tool call a waiting run needs a decision on."""

    id: str
    """The model's id for the call."""
    name: str
    """The tool."""
    arguments: dict[str, Any]
    """As the model gave them; an approval may replace them."""
    parameters: dict[str, Any]
    """The tool's JSON schema: edited arguments must match it."""
    step: int
    index: int
    """The call's place in the turn: model step and call within it."""
    deadline: float
    """Epoch s: the run fails if no decision comes by then."""


class RunRecord(BaseModel):
    """A run as stored in Redis (a hash of strings) and shown to producers."""

    id: str
    session_id: str
    agent: str
    message: str
    strategy: Strategy
    state: RunState
    idempotency_key: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    accepted_at: Timestamp
    started_at: Timestamp | None = None
    finished_at: Timestamp | None = None
    worker: str | None = None
    deliveries: int = 0
    """Times a worker took the lease to run it: more than 1 means a worker died,
    stalled past its lease or could not reach memory, and another took over."""
    attempts: int = 0
    """Times the turn was tried (model and tools run), retries included, counted
    when a delivery finishes the run."""
    result: str | None = None
    error: str | None = None
    cancel_requested: bool = False
    approval: PendingApproval | None = None
    """The tool call a ``waiting`` run needs a decision on."""
    waits: int = 0
    """Times the run paused for an approval and was resumed (each resume is a delivery
    that takes over from no one)."""
    webhook: Annotated[str, Field(max_length=MAX_WEBHOOK_CHARS)] | None = None
    """Where the run's outcome is POSTed when it ends, if it was submitted with one."""
    webhook_state: WebhookState | None = None
    """The webhook's delivery, if the run has one."""
    webhook_attempts: int = 0
    """Delivery attempts begun, retries and the sweeper's re-sends included."""
    webhook_error: str | None = None
    """Why the last attempt failed (clipped), until one succeeds."""
    corrupt: str | None = None
    """What of the stored record could not be read as written (e.g. ``"metadata: not
    valid JSON"``), else None. Those fields hold safe values instead (see ``from_hash``);
    a worker fails such a run rather than run it, and the session moves on."""

    @property
    def redelivered(self) -> bool:
        """Another delivery held this run before and may have died holding it (a resume
        after an approval follows a delivery that let go)."""
        return self.deliveries > self.waits + 1

    @classmethod
    def from_hash(
        cls, fields: Mapping[str, str], *, run_id: str | None = None, session_id: str | None = None
    ) -> RunRecord:
        """The record a run hash holds. Never raises, whatever the hash holds: a field that
        cannot be read as written (missing, not valid Unicode, not a number, a state or
        metadata no submit could have written ...) gets a safe value and is named in
        ``corrupt``. An unreadable state reads as ``failed``: such a run will not be run.
        ``run_id`` and ``session_id`` are the ids the hash was found by; they win."""
        problems: dict[str, str] = {}
        data: dict[str, Any] = {}
        for name in cls.model_fields.keys() - {"corrupt"}:
            value = fields.get(name, "")
            if value == "":  # never written, or written empty (an unset optional field)
                continue
            try:
                utf8(value, name)
            except ValueError:
                problems[name] = f"{name}: not valid Unicode"
                value = value.encode("utf-8", "replace").decode("utf-8")
            data[name] = value
        for name, known in (("id", run_id), ("session_id", session_id)):
            if known is not None and data.get(name) != known:
                problems[name] = (
                    f"{name}: {'does not match its key' if name in data else 'missing'}"
                )
                data[name] = known
        data["cancel_requested"] = data.get("cancel_requested") == "1"
        try:
            data["metadata"] = read_metadata(data.get("metadata", "{}"))
        except ValueError as error:
            problems["metadata"] = str(error)
            data["metadata"] = {}
        if "approval" in data:
            try:
                data["approval"] = PendingApproval.model_validate_json(data["approval"])
            except ValidationError:
                problems["approval"] = "approval: not a pending approval"
                del data["approval"]
        try:
            record = cls.model_validate(data)
        except ValidationError as error:
            for problem in error.errors(include_input=False):
                name = str(problem["loc"][0])
                reason = str(problem["msg"]).replace("Input should", "should")
                problems[name] = f"{name}: {'missing' if problem['type'] == 'missing' else reason}"
                if name in _UNREADABLE:
                    data[name] = _UNREADABLE[name]
                else:
                    data.pop(name, None)  # its default
            record = cls.model_validate(data)
        if "accepted_at" in problems:  # the nearest time the record still knows
            accepted = record.started_at or record.finished_at or 0.0
            record = record.model_copy(update={"accepted_at": accepted})
        if not problems:
            return record
        reasons = "; ".join(problems[name] for name in cls.model_fields if name in problems)
        return record.model_copy(update={"corrupt": reasons})

    @staticmethod
    def new_hash(run_id: str, request: RunRequest, accepted_at: float) -> dict[str, str]:
        """The fields written when a run is accepted."""
        return {
            "id": run_id,
            "session_id": request.session_id,
            "agent": request.agent,
            "message": request.message,
            "strategy": request.strategy.value,
            "state": RunState.QUEUED.value,
            "idempotency_key": request.idempotency_key or "",
            "metadata": encode_metadata(request.metadata),
            "accepted_at": repr(accepted_at),
            "deliveries": "0",
            "attempts": "0",
            **(
                {"webhook": request.webhook, "webhook_state": WebhookState.PENDING.value}
                if request.webhook
                else {}
            ),
        }
