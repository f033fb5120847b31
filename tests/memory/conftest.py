"""Backends under test. Every conformance test runs against each of them.

A backend fixture yields a factory ``open(session_id) -> BaseMemory``; calling
it twice with the same session id gives two handles on one stored session
(for FleetingMemory, the same in-process object).

The AWS backends talk HTTP to a moto server this suite starts on a free
loopback port (see ``tests/memory/aws_server.py``), with fake credentials:
nothing here can reach AWS.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest

from fence.memory import (
    AgentCoreMemory,
    BaseMemory,
    DynamoDBMemory,
    FleetingMemory,
    SQLiteMemory,
)
from fence.memory.aws_setup import create_agentcore_memory, create_dynamodb_table
from tests.memory import aws_server

MemoryFactory = Callable[[str], BaseMemory]

PERSISTENT = {"sqlite", "dynamodb", "dynamodb_sorted", "agentcore"}
AWS_BACKENDS = {"dynamodb", "dynamodb_sorted", "agentcore"}


@pytest.fixture
def fleeting_factory() -> MemoryFactory:
    sessions: dict[str, FleetingMemory] = {}
    return lambda session_id: sessions.setdefault(session_id, FleetingMemory(session_id))


@pytest.fixture
def sqlite_factory(tmp_path) -> MemoryFactory:
    db_path = tmp_path / "memory.db"
    return lambda session_id: SQLiteMemory(db_path=db_path, session_id=session_id)


# -- the local AWS endpoint ------------------------------------------------------


@pytest.fixture(scope="session")
def aws_env() -> Iterator[None]:
    """Fake AWS credentials and region for the whole session; real ones removed."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in aws_server.dummy_aws_environ().items():
            patch.setenv(name, value)
        for name in list(os.environ):
            if name.startswith("AWS_") and name not in aws_server.DUMMY_ENV:
                patch.delenv(name)
        yield


@pytest.fixture(scope="session")
def aws_endpoint(aws_env) -> Iterator[str]:
    """URL of a moto server on a free loopback port, for the whole test session."""
    with aws_server.moto_server() as url:
        yield url


@pytest.fixture(scope="session")
def dynamodb_client(aws_endpoint: str):
    return aws_server.client("dynamodb", aws_endpoint)


@pytest.fixture
def table_name() -> str:
    return f"agent-memory-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def seed_layout_table(dynamodb_client, table_name: str) -> str:
    """A fresh table exactly as the seed creates it: partition key ``session_id`` only.

    (One table per test keeps moto fast: it copies a table on every transaction.)
    """
    aws_server.create_seed_table(dynamodb_client, table_name)
    return table_name


@pytest.fixture
def dynamodb_factory(aws_endpoint: str, seed_layout_table: str) -> MemoryFactory:
    return lambda session_id: DynamoDBMemory(
        table_name=seed_layout_table,
        primary_key_name="session_id",
        primary_key_value=session_id,
        endpoint_url=aws_endpoint,
    )


@pytest.fixture
def sorted_table(aws_endpoint: str, dynamodb_client) -> str:
    """A fresh table with partition key ``session_id`` and sort key ``sk``, TTL on."""
    name = f"agent-memory-sk-{uuid.uuid4().hex[:10]}"
    create_dynamodb_table(name, sort_key_name="sk", client=dynamodb_client)
    return name


@pytest.fixture
def dynamodb_sorted_factory(aws_endpoint: str, sorted_table: str) -> MemoryFactory:
    return lambda session_id: DynamoDBMemory(
        table_name=sorted_table,
        primary_key_name="session_id",
        primary_key_value=session_id,
        sort_key_name="sk",
        ttl_seconds=3600,
        endpoint_url=aws_endpoint,
    )


@pytest.fixture(scope="session")
def agentcore_memory_id(aws_endpoint: str) -> str:
    control = aws_server.client("bedrock-agentcore-control", aws_endpoint)
    return create_agentcore_memory("fence_memory", client=control)["memory_id"]


@pytest.fixture
def agentcore_factory(aws_endpoint: str, agentcore_memory_id: str) -> MemoryFactory:
    return lambda session_id: AgentCoreMemory(
        agent_id="agent_123",
        session_id=session_id,
        memory_id=agentcore_memory_id,
        endpoint_url=aws_endpoint,
    )


@pytest.fixture(params=["fleeting", "sqlite", "dynamodb", "dynamodb_sorted", "agentcore"])
def backend(request) -> str:
    return request.param


@pytest.fixture
def open_memory(request, backend: str) -> MemoryFactory:
    return request.getfixturevalue(f"{backend}_factory")
