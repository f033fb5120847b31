"""``fence submit --follow``: a run's answer printed as it is generated, then its outcome."""

from __future__ import annotations

import json
import sys

from fence.runs import EventType, RunEvent, RunRecord, RunState
from producer.cli.backend import RunHandle
from producer.cli.errors import EXIT_ERROR, EXIT_OK
from producer.cli.outcome import (
    check_succeeded,
    interrupted,
    print_succeeded,
    resume_command,
    still_running,
)
from producer.cli.output import print_accepted, print_event


class AnswerStream:
    """Writes a run's answer to stdout as its text deltas come, each flushed.

    The answer is the last model step's text of the last attempt, which is known only
    once the run ends; a person wants it as it comes. So every delta is written at once,
    a new model step (after a tool call) starts on a new line, and when an attempt
    starts over after some of its text was shown (a retry, another worker taking the
    run over, or a resume after an approval), stderr says so: the answer is what
    follows. A tool call that needs approval is announced on stderr with the commands
    that decide it.
    """

    def __init__(self) -> None:
        self.last_id: str | None = None
        """The last event seen: where to resume."""
        self.shown = False
        """The current attempt has written text."""
        self._step: object = None
        self._line_open = False

    def show(self, event: RunEvent) -> None:
        self.last_id = event.id
        if event.type is EventType.STARTED:
            if self.shown:
                self.end_line()
                attempt = event.data.get("attempt", "?")
                print(
                    f"fence: attempt {attempt} started; the answer starts over",
                    file=sys.stderr,
                    flush=True,
                )
            self.shown, self._step = False, None
        elif event.type is EventType.TEXT:
            step = event.data.get("step")
            if self.shown and step != self._step:
                self.end_line()
            self._step = step
            self.write(event.data.get("text", ""))
            self.shown = True
        elif event.type is EventType.APPROVAL_REQUESTED:
            self.end_line()
            call = f"{event.data.get('name')}({json.dumps(event.data.get('arguments'))})"
            print(
                f"fence: waiting for approval of {call}: "
                f"fence approve {event.run_id} | fence deny {event.run_id}",
                file=sys.stderr,
                flush=True,
            )

    def write(self, text: str) -> None:
        if text:
            sys.stdout.write(text)
            sys.stdout.flush()
            self._line_open = not text.endswith("\n")

    def end_line(self) -> None:
        if self._line_open:
            self.write("\n")


def follow_submitted(run: RunHandle, accepted: RunRecord, wait: float | None, as_json: bool) -> int:
    """Where the run was queued (``accepted``: its record then), the answer as it is
    generated, then the outcome line, with ``--wait``'s exit codes (``wait``: follow for
    at most this long, then 124). Under ``--json``, every event as a JSON line instead,
    the last the terminal one: the outcome is in it.

    Until the last attempt shows text (a worker that sends no deltas, or a redelivered
    turn that had committed already), the stored answer is printed when the run
    succeeds, so the output is the answer either way."""
    stream = AnswerStream()
    try:  # from the first line printed on, Ctrl-C says how to pick the run up again
        if not as_json:
            print_accepted(run, accepted)
            sys.stdout.flush()
        for event in run.events(timeout=wait):
            if as_json:
                stream.last_id = event.id
                print_event(event, as_json=True)
            else:
                stream.show(event)
    except KeyboardInterrupt:
        stream.end_line()
        return interrupted(run.id, stream.last_id)
    record = run.status()
    if wait is not None and not record.state.terminal:
        stream.end_line()
        return still_running(run.id, wait, resume_command(run.id, stream.last_id))
    if as_json:
        return EXIT_OK if record.state is RunState.SUCCEEDED else EXIT_ERROR
    if record.state is RunState.SUCCEEDED and not stream.shown:
        stream.write(record.result or "")
    stream.end_line()
    check_succeeded(record)
    print_succeeded(record, answer_shown=True)
    return EXIT_OK
