"""Agent registry of the chaos benchmark (``FENCE_AGENTS=bench.chaos_agents:registry``).

The ``bench`` agent of ``bench/agents.py``, plus hooks that let the chaos
driver hit the narrowest window of a turn: after its answer was saved in
Redis, before its memory commit. Only user messages containing ``HOLD_MARK``
use them, so every other turn costs what it does in ``bench/agents.py``.

* The memory (SQLite), right before ``commit_turn``, publishes
  ``"<process group> <run id>"`` on ``HOLDS_CHANNEL`` and, if the driver
  listens, waits up to ``HOLD_WAIT_S`` on ``release_key(run id)``: meanwhile
  the driver can SIGSTOP that worker's process group.
* A message that also contains ``UNJOURNALED_MARK`` runs without the run's step
  journal, so a worker that takes the run over calls the model again instead of
  replaying the reply the stopped worker journaled; the model fails while the
  message is in ``FAILING_KEY`` (a set), so that takeover ends the run ``failed``
  without a commit. A journaled turn's takeover replays the reply and commits.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import cache
from typing import Any

import redis

from bench.agents import WINDOW_TOKENS, latency_s
from fence.agents import Agent, PreparedTurn
from fence.errors import ModelError
from fence.memory.base import BaseMemory
from fence.memory.sqlite import SQLiteMemory
from fence.messages import Message, Role
from fence.models.base import ModelResponse, ToolSpec
from fence.models.local import EchoModel

HOLD_MARK = "[hold]"
UNJOURNALED_MARK = "[unjournaled]"
HOLD_WAIT_S = 2
"""How long a marked commit waits for the driver before going ahead anyway."""

HOLDS_CHANNEL = "bench:chaos:holds"
FAILING_KEY = "bench:chaos:failing"


def release_key(run_id: str) -> str:
    return f"bench:chaos:release:{run_id}"


@cache
def control() -> redis.Redis:
    """The benchmark's side channel: the runtime's own Redis."""
    return redis.Redis.from_url(os.environ["FENCE_REDIS_URL"], decode_responses=True)


def user_text(messages: Sequence[Message]) -> str:
    return next((m.content for m in reversed(messages) if m.role is Role.USER), "")


class FailableEchoModel(EchoModel):
    """``EchoModel`` that fails on a marked message the driver listed in ``FAILING_KEY``."""

    def _complete(
        self, messages: list[Message], system: str | None, tools: list[ToolSpec]
    ) -> ModelResponse:
        text = user_text(messages)
        if HOLD_MARK in text and control().sismember(FAILING_KEY, text):
            raise ModelError("the chaos driver made this turn's model fail")
        return super()._complete(messages, system, tools)


class HoldingMemory(SQLiteMemory):
    """SQLite memory that offers the driver a pause right before a marked commit."""

    def commit_turn(self, turn_id: str, messages: Sequence[Message], **fencing: Any) -> bool:
        if HOLD_MARK not in user_text(messages):
            return super().commit_turn(turn_id, messages, **fencing)
        if control().publish(HOLDS_CHANNEL, f"{os.getpgrp()} {turn_id}"):
            control().blpop([release_key(turn_id)], timeout=HOLD_WAIT_S)
        return super().commit_turn(turn_id, messages, **fencing)


class ChaosAgent(Agent):
    """``Agent`` that runs a message marked ``UNJOURNALED_MARK`` without the journal."""

    def prepare_turn(self, prompt: str, **options: Any) -> PreparedTurn:
        if UNJOURNALED_MARK in prompt:
            options["journal"] = None
        return super().prepare_turn(prompt, **options)


def bench(memory: BaseMemory) -> Agent:
    """``bench/agents.py``'s ``bench`` with the hooks above."""
    if isinstance(memory, SQLiteMemory):  # the stop mode's memory; others are not held
        memory = HoldingMemory(memory.db_path, memory.session_id)
    return ChaosAgent(
        identifier="bench",
        model=FailableEchoModel(latency=latency_s()),
        memory=memory,
        max_memory_size=WINDOW_TOKENS,
    )


registry = {"bench": bench}
