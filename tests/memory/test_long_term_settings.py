"""``FENCE_LONG_TERM_*`` turn long-term memory on for the runtime's built-in agents
(``workers.registry``) on AgentCore memory, and stop a worker at start when its
memory cannot search.

The suite has no runtime fixture on the AgentCore endpoint (``on_memory_endpoint``
is DynamoDB's), so the agents are built here as a worker builds them, from the
registry with a session's memory; the refusal is checked on a real worker.
"""

from __future__ import annotations

import uuid

import pytest

from fence.memory import AgentCoreMemory, LongTermRecall, SQLiteMemory
from fence.memory.long_term import recall_from_settings
from fence.settings import Settings, get_settings
from producer.stack.launch import launch_worker
from tests.memory.agentcore_extras import AGENTCORE_EXTRAS
from tests.support import REPO
from workers import registry


@pytest.fixture
def settings_from_env(monkeypatch):
    get_settings.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.fixture
def user_memory(aws_endpoint, agentcore_memory_id) -> AgentCoreMemory:
    return AgentCoreMemory(
        agent_id="fence",
        actor_id=f"user-{uuid.uuid4().hex[:8]}",
        session_id=f"s-{uuid.uuid4().hex[:8]}",
        memory_id=agentcore_memory_id,
        endpoint_url=aws_endpoint,
    )


def test_long_term_memory_is_off_unless_set(user_memory):
    assert Settings().long_term_top_k == 0
    assert recall_from_settings(user_memory, Settings()) is None
    assert all(factory(user_memory).long_term is None for factory in registry.registry.values())


def test_the_built_in_agents_on_agentcore_recall_what_the_settings_say(
    user_memory, settings_from_env
):
    settings_from_env.setenv("FENCE_LONG_TERM_TOP_K", "2")
    settings_from_env.setenv("FENCE_LONG_TERM_MAX_TOKENS", "300")
    settings_from_env.setenv("FENCE_LONG_TERM_STRICT", "true")
    for text in ("Prefers the color blue", "Likes blue cheese", "Owns a blue car"):
        namespace = f"/actors/{user_memory.actor_id}/facts/"
        AGENTCORE_EXTRAS.add_record(user_memory.memory_id, namespace, text)

    agent = registry.registry["support"](user_memory)
    turn = agent.run_turn("What about blue?")

    assert agent.long_term == LongTermRecall(user_memory, top_k=2, max_tokens=300, strict=True)
    assert len(turn.recalled) == 2 and all("blue" in r.text.lower() for r in turn.recalled)
    assert AGENTCORE_EXTRAS.retrievals[-1]["searchCriteria"]["topK"] == 2
    assert [m.content for m in user_memory.get_messages()][0] == "What about blue?"


def test_long_term_settings_on_a_memory_that_cannot_search_are_refused_naming_them(
    tmp_path, settings_from_env
):
    settings_from_env.setenv("FENCE_LONG_TERM_TOP_K", "3")
    settings_from_env.setenv("FENCE_MEMORY", f"sqlite:///{tmp_path / 'memory.db'}")

    with pytest.raises(ValueError, match="FENCE_LONG_TERM_TOP_K: .* SQLiteMemory cannot"):
        recall_from_settings(SQLiteMemory(tmp_path / "memory.db", "s1"))
    with pytest.raises(ValueError, match="FENCE_LONG_TERM_TOP_K"):
        registry.refuse_long_term_without_search()


@pytest.mark.parametrize(("variable", "value"), [("FENCE_LONG_TERM_TOP_K", "101")])
def test_out_of_range_settings_are_refused(settings_from_env, variable, value):
    settings_from_env.setenv(variable, value)
    with pytest.raises(ValueError, match=variable):
        get_settings()


def test_a_worker_with_long_term_on_a_memory_that_cannot_search_exits_at_start(tmp_path):
    env = {
        "FENCE_REDIS_URL": "redis://127.0.0.1:9/0",  # never reached: it stops before
        "FENCE_MEMORY": f"sqlite:///{tmp_path / 'memory.db'}",
        "FENCE_AGENTS": "workers.registry:registry",
        "FENCE_LONG_TERM_TOP_K": "3",
        "PYTHONPATH": str(REPO),
    }
    worker = launch_worker("long-term", env, cwd=REPO, log_path=tmp_path / "worker.log")
    try:
        worker.wait_for("fence worker: FENCE_LONG_TERM_TOP_K: long-term memory", timeout=60)
        assert worker.process.wait(timeout=30) == 2
    finally:
        worker.stop()
