"""The built-in agent registry: demo agents on the offline model, no configuration needed.

Point ``FENCE_AGENTS`` at your own mapping of name -> factory(memory) -> Agent.
"""

from __future__ import annotations

from fence.agents import Agent
from fence.memory.base import BaseMemory
from fence.models.local import EchoModel


def demo(memory: BaseMemory) -> Agent:
    return Agent(identifier="demo", model=EchoModel(source="fence-demo"), memory=memory)


def support(memory: BaseMemory) -> Agent:
    return Agent(
        identifier="support",
        model=EchoModel(source="fence-demo"),
        memory=memory,
        role="You are a helpful customer support agent. Be polite and brief.",
        max_memory_size=2_000,
    )


registry = {"demo": demo, "support": support}
