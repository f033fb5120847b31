"""Committing turns safely: fencing, checkpoints, and summarizing history."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from fence.agents import Agent
from fence.errors import ModelError, StaleWriteError
from fence.memory import BaseMemory
from fence.messages import Message, Role
from fence.models.base import ModelResponse, ToolSpec
from fence.models.local import ScriptedModel
from tests.agents.helpers import answer, calls, roles_and_contents


class InterruptedModel(ScriptedModel):
    """Before its first answer, another writer commits a turn to the same session."""

    def __init__(self, responses: Sequence[ModelResponse | str], other: BaseMemory) -> None:
        super().__init__(responses)
        self.other = other

    def _complete(
        self, messages: list[Message], system: str | None, tools: list[ToolSpec]
    ) -> ModelResponse:
        if not self.calls:
            self.other.commit_turn("other-worker", [Message(role=Role.USER, content="newer")])
        return super()._complete(messages, system, tools)


def test_a_fenced_commit_is_refused_when_history_moved_during_the_turn(open_memory):
    open_memory("shared").add_user_message("older")
    model = InterruptedModel([answer("stale answer")], other=open_memory("shared"))
    agent = Agent(identifier="bot", model=model, memory=open_memory("shared"))

    with pytest.raises(StaleWriteError, match="moved on"):
        agent.run_turn("question", turn_id="stale-run", fenced=True)

    memory = open_memory("shared")
    assert [m.content for m in memory.get_messages()] == ["older", "newer"]
    assert not memory.has_turn("stale-run")


def test_an_unfenced_commit_appends_after_a_concurrent_writer(open_memory):
    model = InterruptedModel([answer("answer")], other=open_memory("shared"))
    agent = Agent(identifier="bot", model=model, memory=open_memory("shared"))

    agent.run_turn("question")

    assert [m.content for m in open_memory("shared").get_messages()] == [
        "newer",
        "question",
        "answer",
    ]


def test_a_fenced_commit_succeeds_when_history_did_not_move(memory):
    memory.add_user_message("older")
    agent = Agent(identifier="bot", model=ScriptedModel([answer("ok")]), memory=memory)

    assert agent.run_turn("question", fenced=True).committed
    assert [m.content for m in memory.get_messages()] == ["older", "question", "ok"]


def test_a_fenced_commit_is_based_on_the_whole_history_not_the_window(memory):
    for i in range(3):
        memory.add_user_message(f"message {i} that the small window cannot hold")
    agent = Agent(
        identifier="bot", model=ScriptedModel([answer("ok")]), memory=memory, max_memory_size=1
    )

    assert agent.run_turn("question", fenced=True).committed


def lookup(order: int) -> str:
    """Look up an order."""
    return "shipped"


@pytest.mark.parametrize(
    ("raise_on", "model_calls"),
    [(1, 0), (2, 1), (3, 1), (4, 2)],
    ids=["before-first-model-call", "before-tool", "before-second-model-call", "before-commit"],
)
def test_a_raising_checkpoint_aborts_the_turn_with_nothing_written(memory, raise_on, model_calls):
    memory.add_user_message("kept")
    model = ScriptedModel([calls(("c1", "lookup", {"order": 1})), answer("shipped")])
    agent = Agent(identifier="bot", model=model, memory=memory, tools=[lookup])
    checks: list[int] = []

    class LeaseLost(Exception):
        pass

    def checkpoint() -> None:
        checks.append(len(checks) + 1)
        if len(checks) == raise_on:
            raise LeaseLost

    with pytest.raises(LeaseLost):
        agent.run_turn("where is order 1?", checkpoint=checkpoint)

    assert len(model.calls) == model_calls
    assert [m.content for m in memory.get_messages()] == ["kept"]


def test_a_checkpoint_runs_before_each_model_and_tool_step_and_before_the_commit(memory):
    model = ScriptedModel([calls(("c1", "lookup", {"order": 1})), answer("shipped")])
    agent = Agent(identifier="bot", model=model, memory=memory, tools=[lookup])
    checks: list[int] = []

    agent.run_turn(
        "where is order 1?", checkpoint=lambda: checks.append(len(memory.get_messages()))
    )

    assert checks == [0, 0, 0, 0], "four checks, all before anything was written"
    assert len(memory.get_messages()) == 4


# -- summarize_memory ---------------------------------------------------------------


def test_summarize_memory_keeps_the_system_prompt_and_leaves_one_system_note(memory):
    memory.set_system_message("You are a support agent.")
    model = ScriptedModel([answer("a1"), answer("a2"), answer("Alice's order 98765 shipped.")])
    agent = Agent(identifier="bot", model=model, memory=memory)
    agent.run("I'm Alice")
    agent.run("Order 98765 status?")

    summary = agent.summarize_memory()

    assert summary == "Alice's order 98765 shipped."
    assert memory.get_system_message() == "You are a support agent."
    [note] = memory.get_messages()
    assert note.role is Role.SYSTEM
    assert note.content == "Previous conversation summarized: Alice's order 98765 shipped."
    summarize_call = model.calls[2]
    assert [m.content for m in summarize_call[:4]] == [
        "I'm Alice",
        "a1",
        "Order 98765 status?",
        "a2",
    ]
    assert summarize_call[-1].role is Role.USER
    assert model.systems[2] == "You are a support agent."


def test_after_summarizing_the_next_turn_sees_the_note(memory):
    model = ScriptedModel([answer("a1"), answer("the summary"), answer("a2")])
    agent = Agent(identifier="bot", model=model, memory=memory)
    agent.run("q1")
    agent.summarize_memory()

    agent.run("q2")

    assert roles_and_contents(model.calls[2]) == [
        ("system", "Previous conversation summarized: the summary"),
        ("user", "q2"),
    ]


def test_summarizing_an_empty_history_does_nothing(memory):
    model = ScriptedModel([])

    assert Agent(identifier="bot", model=model, memory=memory).summarize_memory() == ""
    assert model.calls == [] and memory.get_messages() == []


@pytest.mark.parametrize("failure", [ModelError("provider down"), answer("   ")])
def test_a_failed_summary_keeps_the_history(memory, failure):
    memory.add_user_message("remember me")
    agent = Agent(identifier="bot", model=ScriptedModel([failure]), memory=memory)

    with pytest.raises(ModelError):
        agent.summarize_memory()

    assert [m.content for m in memory.get_messages()] == ["remember me"]
