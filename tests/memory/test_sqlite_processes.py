"""SQLiteMemory with real processes writing one file at the same moment.

Each test starts its writers with the spawn method (fresh interpreters, their
own SQLite connections). A writer opens its memory and loads the tokenizer,
then waits at a barrier until all are ready, so the writes really overlap;
each reports either its result or the error it hit.
"""

from __future__ import annotations

import multiprocessing
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fence.memory import SQLiteMemory
from fence.messages import Message, Role

START_TIMEOUT_S = 60
RUN_TIMEOUT_S = 120


def _open(db_path: str, session: str) -> SQLiteMemory:
    """Open the session and warm up, so that after the barrier only writing is left."""
    memory = SQLiteMemory(db_path, session)
    memory.get_window(0)  # opens this process's connection and creates the schema
    Message(role=Role.USER, content="loads the tokenizer")
    return memory


def _run(
    results: Any,
    barrier: Any,
    writer: int,
    db_path: str,
    session: str,
    work: Callable[[SQLiteMemory], Any],
) -> None:
    """Open, wait for every writer, then work; report the result or the error."""
    try:
        memory = _open(db_path, session)
        barrier.wait(START_TIMEOUT_S)
        results.put((writer, "ok", work(memory)))
    except BaseException:  # reported to the test, which fails with the traceback
        barrier.abort()  # release the other writers instead of leaving them waiting
        results.put((writer, "error", traceback.format_exc()))


def append_messages(db_path: str, session: str, writer: int, count: int, results, barrier):
    def work(memory: SQLiteMemory) -> None:
        for i in range(count):
            memory.add_user_message(f"w{writer}-{i}")

    _run(results, barrier, writer, db_path, session, work)


def commit_fenced_turns(db_path: str, session: str, writer: int, turns: int, results, barrier):
    def work(memory: SQLiteMemory) -> None:
        for i in range(turns):
            seen = memory.get_window(500).last_seq
            memory.commit_turn(
                f"{session}-turn-{i}",
                [
                    Message(role=Role.USER, content=f"{session} question {i}"),
                    Message(role=Role.ASSISTANT, content=f"{session} answer {i}"),
                ],
                expected_last_seq=seen,
            )

    _run(results, barrier, writer, db_path, session, work)


def commit_same_turns(db_path: str, session: str, writer: int, turns: int, results, barrier):
    def work(memory: SQLiteMemory) -> list[str]:
        written = []
        for i in range(turns):
            turn = [
                Message(role=Role.USER, content=f"question {i}"),
                Message(role=Role.ASSISTANT, content=f"answer {i} (by writer {writer})"),
            ]
            if memory.commit_turn(f"run-{i}", turn):
                written.append(f"run-{i}")
        return written

    _run(results, barrier, writer, db_path, session, work)


def run_writers(target: Callable[..., None], jobs: list[tuple[Any, ...]]) -> dict[int, Any]:
    """Start one spawned process per job, release them together, return what each reported."""
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    barrier = ctx.Barrier(len(jobs))
    processes = [
        ctx.Process(target=target, args=(*job, results, barrier), daemon=True) for job in jobs
    ]
    for process in processes:
        process.start()
    try:
        reports = [results.get(timeout=RUN_TIMEOUT_S) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=RUN_TIMEOUT_S)
            if process.is_alive():
                process.kill()
    errors = [detail for _, status, detail in reports if status == "error"]
    assert not errors, "a writer failed:\n" + "\n".join(errors)
    assert [p.exitcode for p in processes] == [0] * len(processes)
    return {writer: detail for writer, _, detail in reports}


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "shared.db")


def test_four_processes_appending_to_one_session_lose_and_reorder_nothing(db_path):
    writers, per_writer = 4, 250

    run_writers(append_messages, [(db_path, "busy", w, per_writer) for w in range(writers)])

    messages = SQLiteMemory(db_path, "busy").get_messages()
    assert len(messages) == writers * per_writer
    contents = [m.content for m in messages]
    assert len(set(contents)) == len(contents), "no message stored twice"
    for w in range(writers):
        own = [c for c in contents if c.startswith(f"w{w}-")]
        assert own == [f"w{w}-{i}" for i in range(per_writer)], f"writer {w}'s order was lost"
    seqs = [m.seq for m in messages]
    assert seqs == list(range(1, len(messages) + 1)), "sequence numbers are gapless and ordered"


def test_processes_committing_turns_to_their_own_sessions_of_one_file(db_path):
    sessions, turns = [f"user-{n}" for n in range(4)], 60

    run_writers(commit_fenced_turns, [(db_path, s, n, turns) for n, s in enumerate(sessions)])

    for session in sessions:
        memory = SQLiteMemory(db_path, session)
        expected = []
        for i in range(turns):
            expected += [f"{session} question {i}", f"{session} answer {i}"]
        assert [m.content for m in memory.get_messages()] == expected
        assert all(memory.has_turn(f"{session}-turn-{i}") for i in range(turns))


def test_one_turn_committed_by_several_processes_at_once_is_stored_once(db_path):
    writers, turns = 4, 100

    written = run_writers(commit_same_turns, [(db_path, "race", w, turns) for w in range(writers)])

    winners = [turn for turns_won in written.values() for turn in turns_won]
    assert sorted(winners) == sorted(f"run-{i}" for i in range(turns)), "each turn won once"
    messages = SQLiteMemory(db_path, "race").get_messages()
    assert len(messages) == 2 * turns
    for question, answer in zip(messages[::2], messages[1::2], strict=True):
        assert question.turn_id == answer.turn_id, "a turn's messages stay together"
        assert answer.content.startswith(question.content.replace("question", "answer"))
