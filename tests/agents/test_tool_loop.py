"""The tool loop: the agent runs the model's tool calls and loops until an answer."""

from __future__ import annotations

import pytest

from fence.agents import Agent, MaxIterationsError
from fence.messages import Role
from fence.models.local import ScriptedModel
from fence.tools import Tool
from tests.agents.helpers import answer, calls, roles_and_contents

ORDERS = {"98765": "shipped", "11111": "delayed"}


def lookup_order(order_id: str) -> str:
    """Look up the shipping status of an order by its number."""
    return ORDERS[order_id]


def add(a: int, b: int = 0) -> int:
    """Add two integers."""
    return a + b


def test_tool_functions_are_described_to_the_model(memory):
    model = ScriptedModel([answer("ok")])
    agent = Agent(identifier="bot", model=model, memory=memory, tools=[lookup_order, add])

    agent.run("hi")

    [specs] = model.tools
    assert [spec.name for spec in specs] == ["lookup_order", "add"]
    assert specs[0].description == "Look up the shipping status of an order by its number."
    assert specs[0].parameters["properties"]["order_id"]["type"] == "string"
    assert specs[1].parameters["required"] == ["a"]


def test_the_agent_runs_the_requested_tool_and_loops_until_an_answer(memory):
    model = ScriptedModel(
        [calls(("call_1", "lookup_order", {"order_id": "98765"})), answer("It has shipped.")]
    )
    agent = Agent(identifier="bot", model=model, memory=memory, tools=[lookup_order])

    result = agent.run_turn("Where is order 98765?")

    assert result.answer == "It has shipped."
    asked, calling, tool_result = model.calls[1]
    assert calling.tool_calls[0].name == "lookup_order"
    assert (tool_result.role, tool_result.tool_call_id, tool_result.name) == (
        Role.TOOL,
        "call_1",
        "lookup_order",
    )
    assert tool_result.content == "shipped"
    stored = memory.get_messages()
    assert [m.role for m in stored] == [Role.USER, Role.ASSISTANT, Role.TOOL, Role.ASSISTANT]
    assert {m.turn_id for m in stored} == {result.turn_id}, "the whole loop is one turn"


def test_several_tool_calls_in_one_response_all_run_in_order(memory):
    model = ScriptedModel(
        [
            calls(
                ("c1", "lookup_order", {"order_id": "98765"}),
                ("c2", "lookup_order", {"order_id": "11111"}),
            ),
            answer("One shipped, one delayed."),
        ]
    )
    agent = Agent(identifier="bot", model=model, memory=memory, tools=[lookup_order])

    agent.run("Status of both orders?")

    results = [m for m in memory.get_messages() if m.role is Role.TOOL]
    assert [(m.tool_call_id, m.content) for m in results] == [("c1", "shipped"), ("c2", "delayed")]


def test_tools_can_be_called_over_several_model_steps(memory):
    model = ScriptedModel(
        [
            calls(("c1", "add", {"a": 2, "b": 3})),
            calls(("c2", "add", {"a": 5, "b": 10})),
            answer("15"),
        ]
    )
    agent = Agent(identifier="bot", model=model, memory=memory, tools=[add], max_iterations=3)

    assert agent.run("2 + 3 + 10?") == "15"
    assert [m.content for m in memory.get_messages() if m.role is Role.TOOL] == ["5", "15"]


def test_a_tool_that_raises_reports_its_error_to_the_model_and_the_run_continues(memory):
    model = ScriptedModel(
        [calls(("c1", "lookup_order", {"order_id": "00000"})), answer("I can't find that order.")]
    )
    agent = Agent(identifier="bot", model=model, memory=memory, tools=[lookup_order])

    assert agent.run("Where is order 00000?") == "I can't find that order."

    tool_result = model.calls[1][-1]
    assert tool_result.role is Role.TOOL
    assert "KeyError" in tool_result.content and "00000" in tool_result.content
    assert len(memory.get_messages()) == 4


def test_an_unknown_tool_name_is_reported_to_the_model(memory):
    model = ScriptedModel([calls(("c1", "delete_everything", {})), answer("Sorry.")])
    agent = Agent(identifier="bot", model=model, memory=memory, tools=[lookup_order])

    agent.run("Please delete everything")

    tool_result = model.calls[1][-1]
    assert tool_result.tool_call_id == "c1"
    assert "no tool named 'delete_everything'" in tool_result.content
    assert "lookup_order" in tool_result.content, "the error lists the tools that exist"


def test_invalid_arguments_are_reported_to_the_model_and_the_tool_is_not_run(memory):
    seen: list[int] = []

    def square(n: int) -> int:
        """Square a number."""
        seen.append(n)
        return n * n

    model = ScriptedModel(
        [calls(("c1", "square", {"n": "not a number"})), calls(("c2", "square", {"n": 4})), "16"]
    )
    agent = Agent(identifier="bot", model=model, memory=memory, tools=[square])

    assert agent.run("Square four") == "16"

    first_result = model.calls[1][-1]
    assert "invalid arguments for square" in first_result.content and "n" in first_result.content
    assert seen == [4]


def test_a_tool_result_that_is_not_text_is_sent_as_json(memory):
    def order(order_id: str) -> dict[str, object]:
        """Fetch an order."""
        return {"id": order_id, "items": 2, "gift": False}

    model = ScriptedModel([calls(("c1", "order", {"order_id": "A1"})), answer("done")])
    Agent(identifier="bot", model=model, memory=memory, tools=[order]).run("order A1")

    assert model.calls[1][-1].content == '{"id": "A1", "items": 2, "gift": false}'


def test_an_empty_tool_result_is_stored_as_a_placeholder(memory):
    def ping() -> str:
        """Check the service."""
        return ""

    model = ScriptedModel([calls(("c1", "ping", {})), answer("pong")])
    Agent(identifier="bot", model=model, memory=memory, tools=[ping]).run("ping it")

    assert model.calls[1][-1].content == "(empty result)"


def test_a_tool_given_as_a_tool_object_keeps_its_name(memory):
    model = ScriptedModel([calls(("c1", "status", {"order_id": "98765"})), answer("shipped")])
    tool = Tool(lookup_order, name="status")

    Agent(identifier="bot", model=model, memory=memory, tools=[tool]).run("status?")

    assert [spec.name for spec in model.tools[0]] == ["status"]
    assert model.calls[1][-1].content == "shipped"


def test_exceeding_max_iterations_raises_and_writes_nothing(memory):
    memory.add_user_message("earlier")
    model = ScriptedModel([calls((f"c{i}", "add", {"a": i})) for i in range(3)])
    agent = Agent(identifier="bot", model=model, memory=memory, tools=[add], max_iterations=3)

    with pytest.raises(MaxIterationsError, match="max_iterations=3"):
        agent.run("keep adding")

    assert len(model.calls) == 3
    assert roles_and_contents(memory.get_messages()) == [("user", "earlier")]


def test_max_iterations_counts_model_calls_so_a_final_answer_on_the_last_one_succeeds(memory):
    model = ScriptedModel([calls(("c1", "add", {"a": 1})), answer("1")])
    agent = Agent(identifier="bot", model=model, memory=memory, tools=[add], max_iterations=2)

    assert agent.run("one") == "1"


def test_the_tool_calls_of_the_last_allowed_model_call_are_not_run(memory):
    ran: list[int] = []

    def record(n: int) -> str:
        """Record a number."""
        ran.append(n)
        return "ok"

    model = ScriptedModel([calls((f"c{i}", "record", {"n": i})) for i in range(2)])
    agent = Agent(identifier="bot", model=model, memory=memory, tools=[record], max_iterations=2)

    with pytest.raises(MaxIterationsError):
        agent.run("go")

    assert ran == [0]
