"""The run request and run record that producers and workers share."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from fence.messages import utf8, validate_identifier, validate_session_id
from fence.settings import get_settings

MAX_METADATA_BYTES = 16 * 1024


class RunState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REJECTED = "rejected"

    @property
    def terminal(self) -> bool:
        return self not in (RunState.QUEUED, RunState.RUNNING)


class Strategy(StrEnum):
    """What to do with a message that arrives while its session is busy."""

    ENQUEUE = "enqueue"
    """Run it after the turns already accepted (default)."""
    REJECT = "reject"
    """Refuse it: the run is recorded as ``rejected``."""
    INTERRUPT = "interrupt"
    """Cancel the running turn without committing it; run this one next."""


class RunRequest(BaseModel):
    """A validated request to run one agent turn. Invalid input never reaches Redis."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True, frozen=True)

    session_id: str
    message: str
    agent: str
    idempotency_key: str | None = None
    strategy: Strategy = Strategy.ENQUEUE
    metadata: dict[str, Any] = Field(default_factory=dict)

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

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            encoded = json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise ValueError(f"metadata: must be JSON-serialisable ({error})") from None
        if len(encoded) > MAX_METADATA_BYTES:
            raise ValueError(f"metadata: larger than {MAX_METADATA_BYTES} bytes as JSON")
        return value


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
    accepted_at: float
    started_at: float | None = None
    finished_at: float | None = None
    worker: str | None = None
    attempts: int = 0
    result: str | None = None
    error: str | None = None
    cancel_requested: bool = False

    @classmethod
    def from_hash(cls, fields: dict[str, str]) -> RunRecord:
        data: dict[str, Any] = {k: v for k, v in fields.items() if v != ""}
        data["metadata"] = json.loads(data.get("metadata", "{}"))
        data["cancel_requested"] = data.get("cancel_requested") == "1"
        data.pop("pending_result", None)
        return cls.model_validate(data)

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
            "metadata": json.dumps(request.metadata),
            "accepted_at": repr(accepted_at),
            "attempts": "0",
        }
