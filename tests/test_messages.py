"""Messages carry only what every backend can store: JSON metadata and tool arguments."""

from __future__ import annotations

import datetime as dt

import pytest

from fence.memory import FleetingMemory, SQLiteMemory
from fence.messages import Message, Role, ToolCall
from fence.settings import get_settings


@pytest.mark.parametrize("backend", ["fleeting", "sqlite"])
@pytest.mark.parametrize(
    "meta", [{"when": dt.datetime(2024, 1, 1)}, {"ratio": float("nan")}, {"raw": b"bytes"}]
)
def test_metadata_that_is_not_json_is_refused_by_every_backend_alike(tmp_path, backend, meta):
    memory = (
        FleetingMemory() if backend == "fleeting" else SQLiteMemory(tmp_path / "m.db", "session")
    )

    with pytest.raises(ValueError, match="meta: must be JSON-serialisable"):
        memory.add_message(role="user", content="hi", meta=meta)

    assert memory.get_messages() == []


def test_tool_call_arguments_that_are_not_json_are_refused():
    with pytest.raises(ValueError, match="arguments: must be JSON-serialisable"):
        ToolCall(id="c1", name="schedule", arguments={"at": dt.date(2024, 1, 1)})


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
