"""The ``durable`` agent of the durable-turn chaos run (``bench/_durable_chaos.py``).

Every turn is ``STEPS`` steps: ``TOOL_CALLS`` tool calls one after another, then the
answer. Each model call and tool call takes ``STEP_S``, so a SIGKILL can land inside
any of them. The model is offline and deterministic: it reads the turn so far and asks
for ``charge(n)``, n = the tool results in the turn + 1, until there are
``TOOL_CALLS``, then answers. ``charge`` acts as a payment API would: the effect of an
idempotency key is applied once, a repeat returns the first receipt, so executions
and effects are counted apart.

What happens is counted in the control Redis (``TEST_CONTROL_REDIS_URL``, else
``FENCE_REDIS_URL``):

* ``MODEL_CALLS`` hash: ``<run id>:<step>`` -> model calls made for that step;
* ``EXECUTIONS`` hash: idempotency key -> times ``charge`` ran with it;
* ``effects(run id)`` list: the keys whose effect was applied, in order; ``RECEIPTS``
  is the API's own table of keys it has seen;
* ``IN_FLIGHT`` hash: worker process group -> ``<run id> model <step>`` or
  ``<run id> tool <key>``, from a step's start until its journal entry is written;
* ``ENTERED`` channel: ``<process group> <time.time()> <run id> <model|tool> <step>``
  as a step starts, so a driver can aim a SIGKILL at it.

``unjournaled`` in the message runs the turn without the run's journal (the
baseline of ``bench/durable_turns.py``: each delivery starts the turn over).
"""

from __future__ import annotations

import os
import time
from functools import cache
from typing import Any

from redis.commands.core import Script

from fence.agents import Agent, Journal, PreparedTurn
from fence.memory.base import BaseMemory
from fence.messages import Message, Role, ToolCall
from fence.models.base import Model, ModelResponse, ToolSpec
from fence.tools import ToolContext
from tests.runtime.control import control

TOOL_CALLS = 4
STEPS = TOOL_CALLS + 1
STEP_S = 0.005
UNJOURNALED = "unjournaled"
ANSWER = f"charged {TOOL_CALLS} times"

MODEL_CALLS = "durable:model-calls"
EXECUTIONS = "durable:executions"
RECEIPTS = "durable:receipts"
IN_FLIGHT = "durable:in-flight"
ENTERED = "durable:entered"

APPLY_ONCE = """
-- KEYS: receipts, effects of the run   ARGV: idempotency key, receipt
-- RETURNS: the key's receipt; the effect is applied by the first call with the key only
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('RPUSH', KEYS[2], ARGV[1])
end
return redis.call('HGET', KEYS[1], ARGV[1])
"""


def effects(run_id: str) -> str:
    return f"durable:effects:{run_id}"


def receipt(n: int, key: str) -> str:
    """What ``charge`` returns for its n-th call of a turn, made with ``key``."""
    return f"receipt {n} {key}"


def model_calls_field(run_id: str, step: int) -> str:
    return f"{run_id}:{step}"


@cache
def apply_once() -> Script:
    return control().register_script(APPLY_ONCE)


def enter(run_id: str, kind: str, step: int, counter: str, field: str) -> None:
    """Mark the step in flight, count it under ``counter``/``field``, announce it: one
    round trip, in that order."""
    group = os.getpgrp()
    pipe = control().pipeline(transaction=False)
    detail = field if kind == "tool" else str(step)
    pipe.hset(IN_FLIGHT, str(group), f"{run_id} {kind} {detail}")
    pipe.hincrby(counter, field, 1)
    pipe.publish(ENTERED, f"{group} {time.time()!r} {run_id} {kind} {step}")
    pipe.execute()


def charge(n: int, context: ToolContext) -> str:
    """Charge the turn's n-th amount; a repeated idempotency key is charged once."""
    key = context.idempotency_key
    enter(context.run_id, "tool", n, EXECUTIONS, key)
    time.sleep(STEP_S / 2)
    given = apply_once()(keys=[RECEIPTS, effects(context.run_id)], args=[key, receipt(n, key)])
    time.sleep(STEP_S / 2)
    return str(given)


def tool_results_in_turn(messages: list[Message]) -> int:
    last_user = max(i for i, m in enumerate(messages) if m.role is Role.USER)
    return sum(m.role is Role.TOOL for m in messages[last_user:])


class StepsModel(Model):
    """Asks for ``charge`` until the turn holds ``TOOL_CALLS`` results, then answers."""

    model_id = "durable-steps"

    def __init__(self) -> None:
        super().__init__(max_retries=0)
        self.run_id = ""

    def _complete(
        self, messages: list[Message], system: str | None, tools: list[ToolSpec]
    ) -> ModelResponse:
        step = tool_results_in_turn(messages) + 1
        enter(self.run_id, "model", step, MODEL_CALLS, model_calls_field(self.run_id, step))
        time.sleep(STEP_S)
        if step <= TOOL_CALLS:
            call = ToolCall(id=f"charge-{step}", name="charge", arguments={"n": step})
            return ModelResponse(tool_calls=(call,), stop_reason="tool_use")
        return ModelResponse(content=ANSWER, stop_reason="end_turn")


class ProbedJournal:
    """The run's journal; once a step's entry is written, its step is no longer in flight."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def entries(self) -> list[dict[str, Any]]:
        return self.journal.entries()

    def record(self, entry: dict[str, Any]) -> None:
        self.journal.record(entry)
        control().hdel(IN_FLIGHT, str(os.getpgrp()))


class DurableAgent(Agent):
    def __init__(self, memory: BaseMemory) -> None:
        self.steps_model = StepsModel()
        super().__init__(
            identifier="durable", model=self.steps_model, memory=memory, tools=[charge]
        )

    def prepare_turn(self, prompt: str, **options: Any) -> PreparedTurn:
        self.steps_model.run_id = options.get("turn_id") or ""
        journal = options.get("journal")
        if UNJOURNALED in prompt.split():
            options["journal"] = None
        elif journal is not None:
            options["journal"] = ProbedJournal(journal)
        return super().prepare_turn(prompt, **options)


def durable(memory: BaseMemory) -> Agent:
    return DurableAgent(memory)
