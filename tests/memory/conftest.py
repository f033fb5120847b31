"""Backends under test. Every conformance test runs against each of them.

A backend fixture yields a factory ``open(session_id) -> BaseMemory``; calling
it twice with the same session id gives two handles on one stored session
(for FleetingMemory, the same in-process object).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from fence.memory import BaseMemory, FleetingMemory, SQLiteMemory

MemoryFactory = Callable[[str], BaseMemory]

PERSISTENT = {"sqlite"}


@pytest.fixture
def fleeting_factory() -> MemoryFactory:
    sessions: dict[str, FleetingMemory] = {}
    return lambda session_id: sessions.setdefault(session_id, FleetingMemory(session_id))


@pytest.fixture
def sqlite_factory(tmp_path) -> MemoryFactory:
    db_path = tmp_path / "memory.db"
    return lambda session_id: SQLiteMemory(db_path=db_path, session_id=session_id)


@pytest.fixture(params=["fleeting", "sqlite"])
def backend(request) -> str:
    return request.param


@pytest.fixture
def open_memory(request, backend: str) -> MemoryFactory:
    return request.getfixturevalue(f"{backend}_factory")
