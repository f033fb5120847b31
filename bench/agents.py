"""Agent registry of the runtime benchmarks (``FENCE_AGENTS=bench.agents:registry``).

One agent, ``bench``, on ``EchoModel`` with a 2,000-token window. Its simulated
provider latency comes from ``BENCH_MODEL_LATENCY_S`` so one registry serves
every benchmark: the harness sets the latency per runtime, in the workers'
environment, without code.
"""

from __future__ import annotations

import os

from fence.agents import Agent
from fence.memory.base import BaseMemory
from fence.models.local import EchoModel

LATENCY_ENV = "BENCH_MODEL_LATENCY_S"


def latency_s() -> float:
    """The simulated model latency in seconds (default 0: measure pure runtime cost)."""
    return float(os.environ.get(LATENCY_ENV, "0"))


WINDOW_TOKENS = 2_000
"""Like the built-in ``support`` agent: a turn reads a bounded window, not the whole
history, so a session's 500th turn costs what its first did."""


def bench(memory: BaseMemory, model: EchoModel | None = None) -> Agent:
    """The benchmarks' agent; ``model`` replaces its ``EchoModel`` (same latency)."""
    return Agent(
        identifier="bench",
        model=model or EchoModel(latency=latency_s()),
        memory=memory,
        max_memory_size=WINDOW_TOKENS,
    )


registry = {"bench": bench}
