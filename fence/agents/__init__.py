"""Agents: run turns of a conversation against a model, tools and a memory."""

from fence.agents.agent import Agent, MaxIterationsError, PreparedTurn, TurnResult

__all__ = ["Agent", "MaxIterationsError", "PreparedTurn", "TurnResult"]
