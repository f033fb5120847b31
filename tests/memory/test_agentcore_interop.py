"""AgentCoreMemory and the official ``bedrock-agentcore`` SDK share one history.

Both talk HTTP to the suite's local endpoint (moto): the SDK's ``MemoryClient``
builds its boto3 clients from the environment, so ``AWS_ENDPOINT_URL`` points
it there. The endpoint lists events as the service does: newest first, in
pages (``aws_server.AGENTCORE_EXTRAS``).
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from bedrock_agentcore.memory import MemoryClient

from fence.agents import Agent
from fence.memory import AgentCoreMemory
from fence.messages import Message, Role, ToolCall
from fence.models.local import ScriptedModel
from tests.agents.helpers import answer, calls, roles_and_contents

ACTOR = "agent_123"


@pytest.fixture
def sdk(aws_endpoint, monkeypatch) -> MemoryClient:
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws_endpoint)
    return MemoryClient(region_name="us-east-1")


@pytest.fixture
def session_id() -> str:
    return f"session_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def memory(agentcore_factory, session_id) -> AgentCoreMemory:
    return agentcore_factory(session_id)


def texts_of(turns: list[list[dict]]) -> list[list[tuple[str, str]]]:
    return [[(m["role"], m["content"]["text"]) for m in turn] for turn in turns]


def raw_events(memory: AgentCoreMemory) -> list[dict]:
    return memory.client.list_events(
        memoryId=memory.memory_id,
        actorId=memory.actor_id,
        sessionId=memory.agentcore_session_id,
        includePayloads=True,
    )["events"]


def test_the_sdk_reads_the_turns_fence_writes(memory, sdk, agentcore_memory_id, session_id):
    agent = Agent(identifier="colors", model=ScriptedModel(["Noted: blue."]), memory=memory)

    agent.run("My favorite color is blue")

    turns = sdk.get_last_k_turns(agentcore_memory_id, ACTOR, session_id, k=5)
    assert texts_of(turns) == [
        [("USER", "My favorite color is blue"), ("ASSISTANT", "Noted: blue.")]
    ]


def test_fence_and_its_agent_read_the_turns_the_sdk_writes(
    memory, sdk, agentcore_memory_id, session_id
):
    sdk.create_event(
        memory_id=agentcore_memory_id,
        actor_id=ACTOR,
        session_id=session_id,
        messages=[("Hello from the SDK", "USER"), ("Hi!", "ASSISTANT")],
    )

    assert roles_and_contents(memory.get_messages()) == [
        ("user", "Hello from the SDK"),
        ("assistant", "Hi!"),
    ]
    model = ScriptedModel(["You said hello."])
    Agent(identifier="bot", model=model, memory=memory).run("What did I say?")
    assert roles_and_contents(model.calls[0]) == [
        ("user", "Hello from the SDK"),
        ("assistant", "Hi!"),
        ("user", "What did I say?"),
    ]


def test_a_mixed_session_reads_in_event_order_for_both(
    memory, sdk, agentcore_memory_id, session_id
):
    agent = Agent(identifier="bot", model=ScriptedModel(["one", "three"]), memory=memory)
    agent.run("fence 1")
    time.sleep(0.005)  # distinct milliseconds: the order is the events' timestamps
    sdk.create_event(
        memory_id=agentcore_memory_id,
        actor_id=ACTOR,
        session_id=session_id,
        messages=[("sdk 2", "USER"), ("two", "ASSISTANT")],
    )
    time.sleep(0.005)
    agent.run("fence 3")

    assert [m.content for m in memory.get_messages()] == [
        "fence 1",
        "one",
        "sdk 2",
        "two",
        "fence 3",
        "three",
    ]
    assert [m.seq for m in memory.get_messages()] == [1, 2, None, None, 3, 4]
    turns = sdk.get_last_k_turns(agentcore_memory_id, ACTOR, session_id, k=5)  # newest first
    assert [turn[0]["content"]["text"] for turn in turns] == ["fence 3", "sdk 2", "fence 1"]


def test_an_sdk_event_with_an_older_timestamp_is_placed_by_it(
    memory, sdk, agentcore_memory_id, session_id
):
    memory.add_user_message("written now")
    sdk.create_event(
        memory_id=agentcore_memory_id,
        actor_id=ACTOR,
        session_id=session_id,
        messages=[("backfilled", "USER")],
        event_timestamp=datetime.now(UTC) - timedelta(hours=1),
    )

    assert [m.content for m in memory.get_messages()] == ["backfilled", "written now"]


def test_a_turn_is_one_event_of_conversational_entries_and_one_companion_blob(memory, sdk):
    call = ToolCall(id="c1", name="lookup", arguments={"order": 98765})
    turn = [
        Message(role=Role.USER, content="Where is order 98765?"),
        Message(role=Role.ASSISTANT, content="", tool_calls=(call,)),
        Message(role=Role.TOOL, content='{"status": "shipped"}', tool_call_id="c1", name="lookup"),
        Message(role=Role.ASSISTANT, content="It shipped.", meta={"agent": "support"}),
    ]

    memory.commit_turn("run-1", turn)

    [event] = raw_events(memory)
    *conversational, companion = event["payload"]
    assert [
        (p["conversational"]["role"], p["conversational"]["content"]["text"])
        for p in conversational
    ] == [
        ("USER", "Where is order 98765?"),
        ("TOOL", '{"status": "shipped"}'),  # the call-only message has no text to show
        ("ASSISTANT", "It shipped."),
    ]
    blob = companion["blob"]
    assert blob["fence"] == "turn" and [e.get("text") for e in blob["messages"]] == [0, None, 1, 2]
    assert "content" not in json.loads(blob["messages"][0]["record"])  # text is stored once
    assert event["metadata"]["fence_turn"] == {"stringValue": "run-1"}
    stored = memory.get_messages()
    assert [m.model_dump(exclude={"seq", "turn_id"}) for m in stored] == [
        m.model_dump(exclude={"seq", "turn_id"}) for m in turn
    ]
    assert [m.seq for m in stored] == [1, 2, 3, 4] and {m.turn_id for m in stored} == {"run-1"}


def test_a_session_an_earlier_version_wrote_still_reads_and_grows(memory):
    """The blob-only layout, exactly as the previous AgentCoreMemory wrote it."""
    call = ToolCall(id="c1", name="lookup", arguments={"order": 1})
    old = [
        Message(role=Role.USER, content="old question"),
        Message(role=Role.ASSISTANT, content="", tool_calls=(call,)),
        Message(role=Role.TOOL, content="found", tool_call_id="c1"),
        Message(role=Role.ASSISTANT, content="old answer"),
    ]
    memory.client.create_event(
        memoryId=memory.memory_id,
        actorId=memory.actor_id,
        sessionId=memory.agentcore_session_id,
        eventTimestamp=datetime.now(UTC),
        payload=[
            {
                "blob": {
                    "fence": "message",
                    "seq": 1 + i,
                    "record": json.dumps(m.to_record(), ensure_ascii=False),
                    "turn_id": "old-run",
                }
            }
            for i, m in enumerate(old)
        ],
        metadata={
            "fence_kind": {"stringValue": "turn"},
            "fence_seq": {"stringValue": "1"},
            "fence_last": {"stringValue": "4"},
            "fence_turn": {"stringValue": "old-run"},
        },
        clientToken=uuid.uuid4().hex,
    )

    assert [(m.seq, m.content) for m in memory.get_messages()] == [
        (1, "old question"),
        (2, ""),
        (3, "found"),
        (4, "old answer"),
    ]
    assert memory.get_messages()[1].tool_calls == (call,)
    assert memory.has_turn("old-run") and memory.commit_turn("old-run", old[:1]) is False
    model = ScriptedModel([answer("new answer")])
    Agent(identifier="bot", model=model, memory=memory).run("new question")
    assert len(model.calls[0]) == 5  # the old turn, whole, then the new prompt
    assert [m.seq for m in memory.get_messages()] == [1, 2, 3, 4, 5, 6]


def test_clear_hides_earlier_events_of_other_writers_and_never_deletes_them(
    memory, sdk, agentcore_memory_id, session_id
):
    def sdk_says(text: str) -> None:
        sdk.create_event(
            memory_id=agentcore_memory_id,
            actor_id=ACTOR,
            session_id=session_id,
            messages=[(text, "USER")],
        )
        time.sleep(0.005)

    memory.add_user_message("fence before")
    sdk_says("sdk before")
    memory.clear()
    time.sleep(0.005)
    sdk_says("sdk after")
    memory.add_user_message("fence after")

    assert [m.content for m in memory.get_messages()] == ["sdk after", "fence after"]
    assert memory.delete_cleared_events() == 1  # Fence's own turn before the clear
    left = Counter(
        "fence" if "metadata" in e and "fence_kind" in e["metadata"] else "sdk"
        for e in raw_events(memory)
    )
    assert left == {"sdk": 2, "fence": 2}  # both SDK events, the clear and the new turn
    assert [m.content for m in memory.get_messages()] == ["sdk after", "fence after"]


def test_a_tool_loop_turn_reads_back_for_the_sdk_as_text(
    memory, sdk, agentcore_memory_id, session_id
):
    def lookup(order: int) -> str:
        """Look an order up."""
        return f"order {order} shipped"

    model = ScriptedModel([calls(("c1", "lookup", {"order": 7})), answer("It shipped.")])
    Agent(identifier="bot", model=model, memory=memory, tools=[lookup]).run("Where is 7?")

    [turn] = texts_of(sdk.get_last_k_turns(agentcore_memory_id, ACTOR, session_id, k=5))
    assert turn == [
        ("USER", "Where is 7?"),
        ("TOOL", "order 7 shipped"),
        ("ASSISTANT", "It shipped."),
    ]
