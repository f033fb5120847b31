"""``fence session``: a session's queue (active run, lease, queued runs), and
``--redispatch`` for a stuck one."""

from __future__ import annotations

import argparse
import time
from typing import Any

from fence.messages import validate_session_id
from fence.settings import Settings
from producer.cli.backend import RedisBackend, connect, gateway_url
from producer.cli.errors import EXIT_OK, CliError
from producer.cli.output import emit_json
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
    if args.redispatch and gateway_url(args):
        raise CliError(
            "--redispatch publishes the run's Celery task, which needs Redis: "
            "drop --url (and FENCE_API_URL)"
        )
    backend = connect(args, settings)
    state = backend.session(args.session)
    if args.redispatch:
        assert isinstance(backend, RedisBackend)
        state["redispatched"] = redispatch(backend.producer, state)
    if args.json:
        emit_json(state)
    else:
        print_session(state)
    return EXIT_OK


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
    if active and "lease" in state:  # through the gateway, lease and progress are not shown
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
    count = state.get("queued_count", len(queued))  # the gateway lists the first 100
    shown = ": " + ", ".join(queued[:QUEUED_SHOWN]) if queued else ""
    print(f"  queued      {count} run(s){shown}")
    if count > QUEUED_SHOWN:
        print(f"              ... and {count - QUEUED_SHOWN} more")
    if "redispatched" in state:
        print(f"  redispatch  {state['redispatched']}")
