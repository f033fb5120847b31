"""Fence: LLM agents with shared, durable memory."""

__version__ = "0.1.0"
