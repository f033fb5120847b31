"""A window of an AgentCore session reads the newest pages and stops: its
``ListEvents`` calls follow the window, not the session, and it is the window a
whole read gives.

Sessions are written on the suite's endpoint (which lists newest first, in
pages) with the events' timestamps set: turns 4 s apart, the pace the
``CreateEvent`` quota allows one session, around events Fence writes now.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from fence.memory import AgentCoreMemory
from fence.memory.agentcore.layout import turn_metadata, turn_payload
from fence.memory.agentcore.window import ORDER_SLACK_MS
from fence.messages import Message, Role

PAGE = 10
QUOTA_PACE = timedelta(seconds=4)


@pytest.fixture
def memory(aws_endpoint, agentcore_memory_id) -> AgentCoreMemory:
    return AgentCoreMemory(
        agent_id="agent_123",
        session_id=f"w-{uuid.uuid4().hex[:12]}",
        memory_id=agentcore_memory_id,
        endpoint_url=aws_endpoint,
        page_size=PAGE,
    )


def create(memory: AgentCoreMemory, payload: list, metadata: dict, at: datetime) -> None:
    memory.client.create_event(
        memoryId=memory.memory_id,
        actorId=memory.actor_id,
        sessionId=memory.agentcore_session_id,
        eventTimestamp=at,
        payload=payload,
        metadata={key: {"stringValue": value} for key, value in metadata.items()},
        clientToken=uuid.uuid4().hex,
    )


def write_turns(
    memory: AgentCoreMemory,
    seqs: range,
    start: datetime,
    *,
    pace: timedelta = QUOTA_PACE,
    fence: int | None = None,
) -> datetime:
    """One one-message turn per seq, as Fence writes it, ``pace`` apart from
    ``start``; returns the time one ``pace`` after the last."""
    at = start
    for seq in seqs:
        message = Message(role=Role.USER, content=f"turn {seq}")
        create(memory, turn_payload([message]), turn_metadata(seq, seq, f"run-{seq}", fence), at)
        at += pace
    return at


def sdk_event(memory: AgentCoreMemory, text: str, at: datetime) -> None:
    """An event another tool wrote (no Fence metadata)."""
    payload = [{"conversational": {"role": "USER", "content": {"text": text}}}]
    create(memory, payload, {}, at)


def list_calls(memory: AgentCoreMemory) -> list[int]:
    """Grows by one for every ``ListEvents`` request the memory sends from now on."""
    calls: list[int] = []
    memory.client.meta.events.register(
        "before-call.bedrock-agentcore.ListEvents", lambda **_: calls.append(1)
    )
    return calls


def cost(texts: list[str]) -> int:
    """The tokens of these messages: a budget that fits exactly them."""
    return sum(Message(role=Role.USER, content=text).tokens for text in texts)


def turn_texts(seqs: range) -> list[str]:
    return [f"turn {seq}" for seq in seqs]


def long_ago(turn_count: int) -> datetime:
    return datetime.now(UTC) - (turn_count + 10) * QUOTA_PACE


def test_a_window_lists_the_same_few_pages_however_long_the_session(
    aws_endpoint, agentcore_memory_id
):
    costs = {}
    for size in (2 * PAGE, 20 * PAGE):
        session = AgentCoreMemory(
            agent_id="agent_123",
            session_id=f"w-{uuid.uuid4().hex[:12]}",
            memory_id=agentcore_memory_id,
            endpoint_url=aws_endpoint,
            page_size=PAGE,
        )
        write_turns(session, range(1, size + 1), long_ago(size))
        newest = range(size - 3, size + 1)
        calls = list_calls(session)

        window = session.get_window(cost(turn_texts(newest)))

        costs[size] = len(calls)
        assert [m.content for m in window.messages] == turn_texts(newest)
        assert window.truncated and window.last_seq == size
        assert [m.seq for m in session.get_messages()] == list(range(1, size + 1))
        assert len(calls) - costs[size] == size // PAGE  # a whole read lists every page

    assert costs == {2 * PAGE: 2, 20 * PAGE: 2}  # the newest page; prompts, clears, claims


def test_a_window_that_stops_early_knows_the_prompt_the_clear_and_the_claims_before_it(memory):
    memory.add_user_message("hidden by the clear")
    memory.set_system_message("the prompt")
    memory.claim_fence(5)  # a new holder took the session over
    memory.clear()
    after = write_turns(memory, range(2, 3 * PAGE), datetime.now(UTC) + QUOTA_PACE)
    # the old holder (token 4), paused since before the claim, lands a turn and dies
    # before its verification could delete it: every reader ignores that turn
    write_turns(memory, range(3 * PAGE, 3 * PAGE + 1), after, fence=4)
    newest = range(3 * PAGE - 3, 3 * PAGE)
    calls = list_calls(memory)

    window = memory.get_window(cost(turn_texts(newest)))

    assert len(calls) == 2  # the newest page; prompts, clears, claims
    assert window.system == "the prompt"
    assert [m.content for m in window.messages] == turn_texts(newest)
    assert window.last_seq == 3 * PAGE
    assert [m.content for m in memory.get_messages()][-3:] == turn_texts(newest)
    assert not memory.has_turn(f"run-{3 * PAGE}")


def test_a_whole_read_after_a_clear_stops_at_the_clear(memory):
    write_turns(memory, range(1, 5 * PAGE), long_ago(5 * PAGE))
    memory.clear()
    memory.add_user_message("after the clear")
    calls = list_calls(memory)

    assert [m.content for m in memory.get_messages()] == ["after the clear"]
    assert len(calls) == 2  # the clear is on the first page; older pages are not read


def test_a_window_of_other_writers_events_still_knows_fences_last_seq(memory):
    after = write_turns(memory, range(1, 4), long_ago(3 * PAGE))
    for index in range(3 * PAGE):
        sdk_event(memory, f"sdk {index}", after + index * QUOTA_PACE)
    newest = [f"sdk {3 * PAGE - 2}", f"sdk {3 * PAGE - 1}"]
    calls = list_calls(memory)

    window = memory.get_window(cost(newest))

    assert [m.content for m in window.messages] == newest
    assert window.last_seq == 3 and len(calls) == 3  # and the newest turns, for last_seq
    assert memory.commit_turn("next", [Message(role=Role.USER, content="q")], expected_last_seq=3)


def test_a_turn_whose_writers_clock_is_behind_by_less_than_the_slack_is_not_cut_off(memory):
    """Seq orders Fence's turns, and a window reads ``ORDER_SLACK_MS`` past the
    oldest message it considered, so a turn stamped a little earlier than the ones
    before it, on the next page, is still the newest message."""
    dense = timedelta(milliseconds=50)
    start = write_turns(memory, range(1, 2 * PAGE + 1), long_ago(3 * PAGE))
    first_dense = start
    write_turns(memory, range(2 * PAGE + 1, 3 * PAGE + 1), first_dense, pace=dense)
    assert 11 * dense < timedelta(milliseconds=ORDER_SLACK_MS)
    write_turns(memory, range(3 * PAGE + 1, 3 * PAGE + 2), first_dense - dense)  # next page
    newest = range(3 * PAGE - 6, 3 * PAGE + 2)
    calls = list_calls(memory)

    window = memory.get_window(cost(turn_texts(newest)))

    assert [m.content for m in window.messages] == turn_texts(newest)
    assert len(calls) == 3  # two pages (the second for the turn behind), then the rest
    assert window.messages == memory.get_messages()[-len(newest) :]


def test_a_window_longer_than_a_page_is_the_tail_of_a_whole_read(memory):
    write_turns(memory, range(1, 10 * PAGE + 1), long_ago(10 * PAGE))
    newest = range(7 * PAGE - 4, 10 * PAGE + 1)
    calls = list_calls(memory)

    window = memory.get_window(cost(turn_texts(newest)))

    assert window.messages == memory.get_messages()[-len(newest) :]
    assert window.truncated and window.last_seq == 10 * PAGE
    assert len(calls) == 4 + 1 + 10  # 4 pages and the rest for the window, 10 for the whole
