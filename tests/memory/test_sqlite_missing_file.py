"""Reading a SQLite memory never creates its file; writing does. A reader that must
know (``fence history``, the gateway's history) opens with ``missing_ok=False``."""

from __future__ import annotations

import pytest

from fence.memory import SQLiteMemory
from fence.memory.sqlite import MissingDatabaseError
from fence.memory.url import memory_factory


def test_reading_a_database_that_does_not_exist_finds_no_history_and_creates_nothing(tmp_path):
    path = tmp_path / "memory.db"
    memory = SQLiteMemory(path, "s1")

    window = memory.get_window(1_000)
    assert (window.messages, window.last_seq, window.system) == ([], 0, None)
    assert memory.get_messages() == []
    assert memory.get_system_message() is None
    assert memory.has_turn("t1") is False
    assert memory.is_empty()
    assert list(tmp_path.iterdir()) == []


def test_the_first_write_creates_the_database(tmp_path):
    path = tmp_path / "memory.db"
    memory = SQLiteMemory(path, "s1")
    memory.get_window()  # read first, as an agent's first turn does

    memory.add_user_message("hello")

    assert path.is_file()
    assert [m.content for m in SQLiteMemory(path, "s1").get_messages()] == ["hello"]


@pytest.mark.parametrize("write", ["set_system_message", "claim_fence"])
def test_every_kind_of_write_creates_the_database(tmp_path, write):
    path = tmp_path / "memory.db"
    memory = SQLiteMemory(path, "s1")

    getattr(memory, write)("be brief" if write == "set_system_message" else 3)

    assert path.is_file()


def test_a_reader_that_must_find_the_database_is_told_which_file_is_missing(tmp_path):
    path = tmp_path / "memory.db"
    reader = memory_factory(f"sqlite:///{path}", missing_ok=False)("s1")

    with pytest.raises(MissingDatabaseError) as raised:
        reader.get_window()

    assert raised.value.path == str(path)
    assert (
        str(raised.value) == f"no SQLite database at {str(path)!r}: nothing has been written to it"
    )
    assert list(tmp_path.iterdir()) == []
    SQLiteMemory(path, "s1").add_user_message("written by a worker")
    assert [m.content for m in reader.get_window().messages] == ["written by a worker"]
