"""AgentCoreMemory beyond the shared contract.

The suite's endpoint lists events as the service does (newest first, in pages,
filtered on metadata: ``tests/memory/agentcore_extras.py``), but moto ignores
``clientToken`` and its event ids do not tie. The service's millisecond
timestamps tie; the ``Stubber`` tests below answer with exact pages and ties, so
the ordering, paging and seq-claiming rules are proved for them; the rest runs
over HTTP against the endpoint.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.stub import ANY, Stubber

from fence.errors import MemoryBackendError, StaleWriteError
from fence.memory import AgentCoreMemory
from fence.memory.agentcore import MAX_MESSAGES_PER_TURN, agentcore_session_id
from fence.memory.agentcore.layout import CONVERSATIONAL_TEXT_MAX, turn_payload
from fence.memory.agentcore.listing import NOT_TURNS
from fence.messages import Message, Role, ToolCall
from fence.settings import get_settings
from tests.memory import aws_server

MEMORY_ID = "fence_memory-abcdefghij"
ACTOR = "agent_123"
SESSION = "session_456"
TIE = datetime(2026, 1, 1, 12, 0, 0, 123000, tzinfo=UTC)  # one millisecond for every event


def user(text: str) -> Message:
    return Message(role=Role.USER, content=text)


def turn_metadata(first: int, count: int, turn_id: str | None) -> dict:
    metadata = {
        "fence_kind": {"stringValue": "turn"},
        "fence_seq": {"stringValue": str(first)},
        "fence_last": {"stringValue": str(first + count - 1)},
    }
    if turn_id:
        metadata["fence_turn"] = {"stringValue": turn_id}
    return metadata


def turn_event(
    event_id: str, first: int, texts: list[str], turn_id: str | None = None, at: datetime = TIE
) -> dict:
    """An event as the service returns it for a turn Fence writes: conversational
    entries, then the companion blob."""
    payload = turn_payload([user(text) for text in texts])
    return _event(event_id, payload, turn_metadata(first, len(texts), turn_id), at=at)


def blob_only_turn_event(
    event_id: str, first: int, texts: list[str], turn_id: str | None = None
) -> dict:
    """A turn as earlier versions of Fence wrote it: one blob per message."""
    blobs = []
    for offset, text in enumerate(texts):
        blob = {
            "fence": "message",
            "seq": first + offset,
            "record": json.dumps(user(text).to_record()),
        }
        if turn_id:
            blob["turn_id"] = turn_id
        blobs.append({"blob": blob})
    return _event(event_id, blobs, turn_metadata(first, len(texts), turn_id))


def foreign_event(event_id: str, messages: list[tuple[str, str]], at: datetime = TIE) -> dict:
    """An event another tool wrote, as ``MemoryClient.create_event(messages=...)`` does."""
    payload = [{"conversational": {"content": {"text": t}, "role": r}} for t, r in messages]
    return _event(event_id, payload, at=at)


def system_event(event_id: str, text: str, at: int) -> dict:
    return _event(
        event_id,
        [{"blob": {"fence": "system", "text": text}}],
        {"fence_kind": {"stringValue": "system"}, "fence_at": {"stringValue": str(at)}},
    )


def _event(event_id: str, payload: list, metadata: dict | None = None, at: datetime = TIE) -> dict:
    event = {
        "memoryId": MEMORY_ID,
        "actorId": ACTOR,
        "sessionId": SESSION,
        "eventId": event_id,
        "eventTimestamp": at,
        "payload": payload,
    }
    if metadata:
        event["metadata"] = metadata
    return event


def without_payload(event: dict) -> dict:
    return {**event, "payload": []}


def list_params(
    token: str | None = None, payloads: bool = True, only: list | None = None
) -> dict[str, Any]:
    params = {
        "memoryId": MEMORY_ID,
        "actorId": ACTOR,
        "sessionId": SESSION,
        "includePayloads": payloads,
        "maxResults": 100,
    }
    if only:
        params["filter"] = {"eventMetadata": only}
    if token:
        params["nextToken"] = token
    return params


@pytest.fixture
def stubbed(aws_endpoint) -> tuple[AgentCoreMemory, Stubber]:
    client = aws_server.client("bedrock-agentcore", aws_endpoint)
    memory = AgentCoreMemory(ACTOR, SESSION, memory_id=MEMORY_ID, client=client)
    with Stubber(client) as stubber:
        yield memory, stubber
        stubber.assert_no_pending_responses()


def created_params(first: int, texts: list[str], turn_id: str, token: Any = ANY) -> dict:
    """What ``create_event`` must be sent for a turn claiming ``first``."""
    event = turn_event("0#0", first, texts, turn_id)
    return {
        "memoryId": MEMORY_ID,
        "actorId": ACTOR,
        "sessionId": SESSION,
        "eventTimestamp": ANY,
        "payload": event["payload"],
        "metadata": event["metadata"],
        "clientToken": token,
    }


def created(event_id: str) -> dict:
    return {"event": _event(event_id, [])}


def sent_tokens(memory: AgentCoreMemory) -> list[str]:
    """The ``clientToken`` of every ``create_event`` the memory sends from now on."""
    tokens: list[str] = []
    memory.client.meta.events.register(
        "before-parameter-build.bedrock-agentcore.CreateEvent",
        lambda params, **_: tokens.append(params["clientToken"]),
    )
    return tokens


# -- order and paging as the real service does them ---------------------------------


def test_all_pages_are_read_and_sorted_by_seq_not_by_service_order(stubbed):
    memory, stubber = stubbed
    # newest first, every timestamp in the same millisecond, ids not in seq order;
    # the oldest turn was written by an earlier version of Fence (blob-only)
    page_1 = [
        turn_event("1767268800123#0a", 5, ["five"]),
        turn_event("1767268800123#ff", 4, ["four"]),
    ]
    page_2 = [
        system_event("1767268800123#05", "the prompt", at=2),
        turn_event("1767268800123#11", 3, ["three"]),
    ]
    page_3 = [blob_only_turn_event("1767268800123#01", 1, ["one", "two"], turn_id="run-1")]
    stubber.add_response("list_events", {"events": page_1, "nextToken": "p2"}, list_params())
    stubber.add_response("list_events", {"events": page_2, "nextToken": "p3"}, list_params("p2"))
    stubber.add_response("list_events", {"events": page_3}, list_params("p3"))

    messages = memory.get_messages()

    assert [(m.seq, m.content) for m in messages] == [
        (1, "one"),
        (2, "two"),
        (3, "three"),
        (4, "four"),
        (5, "five"),
    ]
    assert {m.turn_id for m in messages[:2]} == {"run-1"}


def at_ms(millis: int) -> datetime:
    return datetime.fromtimestamp(millis / 1000, tz=UTC)


def test_events_other_tools_wrote_are_merged_by_timestamp_then_event_id(stubbed):
    memory, stubber = stubbed
    events = [  # newest first, as the service lists them
        turn_event("3000#ff", 3, ["fence at 3000"], "run-3", at=at_ms(3000)),
        foreign_event("3000#00", [("sdk at 3000, smaller id", "USER")], at=at_ms(3000)),
        foreign_event(
            "2000#bb",
            [("Hello from the SDK", "USER"), ("Hi!", "ASSISTANT"), ("42 degrees", "TOOL")],
            at=at_ms(2000),
        ),
        turn_event("1000#aa", 1, ["fence at 1000", "second of the turn"], "run-1", at=at_ms(1000)),
    ]
    stubber.add_response("list_events", {"events": events}, list_params())

    window = memory.get_window()

    assert [(m.seq, m.role.value, m.content) for m in window.messages] == [
        (1, "user", "fence at 1000"),
        (2, "user", "second of the turn"),
        (None, "user", "Hello from the SDK"),
        (None, "assistant", "Hi!"),
        (None, "user", "42 degrees"),  # a TOOL entry without its call reaches a model as text
        (None, "user", "sdk at 3000, smaller id"),
        (3, "user", "fence at 3000"),
    ]
    assert window.last_seq == 3  # other writers' events have no seq and do not move it
    tool = window.messages[4]
    assert tool.meta == {"agentcore_event_id": "2000#bb", "agentcore_role": "TOOL"}
    assert tool.turn_id is None and tool.tokens


def test_fence_turns_keep_seq_order_even_when_their_timestamps_disagree(stubbed):
    """Two workers' clocks disagree: seq still orders Fence's turns, and a foreign
    event is placed by the merge, deterministically."""
    memory, stubber = stubbed
    events = [
        foreign_event("2500#aa", [("sdk", "USER")], at=at_ms(2500)),
        turn_event("2000#aa", 2, ["seq 2, clock behind"], at=at_ms(2000)),
        turn_event("3000#aa", 1, ["seq 1"], at=at_ms(3000)),
    ]
    stubber.add_response("list_events", {"events": events}, list_params())
    stubber.add_response("list_events", {"events": list(reversed(events))}, list_params())

    first_read = [m.content for m in memory.get_messages()]
    second_read = [m.content for m in memory.get_messages()]

    assert first_read == second_read == ["sdk", "seq 1", "seq 2, clock behind"]


def test_a_window_of_a_paged_session_is_its_newest_messages(stubbed):
    memory, stubber = stubbed
    stubber.add_response(
        "list_events",
        {
            "events": [turn_event("2#aa", 3, ["three"]), turn_event("2#bb", 2, ["two"])],
            "nextToken": "p2",
        },
        list_params(),
    )
    stubber.add_response(
        "list_events", {"events": [turn_event("1#aa", 1, ["one"])]}, list_params("p2")
    )
    budget = user("two").tokens + user("three").tokens

    window = memory.get_window(budget)

    assert [m.content for m in window.messages] == ["two", "three"]
    assert window.truncated and window.last_seq == 3


def test_a_seq_claimed_twice_is_kept_twice_in_one_order_for_every_reader(stubbed):
    """If a writer died between creating and verifying, two events can share a seq."""
    memory, stubber = stubbed
    events = [turn_event("9#bb", 2, ["later id"]), turn_event("9#aa", 2, ["earlier id"])]
    stubber.add_response("list_events", {"events": events}, list_params())
    stubber.add_response("list_events", {"events": list(reversed(events))}, list_params())

    first_read = [m.content for m in memory.get_messages()]
    second_read = [m.content for m in memory.get_messages()]

    assert first_read == second_read == ["earlier id", "later id"]


def test_the_newest_system_prompt_wins_whatever_the_page_order(stubbed):
    """Read from Fence's events that are not turns, whatever the session's length."""
    memory, stubber = stubbed
    stubber.add_response(
        "list_events",
        {"events": [system_event("5#aa", "old", at=10)], "nextToken": "p2"},
        list_params(only=NOT_TURNS),
    )
    stubber.add_response(
        "list_events",
        {"events": [system_event("4#aa", "new", at=20)]},
        list_params("p2", only=NOT_TURNS),
    )

    assert memory.get_system_message() == "new"


# -- claiming a seq without conditional writes --------------------------------------


def test_a_commit_claims_the_next_seq_with_a_token_derived_from_turn_and_seq(stubbed):
    memory, stubber = stubbed
    history = [without_payload(turn_event("1#aa", 1, ["a", "b", "c", "d", "e"]))]
    stubber.add_response("list_events", {"events": history}, list_params(payloads=False))
    stubber.add_response("create_event", created("2#aa"), created_params(6, ["q"], "run-7"))
    mine = without_payload(turn_event("2#aa", 6, ["q"], "run-7"))
    stubber.add_response("list_events", {"events": [mine, *history]}, list_params(payloads=False))

    tokens = sent_tokens(memory)
    assert memory.commit_turn("run-7", [user("q")]) is True

    other_handle = AgentCoreMemory(ACTOR, SESSION, memory_id=MEMORY_ID, client=memory.client)
    assert tokens == [other_handle._client_token("run-7", 0, 6, attempt=0)]
    assert other_handle._client_token("run-7", 0, 7, attempt=0) != tokens[0]
    assert other_handle._client_token("run-8", 0, 6, attempt=0) != tokens[0]


def test_a_writer_that_finds_a_rival_on_its_seq_deletes_its_event_and_retries(stubbed):
    memory, stubber = stubbed
    stubber.add_response("list_events", {"events": []}, list_params(payloads=False))
    stubber.add_response("create_event", created("5#aa"), created_params(1, ["mine"], "run-a"))
    rival = without_payload(turn_event("5#bb", 1, ["theirs"], "run-b"))
    mine = without_payload(turn_event("5#aa", 1, ["mine"], "run-a"))
    stubber.add_response("list_events", {"events": [rival, mine]}, list_params(payloads=False))
    stubber.add_response(
        "delete_event",
        {"eventId": "5#aa"},
        {"memoryId": MEMORY_ID, "actorId": ACTOR, "sessionId": SESSION, "eventId": "5#aa"},
    )
    stubber.add_response("list_events", {"events": [rival]}, list_params(payloads=False))
    stubber.add_response("create_event", created("6#aa"), created_params(2, ["mine"], "run-a"))
    mine_again = without_payload(turn_event("6#aa", 2, ["mine"], "run-a"))
    stubber.add_response(
        "list_events", {"events": [mine_again, rival]}, list_params(payloads=False)
    )

    assert memory.commit_turn("run-a", [user("mine")]) is True


def test_a_claim_retried_after_both_writers_yielded_sends_a_new_token(stubbed):
    """Reusing the token would let the service answer with the event we deleted."""
    memory, stubber = stubbed
    tokens = sent_tokens(memory)
    stubber.add_response("list_events", {"events": []}, list_params(payloads=False))
    stubber.add_response("create_event", created("5#aa"), created_params(1, ["mine"], "run-a"))
    rival = without_payload(turn_event("5#bb", 1, ["theirs"], "run-b"))
    mine = without_payload(turn_event("5#aa", 1, ["mine"], "run-a"))
    stubber.add_response("list_events", {"events": [rival, mine]}, list_params(payloads=False))
    stubber.add_response("delete_event", {"eventId": "5#aa"}, None)
    stubber.add_response(
        "list_events", {"events": []}, list_params(payloads=False)
    )  # it yielded too
    stubber.add_response("create_event", created("6#aa"), created_params(1, ["mine"], "run-a"))
    mine_again = without_payload(turn_event("6#aa", 1, ["mine"], "run-a"))
    stubber.add_response("list_events", {"events": [mine_again]}, list_params(payloads=False))

    assert memory.commit_turn("run-a", [user("mine")]) is True
    assert len(tokens) == 2 and tokens[0] != tokens[1]


def test_a_fenced_writer_that_finds_a_rival_deletes_its_event_and_is_stale(stubbed):
    memory, stubber = stubbed
    stubber.add_response("list_events", {"events": []}, list_params(payloads=False))
    stubber.add_response("create_event", created("5#aa"), created_params(1, ["stale"], "run-old"))
    rival = without_payload(turn_event("5#bb", 1, ["new lease"], "run-new"))
    mine = without_payload(turn_event("5#aa", 1, ["stale"], "run-old"))
    stubber.add_response("list_events", {"events": [mine, rival]}, list_params(payloads=False))
    stubber.add_response("delete_event", {"eventId": "5#aa"}, None)

    with pytest.raises(StaleWriteError, match="moved on"):
        memory.commit_turn("run-old", [user("stale")], expected_last_seq=0)


def test_a_turn_found_twice_keeps_the_earlier_event(stubbed):
    """Two deliveries of one run, both written: the later one removes itself.

    Our read saw another writer's event on seq 1; that writer then yielded seq 1
    to the other delivery of our run, so we claimed seq 2 next to it.
    """
    memory, stubber = stubbed
    someone = without_payload(turn_event("5#cc", 1, ["x"], "run-x"))
    stubber.add_response("list_events", {"events": [someone]}, list_params(payloads=False))
    stubber.add_response("create_event", created("7#aa"), created_params(2, ["q"], "run-1"))
    other_delivery = without_payload(turn_event("6#aa", 1, ["q"], "run-1"))
    mine = without_payload(turn_event("7#aa", 2, ["q"], "run-1"))
    stubber.add_response(
        "list_events", {"events": [mine, other_delivery]}, list_params(payloads=False)
    )
    stubber.add_response("delete_event", {"eventId": "7#aa"}, None)

    assert memory.commit_turn("run-1", [user("q")]) is False


def test_a_missing_memory_is_a_backend_error_naming_it(stubbed):
    memory, stubber = stubbed
    stubber.add_client_error(
        "list_events", service_error_code="ResourceNotFoundException", http_status_code=404
    )

    with pytest.raises(MemoryBackendError, match=f"'{MEMORY_ID}'.*aws_setup agentcore"):
        memory.get_messages()


# -- against the local endpoint ------------------------------------------------------


@pytest.fixture
def settings_from_env(monkeypatch):
    get_settings.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    get_settings.cache_clear()


def test_the_seed_example_with_memory_and_endpoint_from_the_environment(
    aws_endpoint, agentcore_memory_id, settings_from_env
):
    settings_from_env.setenv("FENCE_AGENTCORE_MEMORY_ID", agentcore_memory_id)
    settings_from_env.setenv("AWS_ENDPOINT_URL_BEDROCK_AGENTCORE", aws_endpoint)
    session_id = f"session_{uuid.uuid4().hex[:8]}"

    memory = AgentCoreMemory(agent_id="agent_123", session_id=session_id)
    memory.set_system_message("You are an enterprise assistant")
    memory.add_message(role="user", content="Hello!")
    memory.add_message(role="assistant", content="Hi there!")

    later = AgentCoreMemory(agent_id="agent_123", session_id=session_id)
    assert later.memory_id == agentcore_memory_id and later.actor_id == "agent_123"
    assert later.get_system_message() == "You are an enterprise assistant"
    assert [(m.role, m.content) for m in later.get_messages()] == [
        (Role.USER, "Hello!"),
        (Role.ASSISTANT, "Hi there!"),
    ]
    other_agent = AgentCoreMemory(agent_id="agent_999", session_id=session_id)
    assert other_agent.get_messages() == [] and other_agent.get_system_message() is None


def test_no_memory_id_anywhere_is_refused_saying_how_to_set_it(settings_from_env):
    settings_from_env.delenv("FENCE_AGENTCORE_MEMORY_ID", raising=False)

    with pytest.raises(ValueError, match="FENCE_AGENTCORE_MEMORY_ID"):
        AgentCoreMemory(agent_id="agent_123", session_id="session_456")


@pytest.mark.parametrize(
    ("kwargs", "rule"),
    [
        ({"agent_id": "", "session_id": "s"}, "agent_id"),
        ({"agent_id": "bad agent", "session_id": "s"}, "agent_id"),
        ({"agent_id": "a", "actor_id": "-x", "session_id": "s"}, "actor_id"),
        ({"agent_id": "a", "session_id": "s", "memory_id": "nope"}, "memory_id"),
        ({"agent_id": "a", "session_id": "s", "page_size": 0}, "page_size"),
        ({"agent_id": "a", "session_id": "has space"}, "session_id"),
    ],
)
def test_invalid_configuration_is_refused_naming_the_field(kwargs, rule, aws_endpoint):
    kwargs.setdefault("memory_id", MEMORY_ID)
    with pytest.raises(ValueError, match=rule):
        AgentCoreMemory(endpoint_url=aws_endpoint, **kwargs)


def test_fence_session_ids_agentcore_cannot_hold_are_mapped_apart(agentcore_factory):
    dotted, underscored = "user@example.com:chat.1", "user_example_com_chat_1"
    assert agentcore_session_id(underscored) == underscored
    assert agentcore_session_id(dotted) not in (dotted, underscored)

    agentcore_factory(dotted).add_user_message("for the dotted id")
    agentcore_factory(underscored).add_user_message("for the plain id")

    assert [m.content for m in agentcore_factory(dotted).get_messages()] == ["for the dotted id"]
    assert [m.content for m in agentcore_factory(underscored).get_messages()] == [
        "for the plain id"
    ]


def _events(memory: AgentCoreMemory) -> list[dict]:
    return memory.client.list_events(
        memoryId=memory.memory_id,
        actorId=memory.actor_id,
        sessionId=memory.agentcore_session_id,
        includePayloads=True,
    )["events"]


def test_turns_tool_calls_and_the_prompt_are_stored_in_the_service(agentcore_factory):
    memory = agentcore_factory(f"s-{uuid.uuid4().hex[:8]}")
    call = ToolCall(id="c1", name="lookup", arguments={"order": 98765, "weight": 0.5})
    memory.set_system_message("You are support")
    memory.commit_turn(
        "run-1",
        [
            user("Where is order 98765?"),
            Message(role=Role.ASSISTANT, content="", tool_calls=(call,)),
            Message(role=Role.TOOL, content='{"status": "shipped"}', tool_call_id="c1"),
            Message(role=Role.ASSISTANT, content="It shipped."),
        ],
    )

    events = _events(memory)
    kinds = Counter(e["metadata"]["fence_kind"]["stringValue"] for e in events)
    assert kinds == {"system": 1, "turn": 1}  # one event per turn, not per message
    [turn] = [e for e in events if e["metadata"]["fence_kind"]["stringValue"] == "turn"]
    assert len(turn["payload"]) == 4
    assert turn["metadata"]["fence_turn"]["stringValue"] == "run-1"
    stored = memory.get_messages()
    assert stored[1].tool_calls == (call,) and stored[2].tool_call_id == "c1"


def test_clear_costs_one_read_and_one_event_and_cleared_events_can_be_deleted(
    agentcore_factory,
):
    memory = agentcore_factory(f"s-{uuid.uuid4().hex[:8]}")
    memory.set_system_message("first prompt")
    memory.set_system_message("second prompt")
    for turn in range(5):
        memory.commit_turn(f"run-{turn}", [user(f"q{turn}"), user(f"r{turn}")])
    calls: Counter[str] = Counter()
    memory.client.meta.events.register(
        "before-call.bedrock-agentcore", lambda model, **_: calls.update([model.name])
    )

    memory.clear()

    assert calls == {"ListEvents": 1, "CreateEvent": 1}
    assert memory.get_messages() == [] and memory.has_turn("run-0")
    assert len(_events(memory)) == 8  # still stored: 2 prompts, 5 turns, 1 clear

    assert memory.delete_cleared_events() == 6  # 5 turns and the superseded prompt
    assert len(_events(memory)) == 2
    assert memory.get_system_message() == "second prompt"
    assert not memory.has_turn("run-0")  # documented: deleting a turn forgets its id
    memory.add_user_message("after")
    assert [(m.seq, m.content) for m in memory.get_messages()] == [(11, "after")]


def test_a_turn_longer_than_an_event_holds_is_refused(agentcore_factory):
    memory = agentcore_factory(f"s-{uuid.uuid4().hex[:8]}")

    with pytest.raises(ValueError, match=f"at most {MAX_MESSAGES_PER_TURN} messages"):
        memory.commit_turn("run-long", [user(f"m{i}") for i in range(MAX_MESSAGES_PER_TURN + 1)])

    assert memory.get_messages() == [] and not memory.has_turn("run-long")


def test_a_turn_of_the_most_messages_an_event_holds_lands_as_one_event(agentcore_factory):
    memory = agentcore_factory(f"s-{uuid.uuid4().hex[:8]}")

    memory.commit_turn("run-full", [user(f"m{i}") for i in range(MAX_MESSAGES_PER_TURN)])

    [event] = _events(memory)
    assert len(event["payload"]) == 100  # 99 conversational entries and the companion blob
    assert [m.content for m in memory.get_messages()] == [
        f"m{i}" for i in range(MAX_MESSAGES_PER_TURN)
    ]


def test_text_longer_than_a_conversational_entry_holds_stays_in_the_blob(agentcore_factory):
    memory = agentcore_factory(f"s-{uuid.uuid4().hex[:8]}")
    long_text = "x" * (CONVERSATIONAL_TEXT_MAX + 1)

    memory.commit_turn("run-1", [user("short"), user(long_text)])

    [event] = _events(memory)
    assert [p["conversational"]["content"]["text"] for p in event["payload"][:-1]] == ["short"]
    assert [m.content for m in memory.get_messages()] == ["short", long_text]


def test_concurrent_writers_end_with_one_message_per_seq(agentcore_factory):
    """The yield-on-rival rule, for real: threads race for the same seqs.

    A seq given up by a yielding writer may stay unused (a gap); none is shared.
    """
    session_id = f"s-{uuid.uuid4().hex[:8]}"
    writers, per_writer = 4, 8

    def write(writer: int) -> None:
        memory = agentcore_factory(session_id)
        for i in range(per_writer):
            memory.commit_turn(f"run-{writer}-{i}", [user(f"w{writer}-{i}")])

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    messages = agentcore_factory(session_id).get_messages()
    seqs = [m.seq for m in messages]
    assert len(messages) == writers * per_writer
    assert seqs == sorted(set(seqs))  # increasing, none shared
    assert sorted(m.content for m in messages) == sorted(
        f"w{w}-{i}" for w in range(writers) for i in range(per_writer)
    )
