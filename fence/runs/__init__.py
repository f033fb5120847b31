"""The runtime contract shared by producers and workers: run schema, Redis keys,
Lua scripts and the store over them. No Celery here."""

from fence.runs.approvals import NotWaiting
from fence.runs.events import EventType, RunEvent
from fence.runs.registry import AgentFactory, Registry, load_registry
from fence.runs.schema import PendingApproval, RunRecord, RunRequest, RunState, Strategy
from fence.runs.store import (
    IdempotencyConflict,
    Lease,
    LeaseLost,
    RunNotFound,
    RunStore,
    RuntimeGauges,
    RunTimeout,
    SessionInfo,
    Skip,
    Submission,
)

__all__ = [
    "AgentFactory",
    "EventType",
    "IdempotencyConflict",
    "Lease",
    "LeaseLost",
    "NotWaiting",
    "PendingApproval",
    "Registry",
    "RunEvent",
    "RunNotFound",
    "RunRecord",
    "RunRequest",
    "RunState",
    "RunStore",
    "RunTimeout",
    "RuntimeGauges",
    "SessionInfo",
    "Skip",
    "Strategy",
    "Submission",
    "load_registry",
]
