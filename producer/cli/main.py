"""``main``, the ``fence`` console script: the parser of every command, and the one
place errors become a line on stderr (a JSON document under ``--json``) and an exit code."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence

import redis

from fence import console
from fence.errors import FenceError
from fence.runs import IdempotencyConflict, NotWaiting, RunNotFound
from fence.settings import Settings, get_settings
from fence.validation import InvalidInput
from producer.cli import approvals, backend, demo, events, history, listing, runs, session
from producer.cli.errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, CliError
from producer.cli.output import emit_json, redact
from producer.stack import command as stack
from producer.stack.config import StackError

FIELD_NAME = re.compile(r"-{0,2}[A-Za-z_][\w.\-]*")
"""How a message names the field it is about: ``metadata: ...``, ``--file: ...``."""
REDIS_ONLY = {
    "stack": "fence stack runs the runtime on this machine",
    "demo": "fence demo drives traffic at a stack's Redis",
}
"""Commands that do not go through the gateway, and why."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fence",
        description="Enqueue agent runs, follow them, read session histories, and run the "
        "whole runtime on one machine. Settings come from FENCE_* variables.",
        epilog="Exit codes: 0 ok, 1 error, 2 usage, 124 --wait ended before the run, 130 Ctrl-C.",
    )
    parser.add_argument("--json", action="store_true", help="print JSON for programs")
    parser.add_argument("--redis-url", help="override FENCE_REDIS_URL")
    parser.add_argument(
        "--url",
        help="send the run commands through the HTTP gateway at URL instead of to Redis "
        "(default FENCE_API_URL; the token is FENCE_API_TOKEN)",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="JSON")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    runs.add_parsers(commands, common)
    approvals.add_parsers(commands, common)
    events.add_parser(commands, common)
    history.add_parser(commands, common)
    session.add_parser(commands, common)
    listing.add_parsers(commands, common)
    stack.add_parser(commands, common)
    demo.add_parser(commands, common)
    return parser


def load_settings(args: argparse.Namespace) -> Settings:
    """The FENCE_* settings (an ``InvalidSettingsError`` names a bad one), with --redis-url."""
    settings = get_settings()
    if getattr(args, "redis_url", None):
        settings = settings.model_copy(update={"redis_url": args.redis_url})
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fence`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    settings: Settings | None = None
    as_json = bool(getattr(args, "json", False))
    try:
        if args.url and args.command in REDIS_ONLY:
            raise CliError(f"--url: {REDIS_ONLY[args.command]} and needs Redis, not a gateway")
        settings = load_settings(args)
        return args.handler(args, settings)
    except CliError as error:
        return fail(str(error), as_json, code=error.code, run_id=error.run_id)
    except StackError as error:
        return fail(str(error), as_json)
    except InvalidInput as error:
        return fail("; ".join(problem.message for problem in error.problems), as_json)
    except RunNotFound as error:
        return fail(f"run: {error}", as_json, code="not_found", run_id=error.run_id)
    except NotWaiting as error:
        return fail(str(error), as_json, code="not_waiting", run_id=error.run_id)
    except IdempotencyConflict as error:
        return fail(str(error), as_json, code="idempotency_conflict", run_id=error.run_id)
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as error:
        url = redact(settings.redis_url) if settings else "FENCE_REDIS_URL"
        message = (
            f"cannot reach Redis at {url} ({error}); is the stack running? "
            "set FENCE_REDIS_URL or --redis-url"
        )
        return fail(message, as_json, code="unavailable")
    except (ValueError, FenceError) as error:
        return fail(str(error), as_json)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader left (``| head``): what it read is all it wanted
        console.silence()
        return EXIT_OK
    finally:
        backend.close_opened()


def fail(
    message: str, as_json: bool = False, *, code: str = "invalid", run_id: str | None = None
) -> int:
    """Report an error: one line on stderr, or under ``--json`` the HTTP API's error
    document on stdout (so ``fence ... --json | jq`` always reads JSON). Exit code 1."""
    if as_json:
        field, sep, _ = message.partition(":")
        named = field if sep and FIELD_NAME.fullmatch(field) else None
        error = {"code": code, "message": message, "field": named, "run_id": run_id}
        emit_json({"error": error})
    else:
        print(f"fence: error: {message}", file=sys.stderr)
    return EXIT_ERROR
