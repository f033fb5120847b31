"""SQLiteMemory's ``db_path``: relative paths name one file, bad paths are refused."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from fence.errors import FencedOutError
from fence.memory import SQLiteMemory
from fence.messages import Message, Role


def test_a_relative_path_keeps_naming_the_same_file_after_a_change_of_directory(
    tmp_path, monkeypatch
):
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    first_dir.mkdir()
    second_dir.mkdir()
    monkeypatch.chdir(first_dir)
    first = SQLiteMemory(db_path="agent_memory.db", session_id="s")

    monkeypatch.chdir(second_dir)
    first.add_user_message("belongs to the first directory")
    second = SQLiteMemory(db_path="agent_memory.db", session_id="s")
    second.add_user_message("belongs to the second directory")

    assert [m.content for m in first.get_messages()] == ["belongs to the first directory"]
    assert [m.content for m in second.get_messages()] == ["belongs to the second directory"]
    assert (first_dir / "agent_memory.db").is_file() and (second_dir / "agent_memory.db").is_file()


def test_a_path_in_a_missing_directory_is_refused(tmp_path):
    with pytest.raises(ValueError, match="db_path: directory .* does not exist"):
        SQLiteMemory(db_path=tmp_path / "missing" / "memory.db", session_id="s")


def test_a_directory_is_refused_as_a_database_file(tmp_path):
    with pytest.raises(ValueError, match="db_path: .* is a directory"):
        SQLiteMemory(db_path=tmp_path, session_id="s")


def test_threads_opening_a_new_file_while_others_write_all_get_to_write(tmp_path):
    """Switching a new file to WAL while another connection writes must wait, not fail."""
    errors: list[BaseException] = []
    for attempt in range(20):
        db_path = tmp_path / f"fresh-{attempt}.db"

        def write(writer: int, db_path=db_path) -> None:
            try:
                memory = SQLiteMemory(db_path, "s")
                for i in range(5):
                    memory.add_user_message(f"writer {writer} message {i}")
            except BaseException as error:  # collected: a thread's exception is otherwise lost
                errors.append(error)

        threads = [threading.Thread(target=write, args=(w,)) for w in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        assert len(SQLiteMemory(db_path, "s").get_messages()) == 40


def test_a_file_written_before_fencing_reached_memory_opens_and_is_fenced(tmp_path):
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE fence_sessions (session_id TEXT PRIMARY KEY, system_prompt TEXT, "
        "last_seq INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;"
        "INSERT INTO fence_sessions VALUES ('s', 'old prompt', 0);"
    )
    old.close()

    memory = SQLiteMemory(db_path=path, session_id="s")
    memory.claim_fence(7)

    assert memory.get_system_message() == "old prompt"
    with pytest.raises(FencedOutError):
        memory.commit_turn("late", [Message(role=Role.USER, content="stale")], fence=6)
