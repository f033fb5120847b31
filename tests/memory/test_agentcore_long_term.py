"""AgentCore long-term memory: ``search`` over RetrieveMemoryRecords, the Agent option on
it, and the strategies ``aws_setup agentcore`` creates.

moto has no RetrieveMemoryRecords: the suite's endpoint answers it in the
service's wire format from records a test puts in (``AGENTCORE_EXTRAS``,
``tests/memory/agentcore_extras.py``), as an extraction strategy would have left them.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import uuid

import pytest

from fence.agents import Agent
from fence.errors import MemoryBackendError
from fence.memory import AgentCoreMemory, LongTermRecall, MemoryRecord
from fence.memory.aws_setup import create_agentcore_memory
from fence.memory.long_term import CONTEXT_HEADER
from fence.models.local import ScriptedModel
from tests.memory import aws_server
from tests.memory.agentcore_extras import AGENTCORE_EXTRAS


@pytest.fixture
def user_memory(aws_endpoint, agentcore_memory_id) -> AgentCoreMemory:
    """A session whose actor is an end user of its own, with records of its own."""
    return AgentCoreMemory(
        agent_id="support",
        actor_id=f"user-{uuid.uuid4().hex[:8]}",
        session_id=f"s-{uuid.uuid4().hex[:8]}",
        memory_id=agentcore_memory_id,
        endpoint_url=aws_endpoint,
    )


def remember(memory: AgentCoreMemory, namespace: str, text: str) -> None:
    AGENTCORE_EXTRAS.add_record(memory.memory_id, namespace.format(actor=memory.actor_id), text)


def test_search_finds_an_actors_records_under_its_namespace_path(user_memory):
    remember(user_memory, "/actors/{actor}/facts/", "The user's favorite color is blue")
    remember(user_memory, "/actors/{actor}/preferences/", "Prefers answers about color in French")
    remember(user_memory, "/actors/someone-else/facts/", "Someone else's favorite color is red")

    records = user_memory.search("What is my favorite color?", top_k=2)

    assert [r.text for r in records] == [
        "The user's favorite color is blue",
        "Prefers answers about color in French",
    ]
    assert records[0].namespace == f"/actors/{user_memory.actor_id}/facts/"
    assert records[0].score > records[1].score and records[0].record_id
    assert AGENTCORE_EXTRAS.retrievals[-1] == {
        "namespacePath": f"/actors/{user_memory.actor_id}/",
        "searchCriteria": {"searchQuery": "What is my favorite color?", "topK": 2},
        "maxResults": 2,
    }


def test_search_in_one_namespace_fills_in_the_actor_and_session(user_memory):
    summary = f"/actors/{user_memory.actor_id}/sessions/{user_memory.agentcore_session_id}/summary/"
    AGENTCORE_EXTRAS.add_record(user_memory.memory_id, summary, "Asked about the color blue")
    remember(user_memory, "/actors/{actor}/facts/", "The favorite color is blue")

    records = user_memory.search(
        "color", namespace="/actors/{actorId}/sessions/{sessionId}/summary/"
    )

    assert [r.text for r in records] == ["Asked about the color blue"]
    assert AGENTCORE_EXTRAS.retrievals[-1]["namespace"] == summary


@pytest.mark.parametrize(
    ("kwargs", "rule"),
    [
        ({"query": " "}, "query"),
        ({"query": "q", "top_k": 0}, "top_k"),
        ({"query": "q", "top_k": 101}, "top_k"),
        ({"query": "q", "namespace": ""}, "namespace"),
    ],
)
def test_invalid_searches_are_refused_naming_the_field(user_memory, kwargs, rule):
    query = kwargs.pop("query")
    with pytest.raises(ValueError, match=rule):
        user_memory.search(query, **kwargs)


def test_the_agents_model_receives_the_records_recalled_for_the_prompt(user_memory):
    remember(user_memory, "/actors/{actor}/facts/", "The user's favorite color is blue")
    model = ScriptedModel(["Blue, as you told me."])
    agent = Agent(
        identifier="support",
        model=model,
        memory=user_memory,
        role="You are support.",
        long_term=LongTermRecall(user_memory, top_k=3),
    )

    result = agent.run_turn("What is my favorite color?")

    assert model.systems[0] == (
        f"You are support.\n\n{CONTEXT_HEADER}\n- The user's favorite color is blue"
    )
    assert result.recalled == (
        MemoryRecord(
            "The user's favorite color is blue",
            score=result.recalled[0].score,
            namespace=f"/actors/{user_memory.actor_id}/facts/",
            record_id=result.recalled[0].record_id,
        ),
    )
    assert [m.content for m in user_memory.get_messages()] == [
        "What is my favorite color?",
        "Blue, as you told me.",
    ]


def test_a_denied_retrieval_degrades_to_no_records_with_a_warning(user_memory, caplog):
    AGENTCORE_EXTRAS.denied_retrievals = 1
    model = ScriptedModel(["I don't know yet."])
    agent = Agent(
        identifier="support",
        model=model,
        memory=user_memory,
        long_term=LongTermRecall(user_memory),
    )

    with caplog.at_level(logging.WARNING, logger="fence.memory.long_term"):
        assert agent.run("What is my favorite color?") == "I don't know yet."

    assert "long-term recall failed" in caplog.text and "AccessDeniedException" in caplog.text
    assert model.systems[0] is None and len(user_memory.get_messages()) == 2


def test_a_strict_recall_that_is_denied_fails_the_turn_and_writes_nothing(user_memory):
    AGENTCORE_EXTRAS.denied_retrievals = 1
    agent = Agent(
        identifier="support",
        model=ScriptedModel(["never"]),
        memory=user_memory,
        long_term=LongTermRecall(user_memory, strict=True),
    )

    with pytest.raises(MemoryBackendError, match="denied"):
        agent.run("What is my favorite color?")

    assert user_memory.get_messages() == []


# -- the strategies of aws_setup ---------------------------------------------------------


def sent_strategies(control) -> list[dict]:
    """The ``memoryStrategies`` of every CreateMemory/UpdateMemory ``control`` sends."""
    sent: list[dict] = []
    for operation in ("CreateMemory", "UpdateMemory"):
        control.meta.events.register(
            f"provide-client-params.bedrock-agentcore-control.{operation}",
            lambda params, **_: sent.append(params.get("memoryStrategies")),
        )
    return sent


def test_the_memory_is_created_with_the_built_in_strategies_and_actor_namespaces(aws_endpoint):
    control = aws_server.client("bedrock-agentcore-control", aws_endpoint)
    sent = sent_strategies(control)

    result = create_agentcore_memory(f"fence_{uuid.uuid4().hex[:8]}", client=control)

    assert sent == [
        [
            {
                "semanticMemoryStrategy": {
                    "name": "fence_semantic",
                    "description": "Facts stated in the conversation",
                    "namespaceTemplates": ["/actors/{actorId}/facts/"],
                }
            },
            {
                "summaryMemoryStrategy": {
                    "name": "fence_summary",
                    "description": "A running summary of each session",
                    "namespaceTemplates": ["/actors/{actorId}/sessions/{sessionId}/summary/"],
                }
            },
            {
                "userPreferenceMemoryStrategy": {
                    "name": "fence_user_preference",
                    "description": "The user's preferences",
                    "namespaceTemplates": ["/actors/{actorId}/preferences/"],
                }
            },
        ]
    ]
    assert [s["type"] for s in result["strategies"]] == [
        "SEMANTIC",
        "SUMMARIZATION",
        "USER_PREFERENCE",
    ]


def test_running_again_adds_the_strategies_an_older_memory_lacks(aws_endpoint):
    control = aws_server.client("bedrock-agentcore-control", aws_endpoint)
    name = f"fence_{uuid.uuid4().hex[:8]}"
    older = create_agentcore_memory(name, strategies=("semantic",), client=control)
    sent = sent_strategies(control)

    again = create_agentcore_memory(name, client=control)
    once_more = create_agentcore_memory(name, client=control)

    assert again["memory_id"] == once_more["memory_id"] == older["memory_id"]
    assert [list(s) for s in sent[0]["addMemoryStrategies"]] == [
        ["summaryMemoryStrategy"],
        ["userPreferenceMemoryStrategy"],
    ]
    assert len(sent) == 1  # the third run found nothing to add
    assert sorted(s["type"] for s in once_more["strategies"]) == [
        "SEMANTIC",
        "SUMMARIZATION",
        "USER_PREFERENCE",
    ]


def test_unknown_strategies_are_refused_naming_the_choices():
    with pytest.raises(ValueError, match="strategies: unknown \\['episodic'\\]"):
        create_agentcore_memory("fence_x", strategies=("episodic",))


def test_the_command_line_can_create_a_memory_without_strategies(aws_endpoint):
    name = f"fence_{uuid.uuid4().hex[:8]}"
    argv = [sys.executable, "-m", "fence.memory.aws_setup", "--endpoint-url", aws_endpoint]
    done = subprocess.run(
        [*argv, "agentcore", "--name", name, "--strategies", "none"],
        env=aws_server.dummy_aws_environ(),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["strategies"] == []
