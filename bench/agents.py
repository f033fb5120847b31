"""Agent registry of the runtime benchmarks (``FENCE_AGENTS=bench.agents:registry``).

``bench``, on ``EchoModel`` with a 2,000-token window. Its simulated provider
latency comes from ``BENCH_MODEL_LATENCY_S`` so one registry serves every
benchmark: the harness sets the latency per runtime, in the workers'
environment, without code.

``timed`` (``bench/streaming.py``) streams a paced answer whose every word is the
time it was emitted, so a reader of the run's events can tell how late each
delta reached it. Its length and pace come from ``BENCH_TIMED_TOKENS`` and
``BENCH_TOKEN_DELAY_S``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

from fence.agents import Agent
from fence.memory.base import BaseMemory
from fence.messages import Message
from fence.models.base import Model, ModelResponse, StreamItem, ToolSpec
from fence.models.local import EchoModel
from fence.models.streaming import TextDelta

LATENCY_ENV = "BENCH_MODEL_LATENCY_S"
TIMED_TOKENS_ENV = "BENCH_TIMED_TOKENS"
TOKEN_DELAY_ENV = "BENCH_TOKEN_DELAY_S"


def latency_s() -> float:
    """The simulated model latency in seconds (default 0: measure pure runtime cost)."""
    return float(os.environ.get(LATENCY_ENV, "0"))


WINDOW_TOKENS = 2_000
"""Like the built-in ``support`` agent: a turn reads a bounded window, not the whole
history, so a session's 500th turn costs what its first did."""


def bench(memory: BaseMemory) -> Agent:
    """The benchmarks' agent."""
    return Agent(
        identifier="bench",
        model=EchoModel(latency=latency_s()),
        memory=memory,
        max_memory_size=WINDOW_TOKENS,
    )


class TimedWordsModel(Model):
    """Answers ``tokens`` words, each ``time.time()`` when it was emitted and a space,
    waiting ``token_delay_s`` before each; streamed, each word is one delta."""

    model_id = "timed-words"

    def __init__(self, tokens: int, token_delay_s: float) -> None:
        super().__init__(source="fence-bench", max_retries=0)
        self.tokens = tokens
        self.token_delay_s = token_delay_s

    def _complete(
        self, messages: list[Message], system: str | None, tools: list[ToolSpec]
    ) -> ModelResponse:
        return ModelResponse(content="".join(self._words()), stop_reason="end_turn")

    def _stream(
        self, messages: list[Message], system: str | None, tools: list[ToolSpec]
    ) -> Iterator[StreamItem]:
        sent = []
        for word in self._words():
            sent.append(word)
            yield TextDelta(text=word)
        yield ModelResponse(content="".join(sent), stop_reason="end_turn")

    def _words(self) -> Iterator[str]:
        for _ in range(self.tokens):
            time.sleep(self.token_delay_s)
            yield f"{time.time():.6f} "


def timed(memory: BaseMemory) -> Agent:
    """The agent of the streaming-latency benchmark (300 words, 5 ms apart, by default)."""
    model = TimedWordsModel(
        int(os.environ.get(TIMED_TOKENS_ENV, "300")),
        float(os.environ.get(TOKEN_DELAY_ENV, "0.005")),
    )
    return Agent(identifier="timed", model=model, memory=memory, max_memory_size=WINDOW_TOKENS)


registry = {"bench": bench, "timed": timed}
