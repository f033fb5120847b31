"""``fence approve`` and ``fence deny``: decide on the tool call a waiting run waits on."""

from __future__ import annotations

import argparse
import json
from typing import Any

from fence.runs import RunRecord
from fence.settings import Settings
from fence.validation import InvalidInput
from producer.cli.backend import connect
from producer.cli.errors import EXIT_OK
from producer.cli.output import emit_json, record_dict


def add_parsers(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``approve`` and ``deny`` to ``commands`` (a subparsers action)."""
    approve = commands.add_parser(
        "approve", parents=[common], help="let a waiting run's tool call run; it resumes"
    )
    approve.add_argument("run", help="run id (its state is waiting)")
    approve.add_argument(
        "--arguments",
        metavar="JSON",
        help="run the tool with these arguments (a JSON object) instead of the model's",
    )
    approve.set_defaults(handler=cmd_approve)
    deny = commands.add_parser(
        "deny", parents=[common], help="refuse a waiting run's tool call; the model is told"
    )
    deny.add_argument("run", help="run id (its state is waiting)")
    deny.add_argument("--reason", default="", help="told to the model as the tool's result")
    deny.set_defaults(handler=cmd_deny)


def cmd_approve(args: argparse.Namespace, settings: Settings) -> int:
    arguments = None if args.arguments is None else parse_arguments(args.arguments)
    record = connect(args, settings).run(args.run).approve(arguments)
    return report(record, "approved", args.json)


def cmd_deny(args: argparse.Namespace, settings: Settings) -> int:
    record = connect(args, settings).run(args.run).deny(args.reason)
    return report(record, "denied", args.json)


def parse_arguments(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as error:
        raise InvalidInput.at("--arguments", f"not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise InvalidInput.at("--arguments", 'must be a JSON object, as in {"name": "value"}')
    return value


def report(record: RunRecord, decided: str, as_json: bool) -> int:
    if as_json:
        emit_json(record_dict(record))
    else:
        print(f"run {record.id} {decided}: it resumes (fence events {record.id} to follow)")
    return EXIT_OK
