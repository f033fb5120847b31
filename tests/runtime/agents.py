"""Agents the runtime tests steer through directives in the user message.

``key=K`` names the turn for the test: each model call increments the Redis
counter ``test:calls:K`` and pushes to ``test:entered:K``. ``block`` makes the
first call for K wait until the test pushes to ``test:release:K``;
``hold-before-commit`` / ``hold-after-commit`` make the memory push to
``test:committing:K`` / ``test:committed:K`` and wait on it right before /
after the commit (the first commit for K only);
``fail=N`` fails the first N calls (``fail=always``: every call;
``fail-after=N``: every call after the first N);
``sleep=S`` takes S seconds; ``block-mid-stream`` streams its answer in two
pieces and, on the first call for K, waits for the release between them;
``unjournaled`` runs the turn without the run's step journal, so a later delivery
calls the model again (as every delivery did before turns were journaled).

The control keys live in the runtime's Redis, or in ``TEST_CONTROL_REDIS_URL``
when set, so a test can kill the runtime's Redis and still steer the model.
The hold directives need SQLite memory; on other backends the agent uses the
memory as it is.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from fence.agents import Agent, PreparedTurn
from fence.errors import ModelError
from fence.memory.base import BaseMemory
from fence.memory.sqlite import SQLiteMemory
from fence.messages import Message, Role
from fence.models.base import Model, ModelResponse, StreamItem, ToolSpec
from fence.models.streaming import TextDelta
from tests.runtime.control import control
from tests.runtime.durable_agents import durable
from tests.runtime.tool_agents import approver, noter

RELEASE_TIMEOUT_S = 120
MID_STREAM_HEAD = "first, "


def directives(text: str) -> dict[str, str]:
    found = {}
    for word in text.split():
        name, _, value = word.partition("=")
        found[name] = value
    return found


def last_user_text(messages: list[Message]) -> str:
    return next(m.content for m in reversed(messages) if m.role is Role.USER)


class ControlledModel(Model):
    model_id = "controlled"

    def __init__(self) -> None:
        super().__init__(max_retries=0)

    def _complete(
        self, messages: list[Message], system: str | None, tools: list[ToolSpec]
    ) -> ModelResponse:
        text = last_user_text(messages)
        found = directives(text)
        if "key" in found:
            key = found["key"]
            calls = control().incr(f"test:calls:{key}")
            control().rpush(f"test:entered:{key}", calls)
            if "block" in found and calls == 1:
                control().blpop([f"test:release:{key}"], timeout=RELEASE_TIMEOUT_S)
            fail = found.get("fail")
            if fail == "always" or (fail and calls <= int(fail)):
                raise ModelError(f"scripted failure on call {calls}")
            if "fail-after" in found and calls > int(found["fail-after"]):
                raise ModelError(f"scripted failure on call {calls}")
        if "sleep" in found:
            time.sleep(float(found["sleep"]))
        return ModelResponse(content=f"answer to: {text}")

    def _stream(
        self, messages: list[Message], system: str | None, tools: list[ToolSpec]
    ) -> Iterator[StreamItem]:
        text = last_user_text(messages)
        found = directives(text)
        if "block-mid-stream" not in found:
            yield from super()._stream(messages, system, tools)
            return
        key = found["key"]
        calls = control().incr(f"test:calls:{key}")
        yield TextDelta(text=MID_STREAM_HEAD)
        control().rpush(f"test:entered:{key}", calls)
        if calls == 1:
            control().blpop([f"test:release:{key}"], timeout=RELEASE_TIMEOUT_S)
        yield TextDelta(text=f"answer to: {text}")
        yield ModelResponse(content=f"{MID_STREAM_HEAD}answer to: {text}")


class HoldingMemory(SQLiteMemory):
    """SQLite memory that can pause right before or after a commit, for crash tests."""

    def commit_turn(self, turn_id, messages, **fencing) -> bool:
        found = directives(next(m.content for m in messages if m.role is Role.USER))
        if "hold-before-commit" in found:
            self._hold(found["key"], "committing", turn_id)
        written = super().commit_turn(turn_id, messages, **fencing)
        if "hold-after-commit" in found:
            self._hold(found["key"], "committed", turn_id)
        return written

    @staticmethod
    def _hold(key: str, where: str, turn_id: str) -> None:
        if control().incr(f"test:holds:{key}") > 1:
            return
        control().rpush(f"test:{where}:{key}", turn_id)
        control().blpop([f"test:release:{key}"], timeout=RELEASE_TIMEOUT_S)


class ControlledAgent(Agent):
    def prepare_turn(self, prompt: str, **options: Any) -> PreparedTurn:
        if "unjournaled" in directives(prompt):
            options["journal"] = None
        return super().prepare_turn(prompt, **options)


def controlled(memory: BaseMemory) -> Agent:
    if isinstance(memory, SQLiteMemory):
        memory = HoldingMemory(memory.db_path, memory.session_id)
    return ControlledAgent(identifier="controlled", model=ControlledModel(), memory=memory)


registry = {
    "controlled": controlled,
    "durable": durable,
    "approver": approver,
    "noter": noter,
}
