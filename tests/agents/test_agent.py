"""Agent behaviour: turns, system prompts, prefill, shared memory, failures, validation."""

from __future__ import annotations

import pytest

from fence.agents import Agent
from fence.errors import ModelError
from fence.memory import FleetingMemory
from fence.messages import Role
from fence.models.local import EchoModel, ScriptedModel
from tests.agents.helpers import answer, calls, roles_and_contents


def test_a_run_commits_the_prompt_and_the_answer_as_one_turn(memory):
    agent = Agent(identifier="bot", model=ScriptedModel([answer("Hello Alice")]), memory=memory)

    result = agent.run_turn("My name is Alice")

    stored = memory.get_messages()
    assert roles_and_contents(stored) == [
        ("user", "My name is Alice"),
        ("assistant", "Hello Alice"),
    ]
    assert {m.turn_id for m in stored} == {result.turn_id}
    assert memory.has_turn(result.turn_id)
    assert result.committed and result.answer == "Hello Alice"
    assert stored[1].meta["agent"] == "bot"


def test_run_returns_the_final_answer(memory):
    agent = Agent(identifier="bot", model=EchoModel(), memory=memory)

    assert agent.run("My name is Alice") == "I was sent 1 messages. You said: My name is Alice"


def test_each_run_sends_the_stored_history_then_the_new_prompt(memory):
    model = ScriptedModel([answer("first answer"), answer("second answer")])
    agent = Agent(identifier="bot", model=model, memory=memory)

    agent.run("first question")
    agent.run("second question")

    assert roles_and_contents(model.calls[1]) == [
        ("user", "first question"),
        ("assistant", "first answer"),
        ("user", "second question"),
    ]


def test_without_memory_an_agent_gets_its_own_fleeting_memory():
    first = Agent(identifier="a", model=EchoModel())
    second = Agent(identifier="b", model=EchoModel())

    first.run("only for the first")

    assert isinstance(first.memory, FleetingMemory)
    assert [m.content for m in first.memory.get_messages()][0] == "only for the first"
    assert second.memory.get_messages() == []


def test_role_is_sent_as_the_system_prompt_and_not_stored_as_a_message(memory):
    model = ScriptedModel([answer("ok")])
    agent = Agent(identifier="bot", model=model, memory=memory, role="You are terse.")

    agent.run("hi")

    assert model.systems == ["You are terse."]
    assert all(m.role is not Role.SYSTEM for m in model.calls[0])
    assert all("terse" not in m.content for m in memory.get_messages())


def test_without_role_the_memorys_system_prompt_is_sent(memory):
    memory.set_system_message("You are a helpful coding assistant")
    model = ScriptedModel([answer("ok")])

    Agent(identifier="bot", model=model, memory=memory).run("hi")

    assert model.systems == ["You are a helpful coding assistant"]


def test_role_takes_precedence_over_the_memorys_system_prompt(memory):
    memory.set_system_message("the session's prompt")
    model = ScriptedModel([answer("ok")])

    Agent(identifier="bot", model=model, memory=memory, role="the agent's role").run("hi")

    assert model.systems == ["the agent's role"]
    assert memory.get_system_message() == "the session's prompt"


def test_with_no_role_and_no_session_prompt_no_system_prompt_is_sent(memory):
    model = ScriptedModel([answer("ok")])

    Agent(identifier="bot", model=model, memory=memory).run("hi")

    assert model.systems == [None]


# -- prefill -------------------------------------------------------------------

PREFILL = "I understand. I'll help you with that."


def test_prefill_opens_an_empty_session_once_not_after_every_run(memory):
    model = ScriptedModel([answer("a1"), answer("a2"), answer("a3")])
    agent = Agent(identifier="bot", model=model, memory=memory, prefill=PREFILL)

    for prompt in ("q1", "q2", "q3"):
        agent.run(prompt)

    stored = memory.get_messages()
    assert roles_and_contents(stored) == [
        ("assistant", PREFILL),
        ("user", "q1"),
        ("assistant", "a1"),
        ("user", "q2"),
        ("assistant", "a2"),
        ("user", "q3"),
        ("assistant", "a3"),
    ]
    assert stored[0].turn_id == stored[1].turn_id, "prefill is committed with the first turn"
    assert roles_and_contents(model.calls[0]) == [("assistant", PREFILL), ("user", "q1")]


def test_prefill_is_not_written_into_a_session_that_already_has_history(memory):
    memory.add_user_message("written earlier by someone else")
    memory.add_assistant_message("an earlier answer")
    model = ScriptedModel([answer("ok")])
    agent = Agent(identifier="bot", model=model, memory=memory, prefill=PREFILL)

    agent.run("hi")

    assert PREFILL not in [m.content for m in memory.get_messages()]


def test_prefill_is_not_written_when_the_history_is_only_too_long_for_the_window(memory):
    memory.add_user_message("a long earlier message " * 50)
    model = ScriptedModel([answer("ok")])
    agent = Agent(identifier="bot", model=model, memory=memory, prefill=PREFILL, max_memory_size=10)

    agent.run("hi")

    assert PREFILL not in [m.content for m in memory.get_messages()]
    assert roles_and_contents(model.calls[0]) == [("user", "hi")]


def test_prefill_opens_the_conversation_again_after_clear(memory):
    model = ScriptedModel([answer("a1"), answer("a2")])
    agent = Agent(identifier="bot", model=model, memory=memory, prefill=PREFILL)
    agent.run("before clear")

    memory.clear()
    agent.run("after clear")

    assert roles_and_contents(memory.get_messages()) == [
        ("assistant", PREFILL),
        ("user", "after clear"),
        ("assistant", "a2"),
    ]


def test_prefill_is_not_written_by_a_run_that_fails(memory):
    model = ScriptedModel([ModelError("provider down"), answer("ok")])
    agent = Agent(identifier="bot", model=model, memory=memory, prefill=PREFILL)

    with pytest.raises(ModelError):
        agent.run("first try")
    assert memory.get_messages() == []

    agent.run("second try")
    assert [m.content for m in memory.get_messages()] == [PREFILL, "second try", "ok"]


def test_prefill_is_written_even_when_the_token_window_is_too_small_to_see_history(memory):
    model = ScriptedModel([answer("a1"), answer("a2")])
    agent = Agent(identifier="bot", model=model, memory=memory, prefill=PREFILL, max_memory_size=1)

    agent.run("q1")
    agent.run("q2")

    assert [m.content for m in memory.get_messages()].count(PREFILL) == 1


# -- sharing memory ----------------------------------------------------------------


def test_agents_sharing_one_memory_see_each_others_turns(memory):
    first_model = ScriptedModel([answer("Noted.")])
    second_model = ScriptedModel([answer("The password is 'secret123'")])
    agent1 = Agent(identifier="agent1", model=first_model, memory=memory)
    agent2 = Agent(identifier="agent2", model=second_model, memory=memory)

    agent1.run("The password is 'secret123'")
    agent2.run("What's the password?")

    assert roles_and_contents(second_model.calls[0]) == [
        ("user", "The password is 'secret123'"),
        ("assistant", "Noted."),
        ("user", "What's the password?"),
    ]
    answers = [m for m in memory.get_messages() if m.role is Role.ASSISTANT]
    assert [m.meta["agent"] for m in answers] == ["agent1", "agent2"]


def test_agents_on_two_handles_of_one_session_share_history(open_memory):
    model = ScriptedModel([answer("one"), answer("two")])
    Agent(identifier="a", model=model, memory=open_memory("team")).run("from a")
    Agent(identifier="b", model=model, memory=open_memory("team")).run("from b")

    assert [m.content for m in model.calls[1]] == ["from a", "one", "from b"]


def test_one_agent_given_a_new_memory_per_session_keeps_sessions_apart(open_memory):
    model = ScriptedModel([answer("hi alice"), answer("hi bob"), answer("again alice")])
    agent = Agent(identifier="support", model=model, memory=open_memory("alice"))
    agent.run("I am Alice")

    agent.memory = open_memory("bob")
    agent.run("I am Bob")
    agent.memory = open_memory("alice")
    agent.run("Who am I?")

    assert [m.content for m in model.calls[1]] == ["I am Bob"]
    assert [m.content for m in model.calls[2]] == ["I am Alice", "hi alice", "Who am I?"]
    assert [m.content for m in open_memory("bob").get_messages()] == ["I am Bob", "hi bob"]


# -- failures write nothing -------------------------------------------------------


def test_a_model_error_writes_nothing(memory):
    memory.add_user_message("kept")
    agent = Agent(identifier="bot", model=ScriptedModel([ModelError("boom")]), memory=memory)

    with pytest.raises(ModelError, match="boom"):
        agent.run("lost")

    assert [m.content for m in memory.get_messages()] == ["kept"]


def test_a_model_error_after_a_tool_ran_writes_nothing(memory):
    ran: list[str] = []

    def note(text: str) -> str:
        """Write a note."""
        ran.append(text)
        return "saved"

    model = ScriptedModel([calls(("c1", "note", {"text": "x"})), ModelError("boom")])
    agent = Agent(identifier="bot", model=model, memory=memory, tools=[note])

    with pytest.raises(ModelError):
        agent.run("save x")

    assert ran == ["x"]
    assert memory.get_messages() == []


def test_an_empty_answer_from_the_model_is_a_model_error_and_writes_nothing(memory):
    agent = Agent(identifier="bot", model=ScriptedModel([answer("  ")]), memory=memory)

    with pytest.raises(ModelError):
        agent.run("hi")

    assert memory.get_messages() == []


@pytest.mark.parametrize("prompt", ["", "   ", 42, None])
def test_an_invalid_prompt_is_refused_before_the_model_is_called(memory, prompt):
    model = ScriptedModel([answer("never")])
    agent = Agent(identifier="bot", model=model, memory=memory)

    with pytest.raises(ValueError, match="prompt"):
        agent.run(prompt)

    assert model.calls == [] and memory.get_messages() == []


def test_running_a_turn_id_twice_commits_it_once(memory):
    model = ScriptedModel([answer("first"), answer("second")])
    agent = Agent(identifier="bot", model=model, memory=memory)

    assert agent.run_turn("q", turn_id="run-7").committed
    again = agent.run_turn("q", turn_id="run-7")

    assert not again.committed
    assert [m.content for m in memory.get_messages()] == ["q", "first"]


# -- constructor validation ----------------------------------------------------------


def documented(text: str) -> str:
    """Echo the text."""
    return text


def undocumented(text: str) -> str:
    return text


def shadow() -> str:
    """A second tool with the name of the first."""
    return ""


shadow.__name__ = "documented"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("identifier", ""),
        ("identifier", "   "),
        ("identifier", 7),
        ("model", "gpt-4o-mini"),
        ("memory", "agent_memory.db"),
        ("role", ""),
        ("role", 3),
        ("description", 3),
        ("tools", [42]),
        ("tools", [undocumented]),
        ("tools", [documented, shadow]),
        ("tools", documented),
        ("max_memory_size", 0),
        ("max_memory_size", -5),
        ("max_memory_size", True),
        ("max_memory_size", "1000"),
        ("max_memory_size", 10.5),
        ("prefill", ""),
        ("prefill", "   "),
        ("prefill", 3),
        ("max_iterations", 0),
        ("max_iterations", True),
        ("max_iterations", "3"),
        ("max_iterations", 2.5),
    ],
)
def test_invalid_constructor_argument_raises_value_error_naming_the_field(field, value):
    arguments = {"identifier": "bot", "model": EchoModel(), field: value}

    with pytest.raises(ValueError, match=field):
        Agent(**arguments)


def test_memory_can_only_be_replaced_by_a_memory():
    agent = Agent(identifier="bot", model=EchoModel())

    with pytest.raises(ValueError, match="memory"):
        agent.memory = "other.db"
