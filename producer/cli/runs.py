"""``fence submit``, ``fence status`` and ``fence cancel``: enqueue a turn, follow it, stop it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from fence.runs import RunRecord, RunState, RunTimeout, Strategy
from fence.settings import Settings
from producer.cli.arguments import json_object, positive_float
from producer.cli.backend import connect
from producer.cli.errors import EXIT_OK, CliError
from producer.cli.follow import follow_submitted
from producer.cli.outcome import check_succeeded, print_succeeded, still_running
from producer.cli.output import emit_json, print_accepted, print_record, record_dict


def add_parsers(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``submit``, ``status`` and ``cancel`` to ``commands`` (a subparsers action)."""
    submit = commands.add_parser("submit", parents=[common], help="enqueue one turn")
    submit.add_argument("session", help="session id")
    submit.add_argument(
        "message",
        nargs="?",
        help="the user message; - reads it from standard input (or use --file)",
    )
    submit.add_argument(
        "--file", type=Path, metavar="PATH", help="read the user message from this file"
    )
    submit.add_argument("--agent", help="agent name (default FENCE_DEFAULT_AGENT)")
    submit.add_argument(
        "--wait",
        type=positive_float,
        metavar="SECONDS",
        help="wait for the answer (with --follow: follow for at most SECONDS)",
    )
    submit.add_argument(
        "--follow",
        action="store_true",
        help="print the answer as it is generated, then the outcome "
        "(--json: one JSON line per event)",
    )
    submit.add_argument(
        "--strategy",
        choices=[s.value for s in Strategy],
        default=Strategy.ENQUEUE.value,
        help="when the session is busy: enqueue (default), reject or interrupt",
    )
    submit.add_argument("--idempotency-key", help="the same key returns the same run (24 h)")
    submit.add_argument("--metadata", type=json_object, help="JSON object kept with the run")
    submit.add_argument(
        "--webhook", help="URL the run's outcome is POSTed to when it ends (FENCE_WEBHOOK_ALLOW)"
    )
    submit.set_defaults(handler=cmd_submit)

    status = commands.add_parser("status", parents=[common], help="show a run")
    status.add_argument("run", help="run id")
    status.set_defaults(handler=cmd_status)

    cancel = commands.add_parser("cancel", parents=[common], help="cancel a run")
    cancel.add_argument("run", help="run id")
    cancel.set_defaults(handler=cmd_cancel)


def submitted_message(args: argparse.Namespace) -> str:
    """The message from the argument, standard input (``-``) or ``--file``: a long
    message does not fit in a command line."""
    if args.file is not None and args.message is not None:
        raise CliError("message: give it as an argument, as -, or with --file, not two of them")
    if args.file is not None:
        try:
            return args.file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise CliError(
                f"--file: cannot read {str(args.file)!r} as UTF-8 text ({error})"
            ) from None
    if args.message == "-":
        try:
            return sys.stdin.read()
        except UnicodeDecodeError:
            raise CliError("message: standard input is not UTF-8 text") from None
    if args.message is None:
        raise CliError("message: required (as an argument, - for standard input, or --file PATH)")
    return args.message


def cmd_submit(args: argparse.Namespace, settings: Settings) -> int:
    message = submitted_message(args)
    backend = connect(args, settings)
    run = backend.submit(
        args.session,
        message,
        agent=args.agent,
        idempotency_key=args.idempotency_key,
        strategy=args.strategy,
        metadata=args.metadata,
        webhook=args.webhook,
    )
    record = run.status()

    def emit(record: RunRecord) -> None:
        if args.json:
            emit_json({**record_dict(record), "position": run.position})

    if record.state is RunState.REJECTED:
        raise CliError(f"run {run.id} rejected: {record.error}", code="rejected", run_id=run.id)
    if args.follow:
        return follow_submitted(run, record, args.wait, args.json)
    if not args.json:
        print_accepted(run, record)
    if args.wait is None:
        emit(record)
        return EXIT_OK
    try:
        record = backend.wait(run.id, args.wait)
    except RunTimeout:
        emit(run.status())
        return still_running(run.id, args.wait, f"fence status {run.id}")
    check_succeeded(record)
    emit(record)
    if not args.json:
        print_succeeded(record, answer_shown=False)
    return EXIT_OK


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    record = connect(args, settings).run(args.run).status()
    if args.json:
        emit_json(record_dict(record))
    else:
        print_record(record)
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace, settings: Settings) -> int:
    record = connect(args, settings).run(args.run).cancel()
    if record.state.terminal and record.state is not RunState.CANCELLED:
        raise CliError(
            f"run {record.id} already {record.state.value}; nothing to cancel",
            code="terminal",
            run_id=record.id,
        )
    if args.json:
        emit_json(record_dict(record))
    elif record.state is RunState.CANCELLED:
        before = " (it had not started)" if record.started_at is None else ""
        print(f"run {record.id} cancelled{before}")
    else:
        print(
            f"run {record.id} is {record.state.value}: cancel requested; it stops at its "
            "next model or tool step and commits nothing (fence status to follow)"
        )
    return EXIT_OK
