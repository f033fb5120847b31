"""``Agent.stream`` on every memory backend: what a turn does, as it does it, then the
committed turn, and nothing written when the caller stops early."""

from __future__ import annotations

import uuid

from fence.agents import Agent, TextEvent, ToolCallEvent, ToolResultEvent, TurnEvent
from fence.messages import Role
from fence.models.local import EchoModel, ScriptedModel
from tests.agents.helpers import answer, calls


def lookup_order(order_id: str) -> str:
    """Look up the shipping status of an order by its number."""
    return {"98765": "shipped"}[order_id]


def session() -> str:
    return f"s-{uuid.uuid4().hex[:12]}"


def test_a_streamed_turn_yields_the_answer_as_it_is_made_then_commits_it(open_memory):
    sid = session()
    agent = Agent(identifier="bot", model=EchoModel(), memory=open_memory(sid))

    events = list(agent.stream("My favorite color is blue"))

    *texts, done = events
    assert isinstance(done, TurnEvent) and done.result.committed
    assert all(isinstance(event, TextEvent) and event.step == 1 for event in texts)
    assert len(texts) > 1  # word by word, not one piece
    assert "".join(event.text for event in texts) == done.result.answer
    stored = open_memory(sid).get_messages()
    assert [(m.role, m.content) for m in stored] == [
        (Role.USER, "My favorite color is blue"),
        (Role.ASSISTANT, done.result.answer),
    ]
    again = Agent(identifier="bot", model=EchoModel(), memory=open_memory(sid))
    assert again.run("and?") == "I was sent 3 messages. You said: and?"


def test_tool_calls_and_results_are_yielded_in_order_with_their_step(open_memory):
    def broken(order_id: str) -> str:
        """Always fails."""
        raise RuntimeError("down")

    model = ScriptedModel(
        [
            calls(
                ("c1", "lookup_order", {"order_id": "98765"}), ("c2", "broken", {"order_id": "1"})
            ),
            answer("It shipped."),
        ]
    )
    agent = Agent(
        identifier="bot", model=model, memory=open_memory(session()), tools=[lookup_order, broken]
    )

    events = list(agent.stream("where is 98765?"))

    assert events[:4] == [
        ToolCallEvent("c1", "lookup_order", {"order_id": "98765"}, 1),
        ToolResultEvent("c1", "lookup_order", "shipped", False, 1),
        ToolCallEvent("c2", "broken", {"order_id": "1"}, 1),
        ToolResultEvent("c2", "broken", "error: broken raised RuntimeError: down", True, 1),
    ]
    assert events[4:-1] == [TextEvent("It shipped.", 2)]
    assert events[-1].result.answer == "It shipped."


def test_a_caller_that_stops_early_writes_nothing(open_memory):
    sid = session()
    agent = Agent(identifier="bot", model=EchoModel(), memory=open_memory(sid))

    stream = agent.stream("hello there, how are you")
    assert isinstance(next(stream), TextEvent)
    stream.close()

    assert open_memory(sid).get_messages() == []
