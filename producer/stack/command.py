"""``fence stack``: start the whole runtime here, print where everything is, stream the
logs, optionally run the demo, and stop everything cleanly on Ctrl-C."""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fence import console
from fence.settings import Settings
from producer.cli import demo
from producer.cli.arguments import port_number, positive_float, positive_int
from producer.cli.errors import EXIT_ERROR, EXIT_OK
from producer.cli.output import aligned
from producer.stack.config import (
    FLOWER_DEFAULT_PORT,
    GATEWAY_DEFAULT_PORT,
    MEMORY_CHOICES,
    SHUTDOWN_GRACE_S,
    StackConfig,
    StackError,
    default_shutdown_timeout,
)
from producer.stack.directory import ENV_FILE
from producer.stack.local import LocalStack
from producer.stack.processes import ManagedProcess

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # SIGHUP: the terminal closed


def add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    stack = commands.add_parser(
        "stack",
        parents=[common],
        help="run redis-server, workers, beat, Flower and the gateway here",
        description="Start the whole runtime on this machine, print where everything is, "
        "stream the logs, and stop everything cleanly on Ctrl-C.",
    )
    count = {"type": positive_int}
    workers, slots = StackConfig.workers, StackConfig.concurrency
    stack.add_argument("--redis-port", type=port_number, help="default: a free port")
    stack.add_argument("--workers", **count, default=workers, help=f"worker processes ({workers})")
    stack.add_argument("--concurrency", **count, default=slots, help=f"slots per worker ({slots})")
    stack.add_argument("--memory", choices=MEMORY_CHOICES, default=StackConfig.memory)
    for service, usual in (("flower", FLOWER_DEFAULT_PORT), ("gateway", GATEWAY_DEFAULT_PORT)):
        stack.add_argument(
            f"--{service}-port", type=port_number, help=f"default {usual}, or any free port"
        )
    stack.add_argument("--no-flower", action="store_true", help="do not start Flower")
    stack.add_argument("--no-gateway", action="store_true", help="do not start the gateway")
    directory = str(StackConfig.directory)
    stack.add_argument("--dir", default=directory, help=f"data and logs ({directory})")
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
        f"(default FENCE_TURN_TIMEOUT_S + {SHUTDOWN_GRACE_S:g})",
    )
    stack.add_argument("--demo", action="store_true", help="run the demo once the stack is up")
    stack.add_argument(
        "--exit-after-demo", action="store_true", help="stop after the demo (implies --demo)"
    )
    stack.add_argument("--demo-sessions", **count, default=demo.SESSIONS)
    stack.add_argument("--demo-turns", **count, default=demo.TURNS)
    stack.add_argument("--demo-concurrency", **count, default=demo.CONCURRENCY)
    stack.add_argument("--demo-timeout", type=positive_float, default=demo.TIMEOUT_S)
    stack.set_defaults(handler=cmd_stack)


def stack_config(args: argparse.Namespace, settings: Settings) -> StackConfig:
    """The stack the command line and the FENCE_* settings ask for."""
    return StackConfig(
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
            else default_shutdown_timeout(settings)
        ),
        cwd=Path.cwd(),
        rotate_secrets=args.rotate_secrets,
    )


def say(text: str) -> None:
    console.say(f"[stack] {text}")  # a closed pipe must not stop the shutdown


class StopRequests:
    """Why the stack is to stop: a signal (Ctrl-C, SIGTERM, SIGHUP), Redis exiting, or
    the end of the demo. ``wake`` is set when one comes; a second signal kills
    every child at once."""

    def __init__(self, stack: LocalStack) -> None:
        self.reasons: list[str] = []
        self.crashed = False
        """A child exited on its own (the exit code is then 1)."""
        self.wake = threading.Event()
        self._stack = stack
        self._signals = 0

    def request(self, reason: str) -> None:
        self.reasons.append(reason)
        self.wake.set()

    def rearm(self) -> None:
        """Wait again after the demo woke ``wake``, unless a stop came meanwhile."""
        self.wake.clear()
        if self.reasons:
            self.wake.set()

    def child_exited(self, process: ManagedProcess) -> None:
        self.crashed = True
        code = process.process.returncode
        self.request(f"{process.name} exited unexpectedly (code {code})")

    def on_signal(self, signum: int, _frame: object) -> None:
        self._signals += 1
        if self._signals == 1:
            self.request(f"{signal.Signals(signum).name} received")
        else:
            say("second signal: killing everything now (running turns are redelivered later)")
            self._stack.kill()

    @contextlib.contextmanager
    def handling_signals(self) -> Iterator[None]:
        previous = {sig: signal.signal(sig, self.on_signal) for sig in STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def cmd_stack(args: argparse.Namespace, settings: Settings) -> int:
    if args.print_env:
        return print_env(Path(args.dir))
    stack = LocalStack(stack_config(args, settings))
    stops = StopRequests(stack)
    code = EXIT_OK
    with stops.handling_signals():
        try:
            say(f"starting in {stack.directory} ...")
            started = time.monotonic()
            stack.start()
            say(f"up in {time.monotonic() - started:.1f} s")
            stack.watch(stops.child_exited, log=say)
            print_stack(stack)
            if (args.demo or args.exit_after_demo) and not stops.wake.is_set():
                code = run_stack_demo(stack, settings, args, stops)
            stops.wake.wait()
            if stops.crashed:
                code = EXIT_ERROR
            say("shutting down: " + "; ".join(stops.reasons))
        finally:
            stopping = time.monotonic()
            stack.stop(log=say)
    say(f"stopped in {time.monotonic() - stopping:.1f} s; no process left behind")
    return code


def print_env(directory: Path) -> int:
    """``--print-env``: the env file of the stack in ``directory``."""
    path = directory / ENV_FILE
    if not path.is_file():
        raise StackError(f"--dir: no stack has started in {directory} (no {path})")
    console.write(path.read_text(encoding="utf-8"))
    return EXIT_OK


def print_stack(stack: LocalStack) -> None:
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
        rows.append(("Console", f"{stack.gateway_url}/console  (log in with the gateway's token)"))
    else:
        rows.append(("Gateway", "off"))
    rows.append(("Memory", stack.memory_url))
    if stack.metrics_urls:
        rows.append(("Metrics", "  ".join(stack.metrics_urls)))
    lines = ["", "fence stack is up", *aligned(rows, indent="  ")]
    lines += [f"  note: {note}" for note in stack.notes]
    lines += [
        "",
        "  From another shell:",
        f"    source {stack.directory / ENV_FILE}",
        "    fence submit my-session 'Hello!' --wait 30",
        "    fence history my-session",
        "    fence demo --sessions 50 --turns 4",
        "",
        "  Ctrl-C stops everything (workers finish their running turns first).",
        "",
    ]
    console.say("\n".join(lines))


def run_stack_demo(
    stack: LocalStack, settings: Settings, args: argparse.Namespace, stops: StopRequests
) -> int:
    """Run the demo in a thread, so Ctrl-C still stops the stack while it runs; then
    stop (``--exit-after-demo``) or keep running."""
    code = _demo_in_thread(stack, settings, args, stops)
    if args.exit_after_demo:
        stops.request("demo finished (--exit-after-demo)")
    elif not stops.reasons:
        stops.rearm()
        say(f"demo done; the stack keeps running. Flower: {stack.flower_url or '-'}")
        say("press Ctrl-C to stop everything")
    return code


def _demo_in_thread(
    stack: LocalStack, settings: Settings, args: argparse.Namespace, stops: StopRequests
) -> int:
    stack_settings = settings.model_copy(
        update={"redis_url": stack.redis_url, "memory": stack.memory_url}
    )
    result: list[int] = []
    done = threading.Event()

    def run() -> None:
        try:
            result.append(
                demo.run_demo_command(
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
            stops.wake.set()

    say("running the demo (process logs paused; they are still written to the log files)")
    stack.set_echo(False)
    threading.Thread(target=run, name="fence-demo", daemon=True).start()
    stops.wake.wait()
    stack.set_echo(True)
    if not done.is_set():
        say("demo interrupted")
        return EXIT_ERROR
    return result[0]
