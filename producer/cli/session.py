"""``fence session``: a session's queue (active run, lease, queued runs), and
``--redispatch`` for a stuck one."""

from __future__ import annotations

import argparse
import time
from typing import Any

from fence.messages import validate_session_id
from fence.runs import RunNotFound
from fence.settings import Settings
from producer.cli.errors import EXIT_OK, CliError
from producer.cli.output import emit_json, record_dict
from producer.client import Producer

QUEUED_SHOWN = 10


def add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    session = commands.add_parser(
        "session", parents=[common], help="a session's queue: active run, lease, queued runs"
    )
    session.add_argument("session", help="session id")
    session.add_argument(
        "--redispatch",
        action="store_true",
        help="publish the active run's task again (for a stuck session; safe to repeat)",
    )
    session.set_defaults(handler=cmd_session)


def cmd_session(args: argparse.Namespace, settings: Settings) -> int:
    validate_session_id(args.session, "session")
    producer = Producer(settings=settings)
    state = session_state(producer, args.session)
    if args.redispatch:
        state["redispatched"] = redispatch(producer, state)
    if args.json:
        emit_json(state)
    else:
        print_session(state)
    return EXIT_OK


def session_state(producer: Producer, session_id: str) -> dict[str, Any]:
    """Everything about a session's queue a person needs to tell if it is stuck."""
    info = producer.session(session_id)
    active: dict[str, Any] | None = None
    if info.active_run:
        try:
            active = record_dict(producer.store.get(info.active_run, session_id))
        except RunNotFound:
            active = {"run_id": info.active_run, "state": "missing (record expired)"}
    return {
        "session_id": session_id,
        "state": info.state,
        "active_run": active,
        "queued": info.queued,
        "lease": (
            {"token": info.lease_token, "expires_in_ms": info.lease_expires_in_ms}
            if info.lease_expires_in_ms is not None
            else None
        ),
        "last_progress_at": info.progress_at,
        "stall_after_s": producer.settings.stall_after_s,
    }


def redispatch(producer: Producer, state: dict[str, Any]) -> str:
    """Publish the active run's task again, as the sweeper would. Safe: a duplicate
    delivery finds the run leased or committed and does nothing."""
    active = state["active_run"]
    if not active:
        raise CliError(f"session {state['session_id']} is idle; nothing to re-dispatch")
    if state["lease"]:
        raise CliError(
            f"session {state['session_id']}: a worker holds the lease on run {active['run_id']} "
            f"(expires in {state['lease']['expires_in_ms']} ms); it is running, not stuck"
        )
    producer.store.publish(state["session_id"], active["run_id"])
    return f"published fence.run_turn for run {active['run_id']}"


def print_session(state: dict[str, Any]) -> None:
    print(f"session {state['session_id']}: {state['state']}")
    active = state["active_run"]
    if active:
        print(
            f"  active run  {active['run_id']} ({active['state']}, worker {active.get('worker')})"
        )
        lease = state["lease"]
        if lease:
            print(
                f"  lease       held, token {lease['token']}, "
                f"expires in {lease['expires_in_ms']} ms"
            )
        else:
            print("  lease       none (no worker is running it right now)")
        if state["last_progress_at"]:
            idle = time.time() - state["last_progress_at"]
            print(
                f"  progress    {idle:.1f} s ago (the sweeper re-dispatches after "
                f"{state['stall_after_s']:g} s without lease or progress)"
            )
    queued = state["queued"]
    shown = ": " + ", ".join(queued[:QUEUED_SHOWN]) if queued else ""
    print(f"  queued      {len(queued)} run(s){shown}")
    if len(queued) > QUEUED_SHOWN:
        print(f"              ... and {len(queued) - QUEUED_SHOWN} more")
    if "redispatched" in state:
        print(f"  redispatch  {state['redispatched']}")
