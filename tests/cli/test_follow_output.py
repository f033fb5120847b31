"""What ``fence submit --follow`` prints for a run's events, whatever the worker sent:
a retried attempt that starts the answer over, a turn with tool steps, and a run whose
log has no text (the stored answer is printed instead)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import pytest

from fence.runs import EventType, RunEvent, RunRecord, RunState, Strategy
from producer.cli.errors import CliError
from producer.cli.follow import follow_submitted

RUN_ID = "r1"
_ids = itertools.count(1)


def event(kind: EventType, **data) -> RunEvent:
    return RunEvent(f"{next(_ids)}-0", RUN_ID, "s1", kind, time.time(), data)


def started(attempt: int) -> RunEvent:
    return event(EventType.STARTED, attempt=attempt, delivery=1, worker="w1")


def text(piece: str, step: int = 1) -> RunEvent:
    return event(EventType.TEXT, text=piece, step=step)


def finished(state: RunState, error: str | None = None) -> RunEvent:
    data = {"state": state.value} | ({"error": error} if error else {})
    return event(EventType.FINISHED, **data)


class LoggedRun:
    """A run whose log and record are given: what ``follow_submitted`` reads."""

    id, session_id, position, duplicate = RUN_ID, "s1", 0, False

    def __init__(self, events: list[RunEvent], state: RunState, **record) -> None:
        self._events = events
        now = time.time()
        self._record = RunRecord(
            id=RUN_ID,
            session_id="s1",
            agent="a",
            message="m",
            strategy=Strategy.ENQUEUE,
            state=state,
            accepted_at=now - 0.5,
            finished_at=now,
            **record,
        )

    def events(self, after: str | None = None, timeout: float | None = None) -> Iterator[RunEvent]:
        yield from self._events

    def status(self) -> RunRecord:
        return self._record


def follow(run: LoggedRun) -> int:
    """``fence submit --follow`` of ``run``, for people."""
    return follow_submitted(run, run.status(), None, as_json=False)


def printed(capsys) -> tuple[list[str], str]:
    """The lines after the accepted line on stdout, and stderr."""
    out, err = capsys.readouterr()
    accepted, *lines = out.splitlines()
    assert accepted == f"run {RUN_ID} accepted for session s1: runs next"
    return lines, err


def test_an_attempt_that_starts_over_is_said_on_stderr_and_its_answer_follows(capsys):
    log = [started(1), text("half an ans"), started(2), text("the whole "), text("answer")]
    log += [event(EventType.COMMITTED), finished(RunState.SUCCEEDED)]

    assert follow(LoggedRun(log, RunState.SUCCEEDED, result="the whole answer")) == 0

    (*shown, outcome), err = printed(capsys)
    assert shown == ["half an ans", "the whole answer"]
    assert outcome.startswith("succeeded in ")
    assert err == "fence: attempt 2 started; the answer starts over\n"


def test_each_model_step_with_text_starts_a_new_line(capsys):
    log = [started(1), text("Let me look.", step=1)]
    log += [event(EventType.TOOL_CALL, id="c1", name="lookup", arguments={})]
    log += [event(EventType.TOOL_RESULT, id="c1", name="lookup", content="42", error=False)]
    log += [text("It is 42.", step=2), event(EventType.COMMITTED), finished(RunState.SUCCEEDED)]

    assert follow(LoggedRun(log, RunState.SUCCEEDED, result="It is 42.")) == 0

    lines, err = printed(capsys)
    assert lines[:2] == ["Let me look.", "It is 42."] and err == ""


@pytest.mark.parametrize(
    "log",
    [
        [started(1), event(EventType.COMMITTED), finished(RunState.SUCCEEDED)],
        [started(1), text("once"), started(2), event(EventType.COMMITTED)],
    ],
    ids=["no-deltas", "redelivered-after-its-commit"],
)
def test_without_text_in_the_last_attempt_the_stored_answer_is_printed(capsys, log):
    assert follow(LoggedRun(log, RunState.SUCCEEDED, result="once")) == 0

    lines, _ = printed(capsys)
    assert lines[-2] == "once" and lines[-1].startswith("succeeded in ")


def test_a_failed_run_ends_its_partial_line_and_raises_its_error(capsys):
    log = [started(1), text("partial"), finished(RunState.FAILED, "boom")]

    with pytest.raises(CliError, match=f"^run {RUN_ID} failed: boom$") as raised:
        follow(LoggedRun(log, RunState.FAILED, error="boom"))

    assert raised.value.code == "failed" and raised.value.run_id == RUN_ID
    assert printed(capsys)[0] == ["partial"]
