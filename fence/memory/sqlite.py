"""SQLiteMemory: many sessions in one local database file.

Safe for several threads and several processes on one machine: the file is
in WAL mode (readers never block the writer), every write is one
``BEGIN IMMEDIATE`` transaction (writers queue on SQLite's lock, with a busy
timeout, instead of failing), and each thread of each process has its own
connection. A turn's messages, its turn id and the session's counter change
in that one transaction, so a commit is all or nothing.

Reading never creates the file: until something is written, every session
reads as empty (an agent's first turn reads before it writes), or, opened with
``missing_ok=False``, a read raises ``MissingDatabaseError`` naming the path
(``fence history`` and the gateway's history: a mistyped ``FENCE_MEMORY`` is
said, not hidden behind an empty history and a new empty file).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import lru_cache
from itertools import chain
from pathlib import Path

from fence.errors import FencedOutError, FenceError, StaleWriteError
from fence.memory.base import BaseMemory, Window, take_window
from fence.messages import Message

BUSY_TIMEOUT_S = 60.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS fence_sessions (
    session_id    TEXT PRIMARY KEY,
    system_prompt TEXT,
    last_seq      INTEGER NOT NULL DEFAULT 0,
    fence         INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS fence_messages (
    session_id TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    turn_id    TEXT,
    record     TEXT    NOT NULL,
    tokens     INTEGER NOT NULL,
    PRIMARY KEY (session_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS fence_turns (
    session_id TEXT NOT NULL,
    turn_id    TEXT NOT NULL,
    PRIMARY KEY (session_id, turn_id)
) WITHOUT ROWID;
"""

NO_FILE = ""
"""The cache key of the empty database that stands in for a file not written yet."""

_connections = threading.local()


class MissingDatabaseError(FenceError):
    """A read that must find the database found no file: nothing has been written to it."""

    def __init__(self, path: str) -> None:
        super().__init__(f"no SQLite database at {path!r}: nothing has been written to it")
        self.path = path


def _cache() -> dict[str, tuple[int, sqlite3.Connection]]:
    """This thread's connections by path, each with the pid that opened it."""
    if not hasattr(_connections, "by_path"):
        _connections.by_path = {}
    return _connections.by_path


def _open(db_path: str) -> sqlite3.Connection | None:
    """This thread's open connection to ``db_path``, if it has one (none after a fork)."""
    cached = _cache().get(db_path)
    return cached[1] if cached is not None and cached[0] == os.getpid() else None


def _connection(db_path: str) -> sqlite3.Connection:
    """This thread's connection to ``db_path`` (created if need be); reopened after a fork."""
    conn = _open(db_path)
    if conn is not None:
        return conn
    conn = sqlite3.connect(db_path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        _while_locked(lambda: conn.execute("PRAGMA journal_mode=WAL"))
    conn.execute("PRAGMA synchronous=NORMAL")
    _while_locked(lambda: conn.executescript(SCHEMA))
    _while_locked(lambda: _add_fence_column(conn))
    _cache()[db_path] = (os.getpid(), conn)
    return conn


def _no_file() -> sqlite3.Connection:
    """An empty database with the schema, in memory: it answers every read as a file
    nothing has been written to would, without creating one."""
    conn = _open(NO_FILE)
    if conn is None:
        conn = sqlite3.connect(":memory:", isolation_level=None)
        conn.executescript(SCHEMA)
        _cache()[NO_FILE] = (os.getpid(), conn)
    return conn


@contextmanager
def _transaction(conn: sqlite3.Connection, mode: str) -> Iterator[sqlite3.Connection]:
    conn.execute(f"BEGIN {mode}")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _add_fence_column(conn: sqlite3.Connection) -> None:
    """Files written before fencing reached memory lack the ``fence`` column."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(fence_sessions)")}
    if "fence" in columns:
        return
    try:
        conn.execute("ALTER TABLE fence_sessions ADD COLUMN fence INTEGER NOT NULL DEFAULT 0")
    except sqlite3.OperationalError as error:
        if "duplicate column" not in str(error):  # another process added it first
            raise


def _while_locked(statement: Callable[[], object]) -> None:
    """Run a set-up statement, retrying while another connection holds the lock.

    Switching a new file to WAL (and creating its schema while another process
    does the same) can fail with "database is locked" at once, without waiting
    on the busy timeout; there is no event to wait for, so back off and retry.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    delay = 0.005
    while True:
        try:
            statement()
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.25)


@lru_cache(maxsize=64)
def _checked_path(path: str) -> str:
    """``path`` resolved and checked once per process: workers open a memory per turn."""
    resolved = Path(path).resolve()
    if not resolved.parent.is_dir():
        raise ValueError(f"db_path: directory {str(resolved.parent)!r} does not exist")
    if resolved.is_dir():
        raise ValueError(f"db_path: {str(resolved)!r} is a directory, not a database file")
    return str(resolved)


class SQLiteMemory(BaseMemory):
    """A session stored in a SQLite file shared by threads and processes."""

    def __init__(
        self, db_path: str | os.PathLike[str], session_id: str, *, missing_ok: bool = True
    ) -> None:
        """``missing_ok=False``: reading a file that does not exist raises
        ``MissingDatabaseError`` instead of finding no history. Either way, only a
        write creates the file."""
        super().__init__(session_id)
        self.missing_ok = missing_ok
        if str(db_path) == ":memory:":
            self.db_path = ":memory:"
            return
        # Made absolute now: connections are cached per path, and a relative path
        # must keep naming the same file if the process later changes directory.
        self.db_path = _checked_path(os.path.abspath(db_path))

    def _reader(self) -> sqlite3.Connection:
        """Where reads go: the file, or while it does not exist, an empty stand-in."""
        path = self.db_path
        if path == ":memory:" or _open(path) is not None or os.path.exists(path):
            return _connection(path)
        if not self.missing_ok:
            raise MissingDatabaseError(path)
        return _no_file()

    def _reading(self) -> AbstractContextManager[sqlite3.Connection]:
        return _transaction(self._reader(), "DEFERRED")

    def _writing(self) -> AbstractContextManager[sqlite3.Connection]:
        return _transaction(_connection(self.db_path), "IMMEDIATE")

    def _append(
        self,
        messages: list[Message],
        turn_id: str | None,
        expected_last_seq: int | None,
        fence: int | None,
    ) -> bool:
        with self._writing() as conn:
            stored_seq, stored_fence, committed = conn.execute(
                "SELECT (SELECT last_seq FROM fence_sessions WHERE session_id = ?1), "
                "(SELECT fence FROM fence_sessions WHERE session_id = ?1), "
                "EXISTS (SELECT 1 FROM fence_turns WHERE session_id = ?1 AND turn_id = ?2)",
                (self.session_id, turn_id),
            ).fetchone()
            if committed:
                return False
            stored_fence = stored_fence or 0
            if fence is not None and fence < stored_fence:
                raise FencedOutError.newer(self.session_id, fence, stored_fence)
            last_seq = stored_seq or 0
            if expected_last_seq is not None and expected_last_seq != last_seq:
                raise StaleWriteError.moved_on(self.session_id, expected_last_seq, last_seq)
            conn.executemany(
                "INSERT INTO fence_messages (session_id, seq, turn_id, record, tokens) "
                "VALUES (?, ?, ?, ?, ?)",
                [
                    (self.session_id, last_seq + i, turn_id, json.dumps(m.to_record()), m.tokens)
                    for i, m in enumerate(messages, start=1)
                ],
            )
            conn.execute(
                "INSERT INTO fence_sessions (session_id, last_seq, fence) VALUES (?, ?, ?) "
                "ON CONFLICT(session_id) DO UPDATE SET last_seq = excluded.last_seq, "
                "fence = excluded.fence",
                (self.session_id, last_seq + len(messages), max(fence or 0, stored_fence)),
            )
            if turn_id is not None:
                conn.execute(
                    "INSERT INTO fence_turns (session_id, turn_id) VALUES (?, ?)",
                    (self.session_id, turn_id),
                )
        return True

    def _claim_fence(self, token: int) -> None:
        with self._writing() as conn:
            row = conn.execute(
                "SELECT fence FROM fence_sessions WHERE session_id = ?", (self.session_id,)
            ).fetchone()
            if row and row[0] > token:
                raise FencedOutError.newer(self.session_id, token, row[0])
            conn.execute(
                "INSERT INTO fence_sessions (session_id, fence) VALUES (?, ?) "
                "ON CONFLICT(session_id) DO UPDATE SET fence = excluded.fence",
                (self.session_id, token),
            )

    def _rows_to_messages(self, rows: Iterator[tuple[int, str | None, str]]) -> Iterator[Message]:
        for seq, turn_id, record in rows:
            yield Message.from_record(json.loads(record), seq=seq, turn_id=turn_id)

    def _read_window(self, max_tokens: int | None, at_least_one: bool = False) -> Window:
        # One statement is one snapshot: the session row, then its messages newest
        # first, read only as far as the window takes them (one row of NULLs when
        # the session has none).
        rows = self._reader().execute(
            "SELECT s.last_seq, s.system_prompt, m.seq, m.turn_id, m.record "
            "FROM fence_sessions s LEFT JOIN fence_messages m ON m.session_id = s.session_id "
            "WHERE s.session_id = ? ORDER BY m.seq DESC",
            (self.session_id,),
        )
        try:
            first = rows.fetchone()
            last_seq, system = first[:2] if first else (0, None)
            stored = chain([first], rows) if first and first[2] is not None else ()
            return take_window(
                self._rows_to_messages(row[2:] for row in stored),
                max_tokens,
                at_least_one,
                last_seq,
                system=system,
            )
        finally:
            rows.close()

    def _read_all(self) -> list[Message]:
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT seq, turn_id, record FROM fence_messages WHERE session_id = ? ORDER BY seq",
                (self.session_id,),
            )
            return list(self._rows_to_messages(rows))

    def _get_system(self) -> str | None:
        with self._reading() as conn:
            row = conn.execute(
                "SELECT system_prompt FROM fence_sessions WHERE session_id = ?",
                (self.session_id,),
            ).fetchone()
        return row[0] if row else None

    def _set_system(self, text: str) -> None:
        with self._writing() as conn:
            conn.execute(
                "INSERT INTO fence_sessions (session_id, system_prompt) VALUES (?, ?) "
                "ON CONFLICT(session_id) DO UPDATE SET system_prompt = excluded.system_prompt",
                (self.session_id, text),
            )

    def _clear(self) -> None:
        with self._writing() as conn:
            conn.execute("DELETE FROM fence_messages WHERE session_id = ?", (self.session_id,))

    def _has_turn(self, turn_id: str) -> bool:
        with self._reading() as conn:
            row = conn.execute(
                "SELECT 1 FROM fence_turns WHERE session_id = ? AND turn_id = ?",
                (self.session_id, turn_id),
            ).fetchone()
        return row is not None

    def __repr__(self) -> str:
        return f"SQLiteMemory(db_path={self.db_path!r}, session_id={self.session_id!r})"
