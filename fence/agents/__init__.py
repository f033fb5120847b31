"""Agents: run turns of a conversation against a model, tools and a memory."""

from fence.agents.agent import Agent, MaxIterationsError, PreparedTurn, TurnResult
from fence.agents.events import (
    AgentEvent,
    StepEvent,
    TextEvent,
    ToolCallEvent,
    ToolResultEvent,
    TurnEvent,
)
from fence.agents.journal import ApprovalRequired, InMemoryJournal, Journal

__all__ = [
    "Agent",
    "AgentEvent",
    "ApprovalRequired",
    "InMemoryJournal",
    "Journal",
    "MaxIterationsError",
    "PreparedTurn",
    "StepEvent",
    "TextEvent",
    "ToolCallEvent",
    "ToolResultEvent",
    "TurnEvent",
    "TurnResult",
]
