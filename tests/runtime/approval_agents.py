"""An agent whose tool needs approval, for the waiting-run tests.

The model asks for ``refund(order_id="A1", cents=500)`` until the turn holds the tool's
result, then answers ``done: <result>``. Each refund that runs is pushed to
``test:refunds:<run id>``, so a test sees what ran, with which arguments, and how often.
"""

from __future__ import annotations

from fence.agents import Agent
from fence.memory.base import BaseMemory
from fence.messages import Message, Role, ToolCall
from fence.models.base import Model, ModelResponse, ToolSpec
from fence.tools import ToolContext, tool
from tests.runtime.agents import control

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


def approver(memory: BaseMemory) -> Agent:
    @tool(requires_approval=True)
    def refund(order_id: str, cents: int, context: ToolContext) -> str:
        """Refund part of an order."""
        control().rpush(f"test:refunds:{context.run_id}", f"{order_id}:{cents}")
        return f"refunded {cents} on {order_id}"

    return Agent(identifier="approver", model=RefundModel(), memory=memory, tools=[refund])
