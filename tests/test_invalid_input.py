"""Bad input through the Python API reads as ``field: rule`` lines: no pydantic header or
URL, and a long value in a message is cut with an ellipsis, never silently."""

from __future__ import annotations

import pytest

from fence.agents import Agent
from fence.memory import FleetingMemory
from fence.memory.agentcore import AgentCoreMemory
from fence.memory.dynamodb import DynamoDBMemory
from fence.messages import IDENTIFIER_RULE, Message, ToolCall, validate_identifier
from fence.models.local import EchoModel
from fence.settings import Settings
from fence.validation import ELLIPSIS, InvalidInput, clip
from producer.client import Producer

NOISE = ("pydantic", "validation error", "For further information", "[type=")


def raised_text(action) -> tuple[ValueError, str]:
    with pytest.raises(ValueError) as raised:
        action()
    text = str(raised.value)
    assert not [noise for noise in NOISE if noise in text], text
    return raised.value, text


def test_producer_submit_names_each_bad_field_on_its_own_line():
    producer = Producer("redis://127.0.0.1:1/0", settings=Settings(), agents=["demo"])

    error, text = raised_text(
        lambda: producer.submit("bad id", "   ", agent="demo", strategy="sideways")
    )

    assert isinstance(error, InvalidInput) and error.field == "session_id"
    assert text.splitlines() == [
        f"session_id: must be {IDENTIFIER_RULE} (got 'bad id')",
        "message: must be a non-empty string",
        "strategy: Input should be 'enqueue', 'reject' or 'interrupt'",
    ]
    assert [p.field for p in error.problems] == ["session_id", "message", "strategy"]


def test_an_unknown_agent_is_invalid_input_that_names_the_agent_field():
    producer = Producer("redis://127.0.0.1:1/0", settings=Settings(), agents=["demo"])

    error, text = raised_text(lambda: producer.check_agent("nope"))

    assert isinstance(error, InvalidInput) and error.field == "agent"
    assert text == "agent: unknown agent 'nope'; known: demo"


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (
            lambda: Message(role="bogus", content="hi"),
            "role: Input should be 'system', 'user', 'assistant' or 'tool'",
        ),
        (lambda: ToolCall(id="", name="lookup"), "id: String should have at least 1 character"),
        (
            lambda: Message(role="assistant", content="x", tool_calls=[{"id": "c1"}]),
            "tool_calls.0.name: Field required",
        ),
        (
            lambda: FleetingMemory("s").add_message(role="user", content=" "),
            "content: must be a non-empty string (only an assistant message that carries "
            "tool_calls may have empty content)",
        ),
        (
            lambda: FleetingMemory("s").add_message(role="user", content="hi", meta={"k": {1}}),
            "meta: a set is not JSON; use objects with string keys, arrays, strings, finite "
            "numbers, true, false and null",
        ),
    ],
    ids=["role", "tool-call-id", "nested-tool-call", "empty-content", "meta"],
)
def test_messages_and_tool_calls_name_the_field_and_the_rule_only(build, expected):
    _, text = raised_text(build)

    assert text == expected


def test_a_value_too_long_to_show_is_cut_with_an_ellipsis():
    assert clip("short", 10) == "short"
    assert clip("x" * 10, 10) == "x" * 10
    assert clip("abcdefghijk", 10) == "abcdefghi" + ELLIPSIS
    assert len(clip("y" * 1_000, 80)) == 80

    _, text = raised_text(lambda: validate_identifier("z" * 300 + "!", "agent"))
    shown = text.split("(got ", 1)[1].removesuffix(")")
    assert shown.startswith("'zzz") and shown.endswith(ELLIPSIS) and len(shown) == 80
    _, text = raised_text(lambda: validate_identifier("bad id", "agent"))
    assert text.endswith("(got 'bad id')")


def test_every_truncated_value_in_the_library_says_it_was_cut():
    _, fence = raised_text(lambda: FleetingMemory("s").claim_fence("9" * 100))
    assert fence.startswith("fence: must be a positive integer token (got '9999")
    assert fence.endswith(f"{ELLIPSIS})")
    for build in (
        lambda: Agent(" " * 100, EchoModel()),
        lambda: AgentCoreMemory(agent_id="fence", session_id="s", memory_id="m" * 300),
        lambda: DynamoDBMemory(table_name="t!" * 300, primary_key_value="s"),
    ):
        _, text = raised_text(build)
        assert text.endswith(f"{ELLIPSIS})"), text
