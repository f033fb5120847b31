"""Building blocks for agent tests: scripted model responses and message views."""

from __future__ import annotations

from typing import Any

from fence.messages import Message, ToolCall
from fence.models.base import ModelResponse


def answer(text: str) -> ModelResponse:
    """A final answer from the model."""
    return ModelResponse(content=text, stop_reason="end_turn")


def calls(*tool_calls: tuple[str, str, dict[str, Any]], content: str = "") -> ModelResponse:
    """A model response asking for tools: each item is ``(call_id, tool_name, arguments)``."""
    return ModelResponse(
        content=content,
        tool_calls=tuple(ToolCall(id=i, name=n, arguments=a) for i, n, a in tool_calls),
        stop_reason="tool_use",
    )


def roles_and_contents(messages: list[Message]) -> list[tuple[str, str]]:
    return [(m.role.value, m.content) for m in messages]
