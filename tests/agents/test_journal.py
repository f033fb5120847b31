"""The step journal in the library: a turn run again repeats no finished step, tools get
stable idempotency keys, and a tool that needs approval pauses the turn."""

from __future__ import annotations

import pytest

from fence.agents import Agent, ApprovalRequired, InMemoryJournal, TextEvent, ToolResultEvent
from fence.messages import Role
from fence.models.local import ScriptedModel
from fence.tools import Tool, ToolContext, tool
from tests.agents.helpers import answer, calls


def four_steps() -> list:
    """A model that asks for four tool calls, one per step, then answers."""
    return [calls((f"c{n}", "charge", {"cents": n})) for n in range(1, 5)] + [answer("charged")]


def test_a_turn_run_again_after_a_crash_repeats_no_finished_step(memory):
    """SystemExit stands for the process dying: it is not a tool error the model sees."""
    charges: list[str] = []
    crash_at = {3}

    def charge(cents: int, context: ToolContext) -> str:
        """Charge the card."""
        if cents in crash_at:
            crash_at.clear()
            raise SystemExit("killed inside the third call")
        charges.append(context.idempotency_key)
        return f"charged {cents}"

    model = ScriptedModel(four_steps())
    agent = Agent("bot", model, memory=memory, tools=[charge])
    journal = InMemoryJournal()

    with pytest.raises(SystemExit):
        agent.prepare_turn("pay", journal=journal, turn_id="run-1")
    asked_before = len(model.calls)
    prepared = agent.prepare_turn("pay", journal=journal, turn_id="run-1", attempt=2)

    assert prepared.answer == "charged"
    assert asked_before == 3
    assert len(model.calls) == 5  # steps 4 and 5 only: the first three replies were journaled
    assert charges == [f"run-1:{step}:0" for step in (1, 2, 3, 4)]  # each charge once
    assert memory.get_messages() == []  # preparing writes nothing


def test_the_step_in_flight_runs_again_with_the_same_idempotency_key(memory):
    seen: list[tuple[str, int]] = []
    dying = [True]

    def send(to: str, context: ToolContext) -> str:
        """Send an e-mail."""
        seen.append((context.idempotency_key, context.attempt))
        if dying:
            dying.clear()
            raise SystemExit("killed mid-call")
        return "sent"

    model = ScriptedModel([calls(("c1", "send", {"to": "ann"})), answer("done")])
    agent = Agent("bot", model, memory=memory, tools=[send])
    journal = InMemoryJournal()
    with pytest.raises(SystemExit):
        agent.prepare_turn("mail ann", journal=journal, turn_id="r")
    agent.prepare_turn("mail ann", journal=journal, turn_id="r", attempt=2)

    assert seen == [("r:1:0", 1), ("r:1:0", 2)]
    assert len(model.calls) == 2  # the reply asking for the call was journaled


def test_a_tool_context_is_not_part_of_the_schema():
    def lookup(order_id: str, context: ToolContext) -> str:
        """Look an order up."""
        return context.idempotency_key

    spec = Tool(lookup).spec
    assert list(spec.parameters["properties"]) == ["order_id"]


def test_a_replayed_turn_streams_its_journaled_text_again(memory):
    journal = InMemoryJournal()
    first = Agent("bot", ScriptedModel(["hello there"]), memory=memory)
    first.prepare_turn("hi", journal=journal, turn_id="r")
    again = Agent("bot", ScriptedModel([]), memory=memory)  # would fail if asked

    events = []
    prepared = again.prepare_turn("hi", journal=journal, turn_id="r", on_event=events.append)

    assert prepared.answer == "hello there"
    assert [e.text for e in events if isinstance(e, TextEvent)] == ["hello there"]


@tool(requires_approval=True)
def refund(order_id: str, cents: int) -> str:
    """Refund an order."""
    return f"refunded {cents} on {order_id}"


def refund_model() -> ScriptedModel:
    return ScriptedModel([calls(("c1", "refund", {"order_id": "A1", "cents": 500})), answer("ok")])


def test_a_tool_that_needs_approval_pauses_the_turn_until_approved(memory):
    agent = Agent("bot", refund_model(), memory=memory, tools=[refund])
    journal = InMemoryJournal()

    with pytest.raises(ApprovalRequired) as paused:
        agent.run_turn("refund A1", turn_id="r", journal=journal)
    assert (paused.value.call.name, paused.value.call.arguments) == (
        "refund",
        {"order_id": "A1", "cents": 500},
    )
    assert memory.get_messages() == []

    journal.decide(paused.value, approved=True)
    result = agent.run_turn("refund A1", turn_id="r", journal=journal)

    assert result.answer == "ok"
    [tool_message] = [m for m in result.messages if m.role is Role.TOOL]
    assert tool_message.content == "refunded 500 on A1"
    assert len(agent.model.calls) == 2  # the first reply was not asked for again


def test_approved_with_edited_arguments_runs_those_and_shows_them(memory):
    agent = Agent("bot", refund_model(), memory=memory, tools=[refund])
    journal = InMemoryJournal()
    with pytest.raises(ApprovalRequired) as paused:
        agent.prepare_turn("refund A1", journal=journal, turn_id="r")

    journal.decide(paused.value, approved=True, arguments={"order_id": "A1", "cents": 200})
    prepared = agent.prepare_turn("refund A1", journal=journal, turn_id="r")

    asked = next(m for m in prepared.messages if m.tool_calls)
    assert asked.tool_calls[0].arguments == {"order_id": "A1", "cents": 200}
    assert prepared.messages[-2].content == "refunded 200 on A1"


def test_a_denial_is_the_tools_result_for_the_model(memory):
    agent = Agent("bot", refund_model(), memory=memory, tools=[refund])
    journal = InMemoryJournal()
    with pytest.raises(ApprovalRequired) as paused:
        agent.prepare_turn("refund A1", journal=journal, turn_id="r")

    journal.decide(paused.value, approved=False, reason="over the limit")
    events = []
    agent.prepare_turn("refund A1", journal=journal, turn_id="r", on_event=events.append)

    [result] = [e for e in events if isinstance(e, ToolResultEvent)]
    assert (result.content, result.failed) == ("denied: over the limit", True)
    assert agent.model.calls[-1][-1].content == "denied: over the limit"


def test_arguments_are_checked_against_the_tools_schema():
    assert refund.check({"order_id": "A1", "cents": 5}) == []
    problems = refund.check({"order_id": "A1", "cents": "lots"})
    assert [field for field, _ in problems] == ["cents"]
    assert [field for field, _ in refund.check({"order_id": "A1"})] == ["cents"]


def test_a_streamed_turn_resumes_from_its_journal_after_an_approval(memory):
    agent = Agent("bot", refund_model(), memory=memory, tools=[refund])
    journal = InMemoryJournal()
    with pytest.raises(ApprovalRequired) as paused:
        list(agent.stream("refund A1", turn_id="r", journal=journal))

    journal.decide(paused.value, approved=True)
    events = list(agent.stream("refund A1", turn_id="r", journal=journal))

    assert events[-1].result.answer == "ok" and events[-1].result.committed
    assert len(agent.model.calls) == 2
