"""The built-in agent registry: demo agents on the offline model, no configuration needed.

Point ``FENCE_AGENTS`` at your own mapping of name -> factory(memory) -> Agent.

With ``FENCE_LONG_TERM_TOP_K`` above 0 the built-in agents recall that many
long-term records for each prompt (``fence.memory.long_term``; AgentCore
memory). A worker imports this module when it starts, so on a memory that
cannot search, the import refuses the setting and the worker stops there,
saying so, instead of failing every turn.
"""

from __future__ import annotations

from fence.agents import Agent
from fence.memory.base import BaseMemory
from fence.memory.long_term import recall_from_settings
from fence.memory.url import memory_factory
from fence.models.local import EchoModel, ToolEchoModel
from fence.settings import get_settings
from fence.tools import tool


def demo(memory: BaseMemory) -> Agent:
    return Agent(
        identifier="demo",
        model=EchoModel(source="fence-demo"),
        memory=memory,
        long_term=recall_from_settings(memory),
    )


def support(memory: BaseMemory) -> Agent:
    return Agent(
        identifier="support",
        model=EchoModel(source="fence-demo"),
        memory=memory,
        role="You are a helpful customer support agent. Be polite and brief.",
        max_memory_size=2_000,
        long_term=recall_from_settings(memory),
    )


@tool(requires_approval=True)
def refund(order_id: str, cents: int) -> str:
    """Refund part of an order to the customer's card."""
    return f"refunded {cents} cents on order {order_id}"


def refunds(memory: BaseMemory) -> Agent:
    """Asks a person before each refund: ``refund order_id=A17 cents=500`` makes the run
    wait for ``fence approve RUN`` (or a denial) before the tool runs."""
    return Agent(
        identifier="refunds",
        model=ToolEchoModel(source="fence-demo"),
        memory=memory,
        tools=[refund],
    )


def refuse_long_term_without_search() -> None:
    """Raise ``ValueError`` naming ``FENCE_LONG_TERM_TOP_K`` if it is on and
    ``FENCE_MEMORY`` cannot search long-term memory (opens one memory to see)."""
    settings = get_settings()
    if settings.long_term_top_k:
        recall_from_settings(memory_factory(settings.memory)("fence-config-check"), settings)


registry = {"demo": demo, "support": support, "refunds": refunds}
refuse_long_term_without_search()
