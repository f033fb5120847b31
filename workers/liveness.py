"""Is a worker still consuming? A heartbeat file, and the probe that reads it.

A worker process can be up and yet take no task: its consumer stuck after a broker
reconnect (celery #8030), its event loop blocked, the process stopped. Exiting is
what a supervisor sees; this is for the rest. Celery's consumer starts its event
heartbeat (``celery.worker.heartbeat.Heart``) only once it is connected,
stops it when the connection is lost, and fires it from the consumer's event loop,
sending the ``heartbeat_sent`` signal each time. On that signal the worker's main
process rewrites ``FENCE_LIVENESS_FILE`` with its pid, so the file's age is the time
since its consumer loop last ran connected.

``python -m workers.liveness --max-age S`` exits 0 while the file is younger than S
seconds and 1 when it is older or missing; a Kubernetes liveness probe restarts the
container then. ``--kill`` also SIGKILLs the stale worker, for Docker Compose, which
restarts a container only when it exits. Needs the event heartbeat: do not start
the worker with ``--without-heartbeat``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from fence.settings import InvalidSettingsError, get_settings

HEARTBEAT_INTERVAL_S = 2.0
"""How often Celery's consumer sends its heartbeat (``Heart``'s default); a probe's
``--max-age`` must allow a few."""

EXIT_ALIVE = 0
EXIT_STALE = 1
EXIT_UNSET = 2


def record_heartbeat(**_: object) -> None:
    """``heartbeat_sent`` receiver: rewrite the file with this process's pid. Atomic
    (a rename), so the probe never reads half a file."""
    path = get_settings().liveness_file
    if path is None:
        return
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(str(os.getpid()), encoding="ascii")
    os.replace(partial, path)


def forget_heartbeat(**_: object) -> None:
    """``worker_init`` receiver: remove a previous run's file (an emptyDir or a restarted
    container keeps it), so only this run's heartbeats count and ``--kill`` never
    reads a pid that is no longer the worker's."""
    path = get_settings().liveness_file
    if path is not None:
        path.unlink(missing_ok=True)


def check(path: Path, max_age: float, *, kill: bool = False) -> tuple[int, str]:
    """The probe's exit code and the line it prints, for the heartbeat file at ``path``."""
    try:
        age = time.time() - path.stat().st_mtime
        pid = int(path.read_text(encoding="ascii"))
    except (OSError, ValueError):
        return EXIT_STALE, f"stale: no heartbeat in {path} yet (is the worker connected?)"
    if age <= max_age:
        return EXIT_ALIVE, f"alive: worker pid {pid} sent a heartbeat {age:.1f} s ago"
    message = f"stale: worker pid {pid} sent no heartbeat for {age:.1f} s (max {max_age:g} s)"
    if kill:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            message += "; killed it"
    return EXIT_STALE, message


def seconds(text: str) -> float:
    """An argparse ``type``: a number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds (got {text!r})") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 (got {text})")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m workers.liveness",
        description="Exit 0 if the worker's consumer loop sent a heartbeat recently, else 1.",
    )
    parser.add_argument("--max-age", type=seconds, required=True, help="how long one lasts")
    parser.add_argument("--file", type=Path, help="default: FENCE_LIVENESS_FILE")
    parser.add_argument(
        "--kill", action="store_true", help="SIGKILL a stale worker, so its container exits"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        path = args.file or get_settings().liveness_file
    except InvalidSettingsError as error:  # one line, as every entry point says it
        print(f"stale: {error}", file=sys.stderr)
        return EXIT_STALE
    if path is None:
        print("FENCE_LIVENESS_FILE: not set; the worker writes no heartbeat", file=sys.stderr)
        return EXIT_UNSET
    code, message = check(path, args.max_age, kill=args.kill)
    print(message, file=sys.stdout if code == EXIT_ALIVE else sys.stderr)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
