"""DynamoDBMemory with real processes sharing one session over HTTP.

Each test starts fresh interpreters with the spawn method; every one builds
its own boto3 client from the environment (fake credentials, the local
endpoint), opens its memory and warms up, then waits at a barrier so the
writes really overlap. Each reports its result or the error it hit.
"""

from __future__ import annotations

import multiprocessing
import traceback
from collections.abc import Callable
from typing import Any

import pytest

from fence.memory import DynamoDBMemory
from fence.messages import Message, Role

START_TIMEOUT_S = 60
RUN_TIMEOUT_S = 240


def _open(table: str, session: str) -> DynamoDBMemory:
    """The seed's constructor; the endpoint comes from AWS_ENDPOINT_URL_DYNAMODB."""
    memory = DynamoDBMemory(
        table_name=table, primary_key_name="session_id", primary_key_value=session
    )
    memory.get_window(0)  # opens the connection
    Message(role=Role.USER, content="loads the tokenizer")
    return memory


def _report(results: Any, worker: int, barrier: Any, work: Callable[[], Any]) -> None:
    try:
        if barrier is not None:
            barrier.wait(START_TIMEOUT_S)
        results.put((worker, "ok", work()))
    except BaseException:  # reported to the test, which fails with the traceback
        results.put((worker, "error", traceback.format_exc()))


def append_messages(table: str, session: str, writer: int, count: int, results, barrier) -> None:
    memory = _open(table, session)

    def work() -> None:
        for i in range(count):
            memory.add_user_message(f"w{writer}-{i}")

    _report(results, writer, barrier, work)


def commit_the_same_turn(table: str, session: str, writer: int, results, barrier) -> None:
    memory = _open(table, session)
    turn = [
        Message(role=Role.USER, content="What's my favorite color?"),
        Message(role=Role.ASSISTANT, content="Your favorite color is blue"),
    ]
    _report(results, writer, barrier, lambda: memory.commit_turn("run-shared", turn))


def read_conversation(table: str, session: str, results) -> None:
    def work() -> tuple[str | None, list[tuple[str, str, int]]]:
        memory = _open(table, session)
        history = [(m.role.value, m.content, m.seq) for m in memory.get_messages()]
        return memory.get_system_message(), history

    _report(results, 1, None, work)


def _run(targets: list[tuple[Callable[..., None], tuple[Any, ...]]], results: Any) -> dict:
    ctx = multiprocessing.get_context("spawn")
    processes = [ctx.Process(target=t, args=a) for t, a in targets]
    for process in processes:
        process.start()
    try:
        reports = [results.get(timeout=RUN_TIMEOUT_S) for _ in processes]
    finally:
        for process in processes:
            process.join(RUN_TIMEOUT_S)
            if process.is_alive():
                process.kill()
    errors = [detail for _, status, detail in reports if status == "error"]
    assert not errors, errors[0]
    return {worker: value for worker, _, value in reports}


@pytest.fixture
def shared(aws_endpoint, seed_layout_table, monkeypatch) -> tuple[str, Any]:
    """The table for the processes, which find the endpoint the standard way."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", aws_endpoint)
    return seed_layout_table, multiprocessing.get_context("spawn")


def test_four_processes_appending_to_one_session_lose_and_reorder_nothing(shared, dynamodb_factory):
    table, ctx = shared
    writers, per_writer = 4, 250
    results, barrier = ctx.Queue(), ctx.Barrier(writers)

    _run(
        [
            (append_messages, (table, "shared-session", w, per_writer, results, barrier))
            for w in range(writers)
        ],
        results,
    )

    messages = dynamodb_factory("shared-session").get_messages()
    contents = [m.content for m in messages]
    assert len(contents) == writers * per_writer == 1000
    assert sorted(contents) == sorted(
        f"w{w}-{i}" for w in range(writers) for i in range(per_writer)
    )
    assert [m.seq for m in messages] == list(range(1, 1001))
    for w in range(writers):
        assert [c for c in contents if c.startswith(f"w{w}-")] == [
            f"w{w}-{i}" for i in range(per_writer)
        ]


def test_one_turn_committed_by_several_processes_at_once_is_stored_once(shared, dynamodb_factory):
    table, ctx = shared
    writers = 4
    results, barrier = ctx.Queue(), ctx.Barrier(writers)

    outcomes = _run(
        [(commit_the_same_turn, (table, "s-dup", w, results, barrier)) for w in range(writers)],
        results,
    )

    assert sorted(outcomes.values()) == [False, False, False, True]
    memory = dynamodb_factory("s-dup")
    assert [m.content for m in memory.get_messages()] == [
        "What's my favorite color?",
        "Your favorite color is blue",
    ]
    assert memory.has_turn("run-shared")


def test_a_new_process_reads_the_history_this_process_wrote(shared):
    """The seed's "later, in a different process..." example."""
    table, ctx = shared
    memory = _open(table, "user_123_session_456")
    memory.set_system_message("You remember what the user tells you.")
    memory.add_message(role="user", content="Remember: my favorite color is blue")
    memory.add_message(role="assistant", content="Got it: blue. Ünïcödé 🚀 0.1")
    del memory
    results = ctx.Queue()

    prompt, read = _run([(read_conversation, (table, "user_123_session_456", results))], results)[1]

    assert read == [
        ("user", "Remember: my favorite color is blue", 1),
        ("assistant", "Got it: blue. Ünïcödé 🚀 0.1", 2),
    ]
    assert prompt == "You remember what the user tells you."
