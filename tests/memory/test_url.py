"""FENCE_MEMORY: one URL picks the backend every worker uses."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from fence.memory import AgentCoreMemory, DynamoDBMemory, SQLiteMemory
from fence.memory.url import memory_factory


def test_sqlite_url_with_relative_and_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    relative = memory_factory("sqlite:///rel.db")("s1")
    absolute = memory_factory(f"sqlite:///{tmp_path / 'abs.db'}")("s1")

    relative.add_user_message("hello")
    absolute.add_user_message("hello")

    assert isinstance(relative, SQLiteMemory)
    assert (tmp_path / "rel.db").exists() and (tmp_path / "abs.db").exists()


def test_dynamodb_url_opens_the_named_table(aws_endpoint, seed_layout_table):
    url = f"dynamodb://{seed_layout_table}?endpoint_url={quote(aws_endpoint, safe='')}"
    open_memory = memory_factory(url)

    open_memory("user_1").add_user_message("stored in DynamoDB")

    memory = open_memory("user_1")
    assert isinstance(memory, DynamoDBMemory)
    assert [m.content for m in memory.get_messages()] == ["stored in DynamoDB"]
    assert open_memory("user_2").client is memory.client  # one boto3 client, not one per turn


def test_agentcore_url_passes_integer_options(aws_endpoint, agentcore_memory_id):
    url = (
        f"agentcore://{agentcore_memory_id}?endpoint_url={quote(aws_endpoint, safe='')}"
        "&page_size=50&actor_id=fence"
    )

    memory = memory_factory(url)("session_456")

    assert isinstance(memory, AgentCoreMemory)
    assert memory.get_messages() == []


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("postgres://db", "scheme must be one of"),
        ("sqlite://", "sqlite:///relative.db"),
        ("dynamodb://", "name the table"),
        ("agentcore://", "name the memory id"),
        ("dynamodb://t?ttl_seconds=soon", "ttl_seconds must be an integer"),
    ],
)
def test_a_bad_memory_url_names_the_rule(url, rule):
    with pytest.raises(ValueError, match=rule):
        memory_factory(url)
