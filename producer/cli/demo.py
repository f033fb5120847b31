"""``fence demo``: drive traffic at a running stack and verify every history
(``producer.demo_traffic``); ``fence stack --demo`` runs it too."""

from __future__ import annotations

import argparse
from typing import Any

from fence.memory.url import memory_factory
from fence.settings import Settings
from producer.cli.arguments import positive_float, positive_int
from producer.cli.errors import EXIT_ERROR, EXIT_OK, CliError
from producer.cli.output import emit_json, redact
from producer.client import Producer
from producer.demo_traffic import format_summary, run_demo

SESSIONS = 20
TURNS = 5
CONCURRENCY = 8
TIMEOUT_S = 300.0
"""The demo's defaults, for ``fence demo`` and ``fence stack --demo``."""


def add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    demo = commands.add_parser(
        "demo",
        parents=[common],
        help="drive traffic at a running stack and verify every history",
    )
    number = {"type": positive_int}
    demo.add_argument("--sessions", **number, default=SESSIONS, help=f"sessions ({SESSIONS})")
    demo.add_argument("--turns", **number, default=TURNS, help=f"turns per session ({TURNS})")
    demo.add_argument(
        "--concurrency", **number, default=CONCURRENCY, help=f"client threads ({CONCURRENCY})"
    )
    demo.add_argument("--agent", help="agent name (default FENCE_DEFAULT_AGENT)")
    demo.add_argument(
        "--timeout",
        type=positive_float,
        default=TIMEOUT_S,
        help=f"seconds for all runs ({TIMEOUT_S:g})",
    )
    demo.set_defaults(handler=cmd_demo)


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    return run_demo_command(
        settings,
        sessions=args.sessions,
        turns=args.turns,
        concurrency=args.concurrency,
        agent=args.agent,
        timeout=args.timeout,
        as_json=args.json,
    )


def run_demo_command(
    settings: Settings,
    *,
    sessions: int,
    turns: int,
    concurrency: int,
    agent: str | None,
    timeout: float,
    as_json: bool,
) -> int:
    """Run the demo against the runtime ``settings`` name; print its report."""
    producer = Producer(settings=settings)
    producer.store.redis.ping()
    require_a_worker(producer)
    agent = producer.check_agent(agent)  # one error up front, not one per turn
    if not as_json:
        print(
            f"demo: {sessions} sessions x {turns} turns from {concurrency} client threads, "
            f"agent {agent!r}, Redis {redact(settings.redis_url)}"
        )
    report = run_demo(
        producer,
        memory_factory(settings.memory),
        sessions=sessions,
        turns=turns,
        concurrency=concurrency,
        agent=agent,
        timeout=timeout,
        progress=not as_json,
    )
    if as_json:
        emit_json(report.as_dict())
    else:
        print(format_summary(report))
    return EXIT_OK if report.passed else EXIT_ERROR


def require_a_worker(producer: Producer) -> None:
    """Fail fast, not after the demo's timeout, when no live worker serves this Redis
    (none advertises its agents: ``fence.runs.advertised``)."""
    if not producer.agents:
        raise CliError(
            f"no live worker on {redact(producer.settings.redis_url)}: start the stack "
            "(fence stack) or a worker (celery -A workers worker), or point FENCE_REDIS_URL "
            "at theirs (source .fence/stack/env)"
        )
