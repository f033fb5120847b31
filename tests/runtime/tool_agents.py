"""Agents with tools, for the waiting-run and journal tests.

``approver``: the model asks for ``refund(order_id="A1", cents=500)`` until the turn
holds the tool's result, then answers ``done: <result>``. The tool needs approval;
each refund that runs is pushed to ``test:refunds:<run id>``, so a test sees what ran,
with which arguments, and how often.

``noter``: ``note key=K text=T`` calls ``note(key, text)`` (``ToolEchoModel``), which
counts its executions in ``test:notes:K``; the model call that reads the note fails
the first time (``test:note-reads:K`` counts those calls), so the turn is retried.
"""

from __future__ import annotations

from fence.agents import Agent
from fence.errors import ModelError
from fence.memory.base import BaseMemory
from fence.messages import Message, Role, ToolCall
from fence.models.base import Model, ModelResponse, ToolSpec
from fence.models.local import ToolEchoModel
from fence.tools import ToolContext, tool
from tests.runtime.control import control

ASKED = {"order_id": "A1", "cents": 500}


class RefundModel(Model):
    model_id = "refund"

    def __init__(self) -> None:
        super().__init__(max_retries=0)

    def _complete(
        self, messages: list[Message], system: str | None, tools: list[ToolSpec]
    ) -> ModelResponse:
        last = messages[-1]
        if last.role is Role.TOOL:
            return ModelResponse(content=f"done: {last.content}")
        return ModelResponse(tool_calls=(ToolCall(id="call-1", name="refund", arguments=ASKED),))


class FailsOnceAfterATool(ToolEchoModel):
    def _complete(
        self, messages: list[Message], system: str | None, tools: list[ToolSpec]
    ) -> ModelResponse:
        if messages[-1].role is Role.TOOL:
            key = messages[-2].tool_calls[0].arguments["key"]
            if control().incr(f"test:note-reads:{key}") == 1:
                raise ModelError("scripted failure reading the note")
        return super()._complete(messages, system, tools)


def noter(memory: BaseMemory) -> Agent:
    def note(key: str, text: str) -> str:
        """Write a note down."""
        control().incr(f"test:notes:{key}")
        return f"noted {text}"

    return Agent(identifier="noter", model=FailsOnceAfterATool(), memory=memory, tools=[note])


def approver(memory: BaseMemory) -> Agent:
    @tool(requires_approval=True)
    def refund(order_id: str, cents: int, context: ToolContext) -> str:
        """Refund part of an order."""
        control().rpush(f"test:refunds:{context.run_id}", f"{order_id}:{cents}")
        return f"refunded {cents} on {order_id}"

    return Agent(identifier="approver", model=RefundModel(), memory=memory, tools=[refund])
