"""Memories of each backend for agent tests."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from fence.memory import BaseMemory, FleetingMemory, SQLiteMemory

MemoryFactory = Callable[[str], BaseMemory]


@pytest.fixture(params=["fleeting", "sqlite"])
def open_memory(request, tmp_path) -> MemoryFactory:
    """``open_memory(session_id)``: a handle on a stored session of the backend under test.

    Two calls with one session id are two handles on one session (the same
    object for FleetingMemory, which lives in this process only).
    """
    if request.param == "fleeting":
        sessions: dict[str, FleetingMemory] = {}
        return lambda session_id: sessions.setdefault(session_id, FleetingMemory(session_id))
    db_path = tmp_path / "agents.db"
    return lambda session_id: SQLiteMemory(db_path=db_path, session_id=session_id)


@pytest.fixture
def memory(open_memory: MemoryFactory) -> BaseMemory:
    """A fresh session of the backend under test."""
    return open_memory(f"s-{uuid.uuid4().hex[:12]}")
