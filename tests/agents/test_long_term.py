"""The Agent's long-term memory option: records recalled for each prompt reach the model.

The source here is a plain object with ``search``: the option is a protocol, so
any backend can supply it. ``tests/memory/test_agentcore_long_term.py`` runs
it on AgentCore over the wire.
"""

from __future__ import annotations

import logging

import pytest

from fence.agents import Agent
from fence.memory import FleetingMemory, LongTermRecall, MemoryRecord
from fence.memory.long_term import CONTEXT_HEADER
from fence.models.local import ScriptedModel
from fence.tokens import count_tokens
from tests.agents.helpers import roles_and_contents


class Notes:
    """A long-term source that answers every query with the same records."""

    def __init__(self, *texts: str, error: Exception | None = None) -> None:
        self.records = [MemoryRecord(text, score=1.0 - i / 10) for i, text in enumerate(texts)]
        self.error = error
        self.queries: list[tuple[str, str | None, int]] = []

    def search(
        self, query: str, *, namespace: str | None = None, top_k: int = 5
    ) -> list[MemoryRecord]:
        self.queries.append((query, namespace, top_k))
        if self.error:
            raise self.error
        return self.records[:top_k]


def test_each_turn_sends_the_records_recalled_for_its_prompt_with_the_system_prompt(memory):
    notes = Notes("The user's favorite color is blue.", "The user lives in Lisbon.")
    model = ScriptedModel(["Blue.", "Lisbon."])
    agent = Agent(
        identifier="bot",
        model=model,
        memory=memory,
        role="You are helpful.",
        long_term=LongTermRecall(notes, top_k=3, namespace="/facts/"),
    )

    result = agent.run_turn("What's my favorite color?")
    agent.run("Where do I live?")

    assert model.systems[0] == (
        "You are helpful.\n\n"
        f"{CONTEXT_HEADER}\n- The user's favorite color is blue.\n- The user lives in Lisbon."
    )
    assert notes.queries == [
        ("What's my favorite color?", "/facts/", 3),
        ("Where do I live?", "/facts/", 3),
    ]
    assert [r.text for r in result.recalled] == [r.text for r in notes.records]
    assert roles_and_contents(memory.get_messages()) == [  # context, not history
        ("user", "What's my favorite color?"),
        ("assistant", "Blue."),
        ("user", "Where do I live?"),
        ("assistant", "Lisbon."),
    ]


def test_records_are_taken_best_first_while_they_fit_the_token_budget(memory):
    first, second = "The user's name is Alice.", "Alice prefers short answers."
    budget = count_tokens(CONTEXT_HEADER) + count_tokens(f"\n- {first}") + 1
    notes = Notes(first, second, "A third record that would fit alone.")
    model = ScriptedModel(["Hi Alice."])
    agent = Agent(
        identifier="bot",
        model=model,
        memory=memory,
        long_term=LongTermRecall(notes, max_tokens=budget),
    )

    assert [r.text for r in agent.run_turn("Hello").recalled] == [first]
    assert model.systems[0] == f"{CONTEXT_HEADER}\n- {first}"


def test_without_records_the_system_prompt_is_unchanged(memory):
    model = ScriptedModel(["ok"])
    Agent(identifier="bot", model=model, memory=memory, long_term=LongTermRecall(Notes())).run("hi")

    assert model.systems[0] is None


def test_a_failed_recall_logs_a_warning_and_the_turn_goes_on(memory, caplog):
    notes = Notes(error=RuntimeError("service unavailable"))
    model = ScriptedModel(["answered anyway"])
    agent = Agent(identifier="bot", model=model, memory=memory, long_term=LongTermRecall(notes))

    with caplog.at_level(logging.WARNING, logger="fence.memory.long_term"):
        assert agent.run("hi") == "answered anyway"

    assert "long-term recall failed" in caplog.text and "service unavailable" in caplog.text
    assert memory.session_id in caplog.text
    assert model.systems[0] is None and len(memory.get_messages()) == 2


def test_a_strict_recall_fails_the_turn_and_writes_nothing(memory):
    notes = Notes(error=RuntimeError("service unavailable"))
    model = ScriptedModel(["never sent"])
    agent = Agent(
        identifier="bot", model=model, memory=memory, long_term=LongTermRecall(notes, strict=True)
    )

    with pytest.raises(RuntimeError, match="service unavailable"):
        agent.run("hi")

    assert memory.get_messages() == [] and model.calls == []


def test_a_backend_without_long_term_memory_cannot_be_a_source():
    with pytest.raises(ValueError, match="source: must offer search"):
        LongTermRecall(FleetingMemory())


@pytest.mark.parametrize(
    ("kwargs", "rule"),
    [({"top_k": 0}, "top_k"), ({"max_tokens": True}, "max_tokens"), ({"top_k": "5"}, "top_k")],
)
def test_invalid_options_are_refused_naming_the_field(kwargs, rule):
    with pytest.raises(ValueError, match=rule):
        LongTermRecall(Notes(), **kwargs)


def test_the_agent_option_must_be_a_long_term_recall():
    with pytest.raises(ValueError, match="long_term: must be a LongTermRecall"):
        Agent(identifier="bot", model=ScriptedModel([]), long_term=Notes())  # type: ignore[arg-type]
