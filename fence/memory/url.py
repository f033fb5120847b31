"""Open the memory named by a URL such as ``FENCE_MEMORY``.

``sqlite:///fence.db`` (relative path) or ``sqlite:////var/lib/fence.db``
(absolute), ``dynamodb://agent-memory?region=eu-west-1``,
``agentcore://<memory-id>?region=us-east-1&actor_id=fence`` and
``fleeting://`` (in-process only). Query parameters are passed to the
backend's constructor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fence.memory.base import BaseMemory

MemoryFactory = Callable[[str], BaseMemory]

SCHEMES = ("sqlite", "dynamodb", "agentcore", "fleeting")
INT_OPTIONS = {"ttl_seconds", "page_size"}


def memory_factory(url: str, *, missing_ok: bool = True) -> MemoryFactory:
    """A function ``session_id -> memory`` for the backend ``url`` names. With
    ``missing_ok=False``, reading a SQLite file that does not exist raises
    ``MissingDatabaseError`` (for readers of history; the other backends create
    nothing on read anyway)."""
    parts = urlsplit(url)
    options: dict[str, object] = dict(parse_qsl(parts.query, strict_parsing=False))
    for name in INT_OPTIONS & options.keys():
        try:
            options[name] = int(str(options[name]))
        except ValueError:
            raise ValueError(f"memory url: {name} must be an integer") from None
    if parts.scheme == "sqlite":
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if parts.netloc or not path:
            raise ValueError(
                "memory url: write sqlite:///relative.db or sqlite:////absolute/path.db"
            )
        from fence.memory.sqlite import SQLiteMemory

        return lambda session_id: SQLiteMemory(path, session_id, missing_ok=missing_ok)
    if parts.scheme == "dynamodb":
        if not parts.netloc:
            raise ValueError("memory url: name the table, as in dynamodb://agent-memory")
        from fence.memory.dynamodb import DynamoDBMemory

        options.setdefault("primary_key_name", "session_id")
        return _sharing_client(
            lambda session_id, client: DynamoDBMemory(
                table_name=parts.netloc, primary_key_value=session_id, client=client, **options
            )
        )
    if parts.scheme == "agentcore":
        if not parts.netloc:
            raise ValueError("memory url: name the memory id, as in agentcore://mem-123")
        from fence.memory.agentcore import AgentCoreMemory

        agent_id = str(options.pop("agent_id", "fence"))
        return _sharing_client(
            lambda session_id, client: AgentCoreMemory(
                agent_id=agent_id,
                session_id=session_id,
                memory_id=parts.netloc,
                client=client,
                **options,
            )
        )
    if parts.scheme == "fleeting":
        from fence.memory.fleeting import FleetingMemory

        return lambda session_id: FleetingMemory(session_id)
    raise ValueError(
        f"memory url: scheme must be one of {', '.join(SCHEMES)} (got {parts.scheme!r})"
    )


def _sharing_client(open_memory: Callable[[str, Any], BaseMemory]) -> MemoryFactory:
    """Open each session's memory on one boto3 client, made by the first one.

    Workers open a memory per turn; a new boto3 client per turn would resolve
    credentials and endpoints and open connections on the hot path. Clients
    are thread-safe, and the first is made in the process that uses it.
    """
    client: Any = None

    def open_session(session_id: str) -> BaseMemory:
        nonlocal client
        memory = open_memory(session_id, client)
        client = memory.client
        return memory

    return open_session
