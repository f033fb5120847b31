"""``fence events``: a run's events, replayed from its log, then followed as they happen."""

from __future__ import annotations

import argparse
from typing import Any

from fence.runs.events import event_id
from fence.settings import Settings
from producer.cli.backend import connect
from producer.cli.errors import EXIT_OK
from producer.cli.outcome import interrupted
from producer.cli.output import print_event


def add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    events = commands.add_parser(
        "events", parents=[common], help="a run's events: replayed, then followed"
    )
    events.add_argument("run", help="run id")
    events.add_argument(
        "--after", metavar="EVENT_ID", help="only the events after this one (ids are printed)"
    )
    events.add_argument(
        "--follow",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="wait for the run's next events until its terminal one (the default); "
        "--no-follow prints what is logged now",
    )
    events.set_defaults(handler=cmd_events)


def cmd_events(args: argparse.Namespace, settings: Settings) -> int:
    after = event_id(args.after)  # a bad one is an error naming after, before any read
    backend = connect(args, settings)
    run = backend.run(args.run)
    last = args.after
    try:
        for event in backend.events(run, after, follow=args.follow):
            print_event(event, args.json)
            last = event.id
    except KeyboardInterrupt:
        return interrupted(run.id, last)
    return EXIT_OK
