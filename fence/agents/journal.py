"""The step journal: what a turn has already done, so running it again repeats nothing.

The agent records each model reply and each tool result as soon as it has it, and
before a step it looks the step up: a journaled model reply is not asked for again,
a journaled tool result is not executed again. Only the step in flight when a
process died can run twice, and its tool gets the same idempotency key.

A tool that needs approval pauses the turn (``ApprovalRequired``) until a decision
for that call is journaled; an approved call then runs (with edited arguments, if
given), a denied one returns the denial to the model as the tool's result.

``Journal`` is the hook: ``InMemoryJournal`` here, ``fence.runs.journal`` in the
runtime (Redis, fenced by the lease). Entries are plain JSON objects.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from fence.errors import FenceError
from fence.messages import ToolCall
from fence.models.base import ModelResponse


class EntryKind(StrEnum):
    """What a journal entry records."""

    MODEL = "model"
    """The model's reply of a step."""
    TOOL = "tool"
    """The result of one tool call of a step."""
    DECISION = "decision"
    """A person's decision on a tool call that needs approval."""


class ApprovalRequired(FenceError):
    """The model called a tool that needs approval and none is journaled for the call:
    the turn stops here, with nothing written to memory."""

    def __init__(self, step: int, index: int, call: ToolCall, parameters: dict[str, Any]) -> None:
        super().__init__(f"tool {call.name!r} needs approval before it runs (step {step})")
        self.step = step
        self.index = index
        self.call = call
        self.parameters = parameters
        """The tool's JSON schema, which edited arguments must match."""


class Journal(Protocol):
    """Where a turn's finished steps are kept across crashes, retries and pauses."""

    def entries(self) -> list[dict[str, Any]]:
        """Everything recorded for the turn so far, oldest first."""
        ...

    def record(self, entry: dict[str, Any]) -> None:
        """Keep ``entry`` before the turn goes on; raise if it cannot be kept."""
        ...


class InMemoryJournal:
    """A journal in a list: for tests, and to resume a library turn after an approval."""

    def __init__(self, entries: Iterable[dict[str, Any]] = ()) -> None:
        self._entries = list(entries)

    def entries(self) -> list[dict[str, Any]]:
        return list(self._entries)

    def record(self, entry: dict[str, Any]) -> None:
        self._entries.append(entry)

    def decide(
        self,
        pending: ApprovalRequired,
        *,
        approved: bool,
        arguments: dict[str, Any] | None = None,
        reason: str = "",
    ) -> None:
        """Record a person's decision on the call ``pending`` stopped at."""
        self.record(decision_entry(pending.step, pending.index, approved, arguments, reason))


@dataclass(frozen=True)
class Decision:
    """An approval decision on one tool call."""

    approved: bool
    arguments: dict[str, Any] | None
    """Edited arguments to run the tool with instead of the model's; None keeps them."""
    reason: str


@dataclass(frozen=True)
class ToolResult:
    content: str
    failed: bool


class Replay:
    """A journal's entries looked up by step: the model reply of step n, the result and
    the approval decision of call i of step n."""

    def __init__(self, entries: Iterable[dict[str, Any]] = ()) -> None:
        self.replies: dict[int, ModelResponse] = {}
        self.results: dict[tuple[int, int], ToolResult] = {}
        self.decisions: dict[tuple[int, int], Decision] = {}
        for entry in entries:  # the first of a step wins: a retried write may repeat one
            kind, step = entry["kind"], entry["step"]
            if kind == EntryKind.MODEL:
                self.replies.setdefault(step, ModelResponse.model_validate(entry["reply"]))
            elif kind == EntryKind.TOOL:
                self.results.setdefault(
                    (step, entry["index"]), ToolResult(entry["content"], entry["failed"])
                )
            elif kind == EntryKind.DECISION:
                self.decisions.setdefault(
                    (step, entry["index"]),
                    Decision(entry["approved"], entry.get("arguments"), entry.get("reason", "")),
                )


def reply_entry(step: int, reply: ModelResponse) -> dict[str, Any]:
    return {
        "kind": EntryKind.MODEL.value,
        "step": step,
        "reply": reply.model_dump(mode="json", include={"content", "tool_calls", "stop_reason"}),
    }


def result_entry(step: int, index: int, content: str, failed: bool) -> dict[str, Any]:
    return {
        "kind": EntryKind.TOOL.value,
        "step": step,
        "index": index,
        "content": content,
        "failed": failed,
    }


def decision_entry(
    step: int, index: int, approved: bool, arguments: dict[str, Any] | None, reason: str
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "kind": EntryKind.DECISION.value,
        "step": step,
        "index": index,
        "approved": approved,
    }
    if arguments is not None:
        entry["arguments"] = arguments
    if reason:
        entry["reason"] = reason
    return entry
