"""``fence sessions`` and ``fence runs SESSION``: pages of sessions (most recently active
first) and of a session's runs (newest first)."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from fence.runs.listing import MAX_PAGE, SessionState
from fence.settings import Settings
from fence.validation import clip
from producer.cli.backend import connect
from producer.cli.errors import EXIT_OK
from producer.cli.output import emit_json, record_dict, when

MESSAGE_SHOWN = 40


def add_parsers(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``sessions`` and ``runs`` to ``commands`` (a subparsers action)."""
    sessions = commands.add_parser(
        "sessions", parents=[common], help="sessions, most recently active first"
    )
    sessions.add_argument("--state", choices=list(SessionState), help="only sessions in it")
    paging(sessions)
    sessions.set_defaults(handler=cmd_sessions)
    runs = commands.add_parser("runs", parents=[common], help="a session's runs, newest first")
    runs.add_argument("session", help="session id")
    paging(runs)
    runs.set_defaults(handler=cmd_runs)


def paging(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=int, default=20, help=f"per page, 1-{MAX_PAGE}")
    parser.add_argument("--cursor", help="the next page's cursor, as the last page printed")


def cmd_sessions(args: argparse.Namespace, settings: Settings) -> int:
    page = connect(args, settings).sessions(args.state, args.limit, args.cursor)
    if args.json:
        sessions = [dataclasses.asdict(s) for s in page.items]
        emit_json({"sessions": sessions, "next_cursor": page.next_cursor})
        return EXIT_OK
    for s in page.items:
        active = s.active_run or "-"
        print(
            f"{s.session_id}  {s.state.value:<7}  active {active}  "
            f"queued {s.queued_count}  last activity {when(s.last_activity)}"
        )
    more(page.next_cursor, "fence sessions")
    return EXIT_OK


def cmd_runs(args: argparse.Namespace, settings: Settings) -> int:
    page = connect(args, settings).runs(args.session, args.limit, args.cursor)
    if args.json:
        emit_json(
            {
                "session_id": args.session,
                "runs": [record_dict(r) for r in page.items],
                "next_cursor": page.next_cursor,
            }
        )
        return EXIT_OK
    for r in page.items:
        error = f"  {clip(r.error, MESSAGE_SHOWN)}" if r.error else ""
        print(
            f"{r.id}  {r.state.value:<9}  {r.agent}  accepted {when(r.accepted_at)}  "
            f"{clip(r.message, MESSAGE_SHOWN)!r}{error}"
        )
    more(page.next_cursor, f"fence runs {args.session}")
    return EXIT_OK


def more(cursor: str | None, command: str) -> None:
    if cursor is not None:
        print(f"(more: {command} --cursor {cursor})")
