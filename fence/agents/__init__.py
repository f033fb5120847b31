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

__all__ = [
    "Agent",
    "AgentEvent",
    "MaxIterationsError",
    "PreparedTurn",
    "StepEvent",
    "TextEvent",
    "ToolCallEvent",
    "ToolResultEvent",
    "TurnEvent",
    "TurnResult",
]
