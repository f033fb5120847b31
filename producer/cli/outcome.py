"""How ``fence submit --wait`` and ``--follow`` end, and ``fence events`` when stopped:
the outcome line, the error of a run that did not succeed, or the exit code and the
command that picks the run up again."""

from __future__ import annotations

import sys

from fence.runs import RunRecord, RunState
from producer.cli.errors import EXIT_INTERRUPTED, EXIT_TIMEOUT, CliError


def check_succeeded(record: RunRecord) -> None:
    """Raise the ``CliError`` of a run that ended without an answer (exit code 1)."""
    if record.state is not RunState.SUCCEEDED:
        raise CliError(
            f"run {record.id} {record.state.value}: {record.error or 'no error recorded'}",
            code=record.state.value,
            run_id=record.id,
        )


def print_succeeded(record: RunRecord, *, answer_shown: bool) -> None:
    """The outcome line of a run that succeeded, then its answer unless already shown."""
    took = (record.finished_at or 0) - record.accepted_at
    if answer_shown:
        print(f"succeeded in {took:.2f} s")
        return
    print(f"succeeded in {took:.2f} s:")
    print(record.result or "")


def still_running(run_id: str, wait: float, resume: str) -> int:
    """Say the wait ended before the run did (exit code 124); ``resume``: how to go on."""
    print(
        f"fence: run {run_id} is still running after {wait:g} s; it goes on: {resume}",
        file=sys.stderr,
    )
    return EXIT_TIMEOUT


def resume_command(run_id: str, last_id: str | None) -> str:
    """The command that follows the run on from the last event seen, missing none."""
    after = f" --after {last_id}" if last_id else ""
    return f"fence events {run_id}{after}"


def interrupted(run_id: str, last_id: str | None) -> int:
    """Ctrl-C while following: the run goes on; say how to pick it up (exit code 130)."""
    sys.stdout.flush()
    print(
        f"fence: stopped following run {run_id}; it goes on: {resume_command(run_id, last_id)}",
        file=sys.stderr,
    )
    return EXIT_INTERRUPTED
