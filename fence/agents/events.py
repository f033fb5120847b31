"""What a turn does while it runs, for ``Agent.stream`` and the runtime's event log.

``step`` counts the model calls of the turn, from 1: a turn that calls tools
has a step per model reply, and its answer is the last step's text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fence.agents.agent import TurnResult


@dataclass(frozen=True)
class TextEvent:
    """Model text as it is generated."""

    text: str
    step: int


@dataclass(frozen=True)
class ToolCallEvent:
    """The model asked for a tool (complete arguments, once the reply is whole)."""

    id: str
    name: str
    arguments: dict[str, Any]
    step: int


@dataclass(frozen=True)
class ToolResultEvent:
    """A tool's result, or its error (``failed``) as the model sees it."""

    id: str
    name: str
    content: str
    failed: bool
    step: int


@dataclass(frozen=True)
class TurnEvent:
    """The turn is over and committed: the last thing ``Agent.stream`` yields."""

    result: TurnResult


StepEvent = TextEvent | ToolCallEvent | ToolResultEvent
"""What happens inside a turn, before it ends."""
AgentEvent = StepEvent | TurnEvent
