"""``max_memory_size``: what history the model is sent (checked on what it received)."""

from __future__ import annotations

from fence.agents import Agent
from fence.messages import Message, Role, ToolCall
from fence.models.local import ScriptedModel
from tests.agents.helpers import answer, calls


def user(text: str) -> Message:
    return Message(role=Role.USER, content=text)


def assistant(text: str, *tool_calls: ToolCall) -> Message:
    return Message(role=Role.ASSISTANT, content=text, tool_calls=tool_calls)


def tool(call_id: str, text: str) -> Message:
    return Message(role=Role.TOOL, content=text, tool_call_id=call_id, name="lookup")


def seed_chat(memory, turns: int) -> None:
    for i in range(turns):
        memory.commit_turn(f"t{i}", [user(f"question {i}"), assistant(f"answer {i}")])


def seed_tool_chat(memory) -> None:
    """Three turns; the middle one calls two tools before answering."""
    memory.commit_turn("t0", [user("hello"), assistant("hi, how can I help?")])
    memory.commit_turn(
        "t1",
        [
            user("where are orders 1 and 2?"),
            assistant(
                "let me look",
                ToolCall(id="c1", name="lookup", arguments={"order": 1}),
                ToolCall(id="c2", name="lookup", arguments={"order": 2}),
            ),
            tool("c1", "order 1 shipped yesterday"),
            tool("c2", "order 2 is waiting for stock"),
            assistant("order 1 shipped; order 2 waits for stock"),
        ],
    )
    memory.commit_turn("t2", [user("thanks"), assistant("you're welcome")])


def tokens(messages: list[Message]) -> int:
    return sum(m.tokens for m in messages)


def history_sent(model: ScriptedModel, call: int = 0) -> list[Message]:
    """What the model got from memory on one call: everything but the current prompt."""
    return model.calls[call][:-1]


def test_the_newest_history_that_fits_is_sent(memory):
    seed_chat(memory, 6)
    stored = memory.get_messages()
    budget = tokens(stored[-4:]) + 1  # room for the last two turns, not three
    model = ScriptedModel([answer("ok")])

    Agent(identifier="bot", model=model, memory=memory, max_memory_size=budget).run("next")

    sent = history_sent(model)
    assert [m.content for m in sent] == [m.content for m in stored[-4:]]
    assert tokens(sent) <= budget
    assert model.calls[0][-1].content == "next"


def test_the_window_limits_what_is_sent_not_what_is_stored(memory):
    model = ScriptedModel([answer(f"answer {i}") for i in range(8)])
    agent = Agent(identifier="bot", model=model, memory=memory, max_memory_size=40)

    for i in range(8):
        agent.run(f"question number {i} with a few extra words to take up space")

    assert len(memory.get_messages()) == 16
    assert len(history_sent(model, 7)) < 14
    assert all(tokens(history_sent(model, i)) <= 40 for i in range(8))


def test_without_max_memory_size_the_whole_history_is_sent(memory):
    seed_chat(memory, 5)
    model = ScriptedModel([answer("ok")])

    Agent(identifier="bot", model=model, memory=memory).run("next")

    assert len(history_sent(model)) == 10


def test_the_system_prompt_is_sent_however_small_the_window(memory):
    seed_chat(memory, 3)
    memory.set_system_message("the session's long-standing instructions")
    model = ScriptedModel([answer("ok"), answer("ok")])

    Agent(identifier="bot", model=model, memory=memory, max_memory_size=1).run("next")
    with_role = Agent(identifier="bot", model=model, memory=memory, max_memory_size=1, role="role")
    with_role.run("again")

    assert model.systems == ["the session's long-standing instructions", "role"]
    assert history_sent(model, 0) == [] and history_sent(model, 1) == []


def test_the_window_starts_on_a_user_message(memory):
    seed_chat(memory, 3)
    stored = memory.get_messages()
    # Room for the newest turn and the answer before it, which lost its question.
    budget = tokens(stored[-3:])
    model = ScriptedModel([answer("ok")])

    Agent(identifier="bot", model=model, memory=memory, max_memory_size=budget).run("next")

    assert [m.content for m in history_sent(model)] == ["question 2", "answer 2"]


def test_no_cut_point_separates_a_tool_call_from_its_result(memory):
    """For every budget that cuts the stored history at a different message."""
    seed_tool_chat(memory)
    stored = memory.get_messages()
    budgets = [tokens(stored[start:]) for start in range(len(stored))]
    model = ScriptedModel([answer("ok")] * len(budgets))

    for budget in budgets:  # prepare_turn runs the turn without committing it
        agent = Agent(identifier="bot", model=model, memory=memory, max_memory_size=budget)
        agent.prepare_turn("next")

    for call, budget in enumerate(budgets):
        sent = history_sent(model, call)
        assert tokens(sent) <= budget
        assert [m.seq for m in sent] == [m.seq for m in stored[len(stored) - len(sent) :]], (
            "the window is the newest part of the history"
        )
        if len(sent) < len(stored):
            assert sent == [] or sent[0].role is Role.USER
        call_ids = {c.id for m in sent for c in m.tool_calls}
        result_ids = {m.tool_call_id for m in sent if m.role is Role.TOOL}
        assert call_ids == result_ids, f"budget {budget} split a tool call from its result"


def test_the_current_turn_is_sent_whole_even_beyond_the_window(memory):
    seed_chat(memory, 4)
    model = ScriptedModel([calls(("c1", "lookup", {"order": 1})), answer("shipped")])

    def lookup(order: int) -> str:
        """Look up an order."""
        return f"order {order} shipped, says the warehouse system"

    agent = Agent(identifier="bot", model=model, memory=memory, max_memory_size=1, tools=[lookup])
    agent.run("where is order 1?")

    assert [m.role for m in model.calls[1]] == [Role.USER, Role.ASSISTANT, Role.TOOL]


def test_when_no_history_fits_only_the_prompt_is_sent(memory):
    seed_chat(memory, 2)
    model = ScriptedModel([answer("ok")])

    Agent(identifier="bot", model=model, memory=memory, max_memory_size=1).run("alone")

    assert [m.content for m in model.calls[0]] == ["alone"]
