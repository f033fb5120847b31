"""Messages carry only what every backend can store: JSON metadata and tool arguments."""

from __future__ import annotations

import datetime as dt

import pytest

from fence.memory import FleetingMemory, SQLiteMemory
from fence.messages import MAX_JSON_DEPTH, Message, Role, ToolCall
from fence.settings import get_settings


@pytest.mark.parametrize("backend", ["fleeting", "sqlite"])
@pytest.mark.parametrize(
    "meta", [{"when": dt.datetime(2024, 1, 1)}, {"ratio": float("nan")}, {"raw": b"bytes"}]
)
def test_metadata_that_is_not_json_is_refused_by_every_backend_alike(tmp_path, backend, meta):
    memory = (
        FleetingMemory() if backend == "fleeting" else SQLiteMemory(tmp_path / "m.db", "session")
    )

    with pytest.raises(ValueError, match=r"meta: (a \w+ is not JSON|numbers must be finite)"):
        memory.add_message(role="user", content="hi", meta=meta)

    assert memory.get_messages() == []


def test_tool_call_arguments_that_are_not_json_are_refused():
    with pytest.raises(ValueError, match="arguments: a date is not JSON"):
        ToolCall(id="c1", name="schedule", arguments={"at": dt.date(2024, 1, 1)})


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 5_000])
def test_json_nested_too_deep_to_read_back_is_refused_not_a_recursion_error(depth):
    deep: dict = {}
    for _ in range(depth - 1):
        deep = {"k": deep}

    with pytest.raises(ValueError, match=f"meta: nested deeper than {MAX_JSON_DEPTH} levels"):
        Message(role=Role.USER, content="hi", meta=deep)
    with pytest.raises(ValueError, match="arguments: nested deeper"):
        ToolCall(id="c1", name="t", arguments=deep)


def test_json_metadata_is_kept_as_given():
    meta = {"agent": "support", "scores": [0.5, 1], "nested": {"ok": True, "none": None}}

    assert Message(role=Role.USER, content="hi", meta=meta).meta == meta


def test_tool_call_arguments_count_towards_the_message_size_limit():
    limit = get_settings().max_message_bytes
    call = ToolCall(id="c1", name="upload", arguments={"blob": "x" * limit})

    with pytest.raises(ValueError, match="FENCE_MAX_MESSAGE_BYTES"):
        Message(role=Role.ASSISTANT, content="", tool_calls=(call,))


def test_meta_with_a_lone_surrogate_is_refused():
    with pytest.raises(ValueError, match="meta: must be valid Unicode"):
        Message(role="user", content="hi", meta={"note": "lone \ud800"})


def test_tool_call_arguments_with_a_lone_surrogate_are_refused():
    with pytest.raises(ValueError, match="arguments: must be valid Unicode"):
        ToolCall(id="c1", name="t", arguments={"a": "\ud800"})
