"""The seed's memory examples (the memory API's original documentation, kept here as code),
run as written with ``EchoModel`` for the hosted model. ``docs/memory.md`` is that
documentation rewritten for Fence; ``tests/test_docs_examples.py`` runs its examples.

``GPT4omini(source="app")`` and ``Claude35Sonnet(...)`` become ``EchoModel()``;
DynamoDB becomes SQLite (DynamoDB runs these examples in its own tests). The
echo reply states how many conversation messages the model was sent and
repeats the last user message, so the assertions check memory, not wording.
Each test runs in its own directory because the examples use relative paths.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from fence.agents import Agent
from fence.memory import FleetingMemory, SQLiteMemory
from fence.messages import Role
from fence.models.local import EchoModel

REPO = Path(__file__).resolve().parent.parent


def echo(sent: int, said: str) -> str:
    """What EchoModel answers when sent ``sent`` messages, the last user one being ``said``."""
    return f"I was sent {sent} messages. You said: {said}"


@pytest.fixture(autouse=True)
def in_tmp_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def test_fleeting_memory_basic_usage():
    # Create memory
    memory = FleetingMemory()

    # Create agent with memory
    agent = Agent(identifier="chatbot", model=EchoModel(), memory=memory)

    # Multi-turn conversation
    agent.run("My name is Alice")
    agent.run("I like Python programming")
    response = agent.run("What's my name and what do I like?")

    assert response == echo(5, "What's my name and what do I like?")
    assert [(m.role, m.content) for m in memory.get_messages()] == [
        (Role.USER, "My name is Alice"),
        (Role.ASSISTANT, echo(1, "My name is Alice")),
        (Role.USER, "I like Python programming"),
        (Role.ASSISTANT, echo(3, "I like Python programming")),
        (Role.USER, "What's my name and what do I like?"),
        (Role.ASSISTANT, response),
    ]


LATER_IN_ANOTHER_PROCESS = """
from fence.agents import Agent
from fence.memory import SQLiteMemory
from fence.models.local import EchoModel

agent = Agent(
    identifier="local_agent",
    model=EchoModel(),
    memory=SQLiteMemory(
        db_path="agent_memory.db",
        session_id="user_session_123"  # Same session
    )
)

response = agent.run("What's my favorite book?")
print(response)
"""


def test_sqlite_memory_basic_usage_persists_into_a_new_process(tmp_path):
    # Create SQLite memory
    memory = SQLiteMemory(db_path="agent_memory.db", session_id="user_session_123")

    # Create agent
    agent = Agent(identifier="local_agent", model=EchoModel(), memory=memory)

    # Conversations persist locally
    agent.run("My favorite book is 1984")

    # Later... (in a different process)
    later = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(LATER_IN_ANOTHER_PROCESS)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert later.returncode == 0, later.stderr
    assert later.stdout.strip() == echo(3, "What's my favorite book?")
    assert [m.content for m in memory.get_messages()] == [
        "My favorite book is 1984",
        echo(1, "My favorite book is 1984"),
        "What's my favorite book?",
        echo(3, "What's my favorite book?"),
    ]
    assert (tmp_path / "agent_memory.db").exists()


def test_sqlite_memory_keeps_multiple_sessions_apart_in_one_file(tmp_path):
    # Different sessions in the same database
    session1 = SQLiteMemory(db_path="memory.db", session_id="session_1")
    session2 = SQLiteMemory(db_path="memory.db", session_id="session_2")

    agent1 = Agent(identifier="agent", model=EchoModel(), memory=session1)
    agent2 = Agent(identifier="agent", model=EchoModel(), memory=session2)

    agent1.run("I am in session one")
    agent1.run("Still session one")
    reply = agent2.run("I am in session two")

    assert reply == echo(1, "I am in session two")
    assert [m.content for m in session1.get_messages() if m.role is Role.USER] == [
        "I am in session one",
        "Still session one",
    ]
    assert [m.content for m in session2.get_messages() if m.role is Role.USER] == [
        "I am in session two"
    ]
    assert sorted(p.name for p in tmp_path.glob("*.db")) == ["memory.db"]


@pytest.mark.parametrize("backend", ["fleeting", "sqlite"])
def test_memory_operations(backend, capsys):
    memory = FleetingMemory() if backend == "fleeting" else SQLiteMemory("ops.db", "ops")

    # Add user message
    memory.add_message(role="user", content="Hello!")
    # Add assistant message
    memory.add_message(role="assistant", content="Hi there!")
    # Add system message
    memory.add_message(role="system", content="You are a helpful assistant")

    # Set or update system message
    memory.set_system_message("You are a helpful coding assistant")

    # Get all messages
    messages = memory.get_messages()
    for message in messages:
        print(f"{message.role}: {message.content}")

    assert capsys.readouterr().out.splitlines() == [
        "user: Hello!",
        "assistant: Hi there!",
        "system: You are a helpful assistant",
    ]
    assert memory.get_system_message() == "You are a helpful coding assistant"

    # Clear all messages (keeps system message)
    memory.clear()

    assert memory.get_messages() == []
    assert memory.get_system_message() == "You are a helpful coding assistant"


def test_memory_with_max_size_limits_what_the_model_is_sent():
    memory = FleetingMemory()
    agent = Agent(
        identifier="limited_memory_agent",
        model=EchoModel(),
        memory=memory,
        max_memory_size=1000,  # Max tokens in memory
    )
    long_prompt = "Tell me about the history of the Python programming language. " * 20
    truncated_runs = 0

    for i in range(8):
        before = memory.get_messages()
        reply = agent.run(f"{i}: {long_prompt}")

        sent = int(reply.split()[3]) - 1  # history messages sent with the prompt
        history = before[len(before) - sent :] if sent else []
        assert sum(m.tokens for m in history) <= 1000
        assert not history or history[0].role is Role.USER
        if sent < len(before):
            truncated_runs += 1
            next_older_turn = before[len(before) - sent - 2 : len(before) - sent]
            assert sum(m.tokens for m in history + next_older_turn) > 1000, (
                "the newest whole turns that fit are sent"
            )

    assert truncated_runs > 0
    assert len(memory.get_messages()) == 16, "the limit is on what is sent, not what is stored"


def test_memory_prefill_opens_the_conversation_once():
    memory = FleetingMemory()
    agent = Agent(
        identifier="prefilled_agent",
        model=EchoModel(),
        memory=memory,
        prefill="I understand. I'll help you with that.",
    )

    first = agent.run("Help me plan a trip")
    agent.run("To Lisbon")

    assert first == echo(2, "Help me plan a trip"), "the model saw the prefill"
    assert [(m.role, m.content) for m in memory.get_messages()][:2] == [
        (Role.ASSISTANT, "I understand. I'll help you with that."),
        (Role.USER, "Help me plan a trip"),
    ]
    assert len(memory.get_messages()) == 5


def test_shared_memory_across_agents():
    # Create shared memory (SQLite in place of DynamoDB)
    shared_memory = SQLiteMemory(db_path="shared-memory.db", session_id="team_session")

    # Multiple agents share the same memory
    agent1 = Agent(identifier="agent1", model=EchoModel(), memory=shared_memory)
    agent2 = Agent(identifier="agent2", model=EchoModel(), memory=shared_memory)

    # Both agents see the same conversation history
    agent1.run("The password is 'secret123'")
    reply = agent2.run("What's the password?")

    assert reply == echo(3, "What's the password?")
    stored = shared_memory.get_messages()
    assert stored[0].content == "The password is 'secret123'"
    assert [m.meta.get("agent") for m in stored if m.role is Role.ASSISTANT] == [
        "agent1",
        "agent2",
    ]


def test_unique_session_ids_from_the_best_practices_are_accepted():
    user_id = 12345
    session_id = f"user_{user_id}_session_{uuid.uuid4()}"

    memory = SQLiteMemory(db_path="memory.db", session_id=session_id)
    memory.add_user_message("hello")

    assert SQLiteMemory(db_path="memory.db", session_id=session_id).get_messages()


@pytest.mark.parametrize("backend", ["fleeting", "sqlite"])
def test_monitor_memory_size_keeps_the_system_prompt(backend):
    memory = FleetingMemory() if backend == "fleeting" else SQLiteMemory("big.db", "big")
    memory.set_system_message("You are a helpful assistant")
    for i in range(21):
        memory.add_message(role="user" if i % 2 == 0 else "assistant", content="word " * 500)

    # Check memory size
    messages = memory.get_messages()
    total_tokens = sum(len(msg.content.split()) for msg in messages)

    if total_tokens > 10000:
        # Summarize or truncate old messages
        memory.clear()
        memory.add_message(role="system", content="Previous conversation summarized: ...")

    assert total_tokens == 10500
    assert memory.get_system_message() == "You are a helpful assistant"
    assert [(m.role, m.content) for m in memory.get_messages()] == [
        (Role.SYSTEM, "Previous conversation summarized: ...")
    ]


def create_support_agent(user_id: str, session_id: str) -> Agent:
    """Create a customer support agent with persistent memory (SQLite for DynamoDB)."""

    # Create persistent memory for this user session
    memory = SQLiteMemory(
        db_path="customer-support-memory.db", session_id=f"user_{user_id}_session_{session_id}"
    )

    # Create agent
    agent = Agent(
        identifier="support_agent",
        model=EchoModel(),
        memory=memory,
        role="""You are a helpful customer support agent.
        You remember previous conversations with the customer.
        Always be polite and professional.""",
        max_memory_size=5000,  # Limit context size
    )

    return agent


def test_real_world_customer_support_bot():
    agent = create_support_agent(user_id="12345", session_id="abc-def")

    # First interaction
    agent.run("I'm having trouble with my order #98765")

    # Later interaction (same session)
    later = create_support_agent(user_id="12345", session_id="abc-def")
    reply = later.run("What was my order number again?")

    # Different session
    new_agent = create_support_agent(user_id="12345", session_id="xyz-123")
    fresh = new_agent.run("Hello")  # Fresh conversation, no memory of previous session

    assert reply == echo(3, "What was my order number again?")
    assert "#98765" in later.memory.get_messages()[0].content
    assert fresh == echo(1, "Hello")
