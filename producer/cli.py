"""The ``fence`` command: enqueue and follow runs, read histories, run the local stack.

    fence submit SESSION MESSAGE [--agent A] [--wait SECONDS]   enqueue a turn
    fence status RUN | fence cancel RUN                         follow or stop a run
    fence history SESSION | fence session SESSION               read memory / the queue
    fence stack [--demo]                                        everything on this machine
    fence demo                                                  traffic + checks at a stack

Settings come from ``FENCE_*`` variables (``FENCE_REDIS_URL``, ``FENCE_MEMORY``,
...); ``fence stack`` writes them to ``<dir>/env`` for other shells. Output is
for people; ``--json`` prints one JSON document for programs. Exit codes: 0
done, 1 error (bad input, run failed/cancelled/rejected, not found, Redis
unreachable), 2 usage error, 124 ``--wait`` ended before the run did.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis

from fence import console
from fence.errors import FenceError
from fence.memory.sqlite import MissingDatabaseError
from fence.memory.url import memory_factory
from fence.messages import validate_session_id
from fence.plain_json import nesting_rule, text_nesting
from fence.runs import (
    IdempotencyConflict,
    RunNotFound,
    RunRecord,
    RunState,
    RunTimeout,
    Strategy,
)
from fence.runs.schema import MAX_METADATA_DEPTH
from fence.settings import Settings, get_settings
from fence.validation import InvalidInput
from producer.local_stack import StackError

EXIT_OK = 0
"""Done as asked (README, CLI: the table of exit codes)."""
EXIT_ERROR = 1
"""Bad input or settings, Redis unreachable, no such run, or the run did not succeed."""
EXIT_TIMEOUT = 124
"""``--wait`` ended first; the run goes on."""
FIELD_NAME = re.compile(r"-{0,2}[A-Za-z_][\w.\-]*")
"""How a message names the field it is about: ``metadata: ...``, ``--file: ...``."""


class CliError(Exception):
    """A user error or a run that did not succeed: one line (a JSON error document under
    ``--json``), exit code 1, no traceback. ``code`` is the HTTP API's ``error.code``."""

    def __init__(self, message: str, *, code: str = "invalid", run_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.run_id = run_id


# -- helpers ------------------------------------------------------------------


def redact(url: str) -> str:
    """``url`` without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + host))


def load_settings(args: argparse.Namespace) -> Settings:
    """The FENCE_* settings (an ``InvalidSettingsError`` names a bad one), with --redis-url."""
    settings = get_settings()
    if getattr(args, "redis_url", None):
        settings = settings.model_copy(update={"redis_url": args.redis_url})
    return settings


def when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp).isoformat(sep=" ", timespec="milliseconds")


def emit_json(document: Any) -> None:
    print(json.dumps(document, indent=2, default=str))


def record_dict(record: RunRecord) -> dict[str, Any]:
    """A run as ``--json`` prints it: the HTTP API's run view (``run_id``, not ``id``)."""
    fields = record.model_dump(mode="json")
    return {"run_id": fields.pop("id"), **fields}


def print_record(record: RunRecord) -> None:
    rows = [
        ("run", record.id),
        ("session", record.session_id),
        ("agent", record.agent),
        ("state", record.state.value + (" (cancel requested)" if _cancelling(record) else "")),
        ("accepted", when(record.accepted_at)),
        ("started", when(record.started_at)),
        ("finished", when(record.finished_at)),
    ]
    if record.finished_at is not None:
        rows.append(("took", f"{record.finished_at - record.accepted_at:.3f} s since accepted"))
    rows += [
        ("worker", record.worker or "-"),
        ("deliveries", f"{record.deliveries} (workers that took the run)"),
        ("attempts", f"{record.attempts} (tries of the turn, retries included)"),
    ]
    if record.idempotency_key:
        rows.append(("idempotency key", record.idempotency_key))
    rows.append(("message", record.message))
    if record.result:
        rows.append(("result", record.result))
    if record.error:
        rows.append(("error", record.error))
    if record.corrupt:
        rows.append(("corrupt", f"{record.corrupt} (unreadable fields show safe values)"))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def _cancelling(record: RunRecord) -> bool:
    return record.cancel_requested and not record.state.terminal


def _number(
    name: str, convert: Callable[[str], Any], kind: str, accept: Callable[[Any], bool], rule: str
) -> Callable[[str], Any]:
    """An argparse ``type``: ``convert`` the text, then refuse values ``accept`` rejects.
    Errors read ``must be <kind>`` (not a number) or ``must be <rule>`` (out of range)."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {kind} (got {text!r})") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"must be {rule} (got {text})")
        return value

    parse.__name__ = name
    return parse


positive_float = _number(
    "positive_float", float, "a number of seconds", lambda v: v > 0, "more than 0"
)
positive_int = _number("positive_int", int, "a whole number", lambda v: v >= 1, "at least 1")
port_number = _number(
    "port_number", int, "a port number", lambda v: 0 <= v < 65536, "0-65535, 0 for any free port"
)


def json_object(text: str) -> dict[str, Any]:
    """An argparse ``type`` for ``--metadata``: nesting is counted before parsing, so no
    input makes the parser recurse; ``RunRequest`` checks the rest."""
    if text_nesting(text)[0] > MAX_METADATA_DEPTH:
        raise argparse.ArgumentTypeError(nesting_rule(MAX_METADATA_DEPTH))
    try:
        value = json.loads(text)
    except ValueError as error:  # not JSON, or an int too long to read
        raise argparse.ArgumentTypeError(f"must be a JSON object ({error})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError('must be a JSON object, as in \'{"k": "v"}\'')
    return value


# -- commands -------------------------------------------------------------------


def make_producer(settings: Settings) -> Any:
    from producer.client import Producer

    return Producer(settings=settings)


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
    producer = make_producer(settings)
    run = producer.submit(
        args.session,
        message,
        agent=args.agent,
        idempotency_key=args.idempotency_key,
        strategy=args.strategy,
        metadata=args.metadata,
    )
    record = run.status()

    def emit(record: RunRecord) -> None:
        if args.json:
            emit_json({**record_dict(record), "position": run.position})

    if record.state is RunState.REJECTED:
        raise CliError(f"run {run.id} rejected: {record.error}", code="rejected", run_id=run.id)
    if not args.json:
        if run.position < 0:
            print(f"run {run.id} (existing run for this idempotency key): {record.state.value}")
        elif run.position == 0:
            print(f"run {run.id} accepted for session {run.session_id}: runs next")
        else:
            print(
                f"run {run.id} accepted for session {run.session_id}: queued behind "
                f"{run.position} run(s)"
            )
    if args.wait is None:
        emit(record)
        return EXIT_OK
    try:
        record = producer.store.wait(run.id, args.wait)
    except RunTimeout:
        message = (
            f"run {run.id} is still running after {args.wait:g} s; it goes on: "
            f"fence status {run.id}"
        )
        emit(run.status())
        print(f"fence: {message}", file=sys.stderr)
        return EXIT_TIMEOUT
    if record.state is not RunState.SUCCEEDED:
        raise CliError(
            f"run {run.id} {record.state.value}: {record.error or 'no error recorded'}",
            code=record.state.value,
            run_id=run.id,
        )
    emit(record)
    if not args.json:
        took = (record.finished_at or 0) - record.accepted_at
        print(f"succeeded in {took:.2f} s:")
        print(record.result or "")
    return EXIT_OK


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    record = make_producer(settings).run(args.run).status()
    if args.json:
        emit_json(record_dict(record))
    else:
        print_record(record)
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace, settings: Settings) -> int:
    run = make_producer(settings).run(args.run)
    record = run.cancel()
    if record.state.terminal and record.state is not RunState.CANCELLED:
        raise CliError(
            f"run {record.id} already {record.state.value}; nothing to cancel",
            code="terminal",
            run_id=record.id,
        )
    if args.json:
        emit_json(record_dict(record))
    else:
        if record.state is RunState.CANCELLED:
            before = " (it had not started)" if record.started_at is None else ""
            print(f"run {record.id} cancelled{before}")
        else:
            print(
                f"run {record.id} is {record.state.value}: cancel requested; it stops at its "
                "next model or tool step and commits nothing (fence status to follow)"
            )
    return EXIT_OK


def cmd_history(args: argparse.Namespace, settings: Settings) -> int:
    validate_session_id(args.session, "session")
    memory = memory_factory(settings.memory, missing_ok=False)(args.session)
    try:
        window = memory.get_window()  # the whole history and the system prompt, in one read
    except MissingDatabaseError as error:  # reading creates no database
        raise CliError(
            f"FENCE_MEMORY: {error} (FENCE_MEMORY is {redact(settings.memory)})", code="not_found"
        ) from None
    messages, system = window.messages, window.system
    if args.limit is not None:
        messages = messages[-args.limit :]
    if args.json:
        emit_json(
            {
                "session_id": args.session,
                "system": system,
                "messages": [m.model_dump(mode="json") for m in messages],
            }
        )
        return EXIT_OK
    print(f"session {args.session}: {len(messages)} message(s) in {redact(settings.memory)}")
    if system:
        print(f"  system prompt: {system}")
    for message in messages:
        text = message.content
        if message.tool_calls:
            calls = ", ".join(f"{c.name}({json.dumps(c.arguments)})" for c in message.tool_calls)
            text = f"{text} -> calls {calls}".strip()
        who = message.role.value + (f":{message.name}" if message.name else "")
        turn = f"[{message.turn_id[:12]}]" if message.turn_id else "[-]"
        print(f"  {message.seq or '-':>5}  {turn:<14} {who:<10} {text}")
    return EXIT_OK


def session_state(settings: Settings, session_id: str) -> dict[str, Any]:
    """Everything about a session's queue a person needs to tell if it is stuck."""
    validate_session_id(session_id, "session")
    producer = make_producer(settings)
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
        "stall_after_s": settings.stall_after_s,
    }


def cmd_session(args: argparse.Namespace, settings: Settings) -> int:
    state = session_state(settings, args.session)
    if args.redispatch:
        state["redispatched"] = redispatch(settings, state)
    if args.json:
        emit_json(state)
        return EXIT_OK
    print(f"session {args.session}: {state['state']}")
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
    print(f"  queued      {len(queued)} run(s)" + (": " + ", ".join(queued[:10]) if queued else ""))
    if len(queued) > 10:
        print(f"              ... and {len(queued) - 10} more")
    if args.redispatch:
        print(f"  redispatch  {state['redispatched']}")
    return EXIT_OK


def redispatch(settings: Settings, state: dict[str, Any]) -> str:
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
    from workers.app import create_app
    from workers.dispatch import dispatcher

    dispatcher(create_app(settings))(state["session_id"], active["run_id"])
    return f"published fence.run_turn for run {active['run_id']}"


def demo_settings(settings: Settings) -> tuple[Any, Callable[[str], Any]]:
    """A Producer and memory opener for ``settings`` (shared by ``demo`` and ``stack``).

    The dispatcher is made here, not lazily on the first submit as ``Producer`` would,
    because the demo submits from many threads at once."""
    from producer.client import Producer
    from workers.app import create_app
    from workers.dispatch import dispatcher

    producer = Producer(settings=settings, dispatch=dispatcher(create_app(settings)))
    return producer, memory_factory(settings.memory)


def require_a_worker(settings: Settings, timeout: float = 5.0) -> None:
    """Fail fast, not after the demo's timeout, when no worker serves this Redis."""
    from workers.app import create_app

    app = create_app(settings)
    try:
        replies = app.control.ping(timeout=timeout, limit=1)
    finally:
        app.close()
    if not replies:
        raise CliError(
            f"no worker answered within {timeout:g} s on {redact(settings.redis_url)}: start "
            "the stack (fence stack) or a worker (celery -A workers worker), or point "
            "FENCE_REDIS_URL at theirs (source .fence/stack/env)"
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
    from producer.demo_traffic import format_summary, run_demo

    producer, open_memory = demo_settings(settings)
    agent = producer.check_agent(agent)  # one error up front, not one per turn
    producer.store.redis.ping()
    require_a_worker(settings)
    if not as_json:
        print(
            f"demo: {sessions} sessions x {turns} turns from {concurrency} client threads, "
            f"agent {agent!r}, Redis {redact(settings.redis_url)}"
        )
    report = run_demo(
        producer,
        open_memory,
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


# -- stack ------------------------------------------------------------------------


def cmd_stack(args: argparse.Namespace, settings: Settings) -> int:
    from producer.local_stack import ENV_FILE, LocalStack, StackConfig

    if args.print_env:
        path = Path(args.dir) / ENV_FILE
        if not path.is_file():
            raise CliError(f"--dir: no stack has started in {args.dir} (no {path})")
        console.write(path.read_text(encoding="utf-8"))
        return EXIT_OK

    def say(text: str) -> None:
        console.say(f"[stack] {text}")  # a closed pipe must not stop the shutdown

    config = StackConfig(
        directory=Path(args.dir),
        redis_port=args.redis_port,
        workers=args.workers,
        concurrency=args.concurrency,
        memory=args.memory,
        flower=not args.no_flower,
        flower_port=args.flower_port,
        flower_auth=settings.flower_basic_auth,
        gateway=not args.no_gateway,
        gateway_port=args.gateway_port,
        api_tokens=",".join(settings.api_tokens) or None,
        echo=not args.quiet,
        shutdown_timeout=(
            args.shutdown_timeout
            if args.shutdown_timeout is not None
            else settings.turn_timeout_s + 30
        ),
        cwd=Path.cwd(),
        rotate_secrets=args.rotate_secrets,
    )
    stack = LocalStack(config)
    wake = threading.Event()
    reasons: list[str] = []
    signals: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        signals.append(signum)
        if len(signals) == 1:
            reasons.append(f"{signal.Signals(signum).name} received")
            wake.set()
        else:
            say("second signal: killing everything now (running turns are redelivered later)")
            stack.kill()

    stop_signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # SIGHUP: terminal closed
    previous = {sig: signal.signal(sig, on_signal) for sig in stop_signals}
    code = EXIT_OK
    try:
        say(f"starting in {stack.directory} ...")
        started = time.monotonic()
        stack.start()
        say(f"up in {time.monotonic() - started:.1f} s")

        def exited(process: Any) -> None:
            returncode = process.process.returncode
            reasons.append(f"{process.name} exited unexpectedly (code {returncode})")
            wake.set()

        stack.watch(exited, log=say)
        print_stack(stack)
        if args.demo and not wake.is_set():
            code = run_stack_demo(stack, settings, args, wake, say)
            if args.exit_after_demo:
                reasons.append("demo finished (--exit-after-demo)")
                wake.set()
            elif not reasons:
                wake.clear()
                if reasons:  # a signal arrived while clearing
                    wake.set()
                say(f"demo done; the stack keeps running. Flower: {stack.flower_url or '-'}")
                say("press Ctrl-C to stop everything")
        wake.wait()
        if any("unexpectedly" in reason for reason in reasons):
            code = EXIT_ERROR
        say("shutting down: " + "; ".join(reasons))
    finally:
        stopping = time.monotonic()
        stack.stop(log=say)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    say(f"stopped in {time.monotonic() - stopping:.1f} s; no process left behind")
    return code


def print_stack(stack: Any) -> None:
    """Where everything is, and how to use it from another shell."""
    rows = [
        ("Redis", f"{stack.redis_url}  (AOF on, data in {stack.directory / 'redis'})"),
        (
            "Workers",
            f"{len(stack.workers)} process(es) x {stack.config.concurrency} slot(s)  "
            f"(logs in {stack.logs})",
        ),
        ("Beat", "recovery sweeper running"),
    ]
    if stack.flower_url:
        user, _, password = stack.flower_auth.partition(":")
        rows.append(("Flower", f"{stack.flower_url}  user {user}  password {password}"))
    else:
        rows.append(("Flower", "off (--no-flower)"))
    if stack.gateway_url:
        rows.append(("Gateway", f"{stack.gateway_url}  Authorization: Bearer {stack.api_token}"))
    else:
        rows.append(("Gateway", "off"))
    rows.append(("Memory", stack.memory_url))
    if stack.metrics_urls:
        rows.append(("Metrics", "  ".join(stack.metrics_urls)))
    width = max(len(name) for name, _ in rows)
    lines = ["", "fence stack is up", *(f"  {name:<{width}}  {value}" for name, value in rows)]
    lines += [f"  note: {note}" for note in stack.notes]
    lines += [
        "",
        "  From another shell:",
        f"    source {stack.directory / 'env'}",
        "    fence submit my-session 'Hello!' --wait 30",
        "    fence history my-session",
        "    fence demo --sessions 50 --turns 4",
        "",
        "  Ctrl-C stops everything (workers finish their running turns first).",
        "",
    ]
    console.say("\n".join(lines))


def run_stack_demo(
    stack: Any,
    settings: Settings,
    args: argparse.Namespace,
    wake: threading.Event,
    say: Callable[[str], None],
) -> int:
    """Run the demo in a thread so Ctrl-C still stops the stack while it runs."""
    stack_settings = settings.model_copy(
        update={"redis_url": stack.redis_url, "memory": stack.memory_url}
    )
    result: list[int] = []
    done = threading.Event()

    def demo() -> None:
        try:
            result.append(
                run_demo_command(
                    stack_settings,
                    sessions=args.demo_sessions,
                    turns=args.demo_turns,
                    concurrency=args.demo_concurrency,
                    agent=None,
                    timeout=args.demo_timeout,
                    as_json=False,
                )
            )
        except Exception as error:  # report, then let the stack shut down normally
            say(f"demo failed: {type(error).__name__}: {error}")
            result.append(EXIT_ERROR)
        finally:
            done.set()
            wake.set()

    say("running the demo (process logs paused; they are still written to the log files)")
    stack.set_echo(False)
    threading.Thread(target=demo, name="fence-demo", daemon=True).start()
    wake.wait()
    stack.set_echo(True)
    if not done.is_set():
        say("demo interrupted")
        return EXIT_ERROR
    return result[0]


# -- parser -------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fence",
        description="Enqueue agent runs, follow them, read session histories, and run the "
        "whole runtime on one machine. Settings come from FENCE_* variables.",
        epilog="Exit codes: 0 ok, 1 error, 2 usage, 124 --wait ended before the run.",
    )
    parser.add_argument("--json", action="store_true", help="print JSON for programs")
    parser.add_argument("--redis-url", help="override FENCE_REDIS_URL")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="JSON")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
        "--wait", type=positive_float, metavar="SECONDS", help="wait for the answer"
    )
    submit.add_argument(
        "--strategy",
        choices=[s.value for s in Strategy],
        default=Strategy.ENQUEUE.value,
        help="when the session is busy: enqueue (default), reject or interrupt",
    )
    submit.add_argument("--idempotency-key", help="the same key returns the same run (24 h)")
    submit.add_argument("--metadata", type=json_object, help="JSON object kept with the run")
    submit.set_defaults(handler=cmd_submit)

    status = commands.add_parser("status", parents=[common], help="show a run")
    status.add_argument("run", help="run id")
    status.set_defaults(handler=cmd_status)

    cancel = commands.add_parser("cancel", parents=[common], help="cancel a run")
    cancel.add_argument("run", help="run id")
    cancel.set_defaults(handler=cmd_cancel)

    history = commands.add_parser(
        "history", parents=[common], help="a session's messages (from FENCE_MEMORY)"
    )
    history.add_argument("session", help="session id")
    history.add_argument("--limit", type=positive_int, help="only the newest N messages")
    history.set_defaults(handler=cmd_history)

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

    stack = commands.add_parser(
        "stack",
        parents=[common],
        help="run redis-server, workers, beat, Flower and the gateway here",
        description="Start the whole runtime on this machine, print where everything is, "
        "stream the logs, and stop everything cleanly on Ctrl-C.",
    )
    stack.add_argument("--redis-port", type=port_number, help="default: a free port")
    stack.add_argument("--workers", type=positive_int, default=2, help="worker processes (2)")
    stack.add_argument("--concurrency", type=positive_int, default=2, help="slots per worker (2)")
    stack.add_argument("--memory", choices=["sqlite", "dynamodb"], default="sqlite")
    stack.add_argument("--flower-port", type=port_number, help="default 5555, or any free port")
    stack.add_argument("--gateway-port", type=port_number, help="default 8000, or any free port")
    stack.add_argument("--no-flower", action="store_true", help="do not start Flower")
    stack.add_argument("--no-gateway", action="store_true", help="do not start the gateway")
    stack.add_argument("--dir", default=".fence/stack", help="data and logs (.fence/stack)")
    stack.add_argument("--quiet", action="store_true", help="do not stream process logs")
    stack.add_argument(
        "--print-env",
        action="store_true",
        help="print the environment of the stack in --dir (URLs, token, Flower login) and exit",
    )
    stack.add_argument(
        "--rotate-secrets",
        action="store_true",
        help="make a new gateway token and Flower password (kept across restarts otherwise)",
    )
    stack.add_argument(
        "--shutdown-timeout",
        type=positive_float,
        metavar="SECONDS",
        help="how long workers may finish running turns on Ctrl-C "
        "(default FENCE_TURN_TIMEOUT_S + 30)",
    )
    stack.add_argument("--demo", action="store_true", help="run the demo once the stack is up")
    stack.add_argument(
        "--exit-after-demo", action="store_true", help="stop after the demo (implies --demo)"
    )
    stack.add_argument("--demo-sessions", type=positive_int, default=20)
    stack.add_argument("--demo-turns", type=positive_int, default=5)
    stack.add_argument("--demo-concurrency", type=positive_int, default=8)
    stack.add_argument("--demo-timeout", type=positive_float, default=300.0)
    stack.set_defaults(handler=cmd_stack)

    demo = commands.add_parser(
        "demo",
        parents=[common],
        help="drive traffic at a running stack and verify every history",
    )
    demo.add_argument("--sessions", type=positive_int, default=20, help="sessions (20)")
    demo.add_argument("--turns", type=positive_int, default=5, help="turns per session (5)")
    demo.add_argument("--concurrency", type=positive_int, default=8, help="client threads (8)")
    demo.add_argument("--agent", help="agent name (default FENCE_DEFAULT_AGENT)")
    demo.add_argument(
        "--timeout", type=positive_float, default=300.0, help="seconds for all runs (300)"
    )
    demo.set_defaults(handler=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fence`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "exit_after_demo", False):
        args.demo = True
    settings: Settings | None = None
    as_json = bool(getattr(args, "json", False))
    try:
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
        return 130
    except BrokenPipeError:  # the reader left (``| head``): what it read is all it wanted
        console.silence()
        return EXIT_OK


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


if __name__ == "__main__":
    raise SystemExit(main())
