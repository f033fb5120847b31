"""The memory contract, proved for every backend (see conftest's ``backend`` params)."""

from __future__ import annotations

import threading
import uuid

import pytest

import fence.messages
from fence.errors import StaleWriteError
from fence.messages import Message, Role, ToolCall
from fence.settings import get_settings


def new_session() -> str:
    return f"s-{uuid.uuid4().hex[:12]}"


def user(text: str) -> Message:
    return Message(role=Role.USER, content=text)


def test_messages_come_back_in_the_order_they_were_added(open_memory):
    memory = open_memory(new_session())
    memory.add_message(role="user", content="Hello!")
    memory.add_message(role="assistant", content="Hi there!")
    memory.add_user_message("How are you?")
    memory.add_assistant_message("Fine.")

    messages = memory.get_messages()

    assert [(m.role, m.content) for m in messages] == [
        (Role.USER, "Hello!"),
        (Role.ASSISTANT, "Hi there!"),
        (Role.USER, "How are you?"),
        (Role.ASSISTANT, "Fine."),
    ]
    seqs = [m.seq for m in messages]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4
    assert all(isinstance(m.content, str) and m.tokens > 0 for m in messages)


def test_system_prompt_is_set_replaced_and_kept_by_clear(open_memory):
    session = new_session()
    memory = open_memory(session)
    assert memory.get_system_message() is None
    memory.set_system_message("You are a helpful assistant")
    memory.set_system_message("You are a helpful coding assistant")
    memory.add_user_message("hi")

    memory.clear()

    reopened = open_memory(session)
    assert reopened.get_system_message() == "You are a helpful coding assistant"
    assert reopened.get_messages() == []


def test_window_carries_the_system_prompt_read_with_it(open_memory):
    session = new_session()
    memory = open_memory(session)
    assert memory.get_window().system is None
    memory.set_system_message("You are terse")
    memory.add_user_message("hi")

    assert memory.get_window(0).system == "You are terse"
    memory.clear()
    assert open_memory(session).get_window().system == "You are terse"


def test_system_note_is_part_of_the_conversation_not_the_prompt(open_memory):
    memory = open_memory(new_session())
    memory.set_system_message("original prompt")
    memory.add_user_message("a long chat")

    memory.clear()
    memory.add_message(role="system", content="Previous conversation summarized: ...")

    assert memory.get_system_message() == "original prompt"
    assert [(m.role, m.content) for m in memory.get_messages()] == [
        (Role.SYSTEM, "Previous conversation summarized: ...")
    ]


def test_sequence_keeps_rising_after_clear(open_memory):
    memory = open_memory(new_session())
    memory.add_user_message("one")
    memory.add_user_message("two")
    before = memory.get_window().last_seq

    memory.clear()
    memory.add_user_message("three")

    [message] = memory.get_messages()
    assert message.seq > before
    assert memory.get_window().last_seq == message.seq


@pytest.mark.parametrize(
    ("role", "content", "rule"),
    [
        ("wizard", "hi", "role"),
        ("user", "", "non-empty"),
        ("user", "   ", "non-empty"),
        ("user", 42, "valid string"),
        ("user", None, "valid string"),
        ("tool", "result without a call id", "tool_call_id"),
    ],
)
def test_invalid_message_is_refused_and_nothing_is_written(open_memory, role, content, rule):
    memory = open_memory(new_session())
    memory.add_user_message("kept")

    with pytest.raises(ValueError, match=rule):
        memory.add_message(role=role, content=content)

    assert [m.content for m in memory.get_messages()] == ["kept"]


def test_oversized_message_is_refused_naming_the_limit(open_memory):
    memory = open_memory(new_session())
    limit = get_settings().max_message_bytes

    with pytest.raises(ValueError, match="FENCE_MAX_MESSAGE_BYTES"):
        memory.add_user_message("x" * (limit + 1))

    assert memory.get_messages() == []


@pytest.mark.parametrize("session_id", ["", "has space", "{hash}", "x" * 200, 7, "-leading"])
def test_invalid_session_id_is_refused(open_memory, session_id):
    with pytest.raises(ValueError, match="session_id"):
        open_memory(session_id)


def test_sessions_are_isolated(open_memory):
    first, second = open_memory(new_session()), open_memory(new_session())
    first.add_user_message("for the first")
    second.add_user_message("for the second")

    assert [m.content for m in first.get_messages()] == ["for the first"]
    assert [m.content for m in second.get_messages()] == ["for the second"]


def test_a_second_handle_sees_the_same_history(open_memory):
    session = new_session()
    open_memory(session).add_user_message("Remember: my favorite color is blue")

    assert [m.content for m in open_memory(session).get_messages()] == [
        "Remember: my favorite color is blue"
    ]


def test_tool_messages_round_trip_losslessly(open_memory):
    session = new_session()
    call = ToolCall(
        id="call_1", name="convert", arguments={"amount": 0.1, "to": "€", "n": [1, 2.5]}
    )
    open_memory(session).commit_turn(
        "turn-1",
        [
            user("Convert 0.1 to euros — ünïcödé 🚀"),
            Message(role=Role.ASSISTANT, content="", tool_calls=(call,)),
            Message(
                role=Role.TOOL,
                content='{"result": 0.092}',
                tool_call_id="call_1",
                name="convert",
                meta={"ms": 1.5},
            ),
            Message(role=Role.ASSISTANT, content="0.092 €"),
        ],
    )

    asked, calling, result, answer = open_memory(session).get_messages()

    assert asked.content == "Convert 0.1 to euros — ünïcödé 🚀"
    assert calling.tool_calls == (call,)
    assert calling.tool_calls[0].arguments["amount"] == 0.1
    assert (result.role, result.tool_call_id, result.name, result.meta) == (
        Role.TOOL,
        "call_1",
        "convert",
        {"ms": 1.5},
    )
    assert answer.content == "0.092 €"
    assert {m.turn_id for m in (asked, calling, result, answer)} == {"turn-1"}


def test_window_holds_the_newest_messages_that_fit(open_memory):
    memory = open_memory(new_session())
    for i in range(10):
        memory.add_user_message(f"message number {i}")
    sizes = [m.tokens for m in memory.get_messages()]
    budget = sum(sizes[-3:])

    window = memory.get_window(budget)

    assert [m.content for m in window.messages] == [f"message number {i}" for i in (7, 8, 9)]
    assert window.tokens <= budget and window.truncated
    assert window.last_seq == memory.get_messages()[-1].seq


def test_window_without_budget_is_the_whole_history(open_memory):
    memory = open_memory(new_session())
    for i in range(5):
        memory.add_user_message(f"m{i}")

    window = memory.get_window(None)

    assert [m.content for m in window.messages] == [f"m{i}" for i in range(5)]
    assert not window.truncated


def test_window_stops_at_the_first_message_that_does_not_fit(open_memory):
    memory = open_memory(new_session())
    memory.add_user_message("short")
    memory.add_user_message("a much longer message " * 20)
    memory.add_user_message("short again")
    small = memory.get_messages()[-1].tokens

    window = memory.get_window(small + 5)

    assert [m.content for m in window.messages] == ["short again"]


def test_reading_never_retokenizes_history(open_memory, monkeypatch):
    session = new_session()
    memory = open_memory(session)
    for i in range(5):
        memory.add_user_message(f"m{i}")

    def fail(*args, **kwargs):
        raise AssertionError("history was re-tokenized on read")

    monkeypatch.setattr(fence.messages, "count_tokens", fail)
    reopened = open_memory(session)

    assert len(reopened.get_window(1000).messages) == 5
    assert len(reopened.get_messages()) == 5


def test_turn_commit_is_idempotent(open_memory):
    session = new_session()
    turn = [user("question"), Message(role=Role.ASSISTANT, content="answer")]

    assert open_memory(session).commit_turn("run-42", turn) is True
    assert open_memory(session).commit_turn("run-42", turn) is False

    memory = open_memory(session)
    assert [m.content for m in memory.get_messages()] == ["question", "answer"]
    assert memory.has_turn("run-42") and not memory.has_turn("run-43")


def test_turn_commit_survives_clear_as_already_committed(open_memory):
    memory = open_memory(new_session())
    memory.commit_turn("run-1", [user("q")])
    memory.clear()

    assert memory.commit_turn("run-1", [user("q")]) is False
    assert memory.get_messages() == []


def test_fenced_commit_refuses_a_stale_writer(open_memory):
    memory = open_memory(new_session())
    memory.add_user_message("first")
    seen = memory.get_window().last_seq
    memory.commit_turn("newer", [user("written by the new lease holder")])

    with pytest.raises(StaleWriteError, match="moved on"):
        memory.commit_turn("older", [user("stale")], expected_last_seq=seen)

    assert [m.content for m in memory.get_messages()] == [
        "first",
        "written by the new lease holder",
    ]
    assert not memory.has_turn("older")


def test_fenced_commit_succeeds_when_history_did_not_move(open_memory):
    memory = open_memory(new_session())
    seen = memory.get_window().last_seq

    assert memory.commit_turn("t", [user("q")], expected_last_seq=seen)
    assert memory.get_window().last_seq == seen + 1


@pytest.mark.parametrize(
    ("turn_id", "messages", "rule"),
    [
        ("", [Message(role=Role.USER, content="q")], "turn_id"),
        ("bad id", [Message(role=Role.USER, content="q")], "turn_id"),
        ("ok", [], "at least one"),
        ("ok", [Message(role=Role.USER, content="q"), {"role": "user"}], r"messages\[1\]"),
    ],
)
def test_invalid_turn_writes_nothing(open_memory, turn_id, messages, rule):
    memory = open_memory(new_session())

    with pytest.raises(ValueError, match=rule):
        memory.commit_turn(turn_id, messages)

    assert memory.get_messages() == []


def test_concurrent_threads_lose_and_duplicate_nothing(open_memory):
    session = new_session()
    writers, per_writer = 4, 25

    def write(writer: int) -> None:
        memory = open_memory(session)
        for i in range(per_writer):
            memory.add_user_message(f"w{writer}-{i}")

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    contents = [m.content for m in open_memory(session).get_messages()]
    assert sorted(contents) == sorted(
        f"w{w}-{i}" for w in range(writers) for i in range(per_writer)
    )
    for w in range(writers):
        own = [c for c in contents if c.startswith(f"w{w}-")]
        assert own == [f"w{w}-{i}" for i in range(per_writer)]


def test_is_empty_follows_clear(open_memory):
    memory = open_memory(new_session())
    assert memory.is_empty()
    memory.add_user_message("x")
    assert not memory.is_empty()
    memory.clear()
    assert memory.is_empty()
