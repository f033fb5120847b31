"""Can this worker run turns right now? The readiness probe: Redis and memory answer.

Liveness (``workers.liveness``) asks whether the worker's consumer loop still runs,
and a failing liveness probe restarts the container. Readiness asks whether what a
turn needs answers: Redis (broker, leases, run records) and the memory backend
(``FENCE_MEMORY``). A failing readiness probe only marks the pod not ready, never
restarts it, so a memory outage leaves the workers waiting, not crash-looping. It
is what a rolling update waits for (``maxUnavailable: 0``): a release that cannot
reach its dependencies stops before it replaces a working pod. Workers sit behind
no Service, so readiness routes no traffic.

``python -m workers.readiness`` exits 0 (``ready: redis ok; memory ok``) or 1, with
one line naming each dependency that failed. The checks run at once, each in a
thread of its own, and the probe waits at most ``--timeout`` for them, so it
answers in time even when a dependency accepts connections and never replies.
It reads one session's memory window (``READINESS_SESSION``) and writes nothing.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence

import redis

from fence.memory.url import memory_factory
from fence.settings import InvalidSettingsError, Settings, get_settings
from fence.validation import clip
from workers.liveness import seconds

READINESS_SESSION = "fence-readiness"
DEFAULT_TIMEOUT_S = 3.0
EXIT_READY = 0
EXIT_NOT_READY = 1

Check = Callable[[], object]


def dependency_checks(settings: Settings, timeout: float) -> dict[str, Check]:
    """One check per dependency; each raises when its dependency does not answer."""
    probe = redis.Redis.from_url(
        settings.redis_url, socket_timeout=timeout, socket_connect_timeout=timeout
    )

    def memory() -> None:
        memory_factory(settings.memory)(READINESS_SESSION).get_window(0)

    return {"redis": probe.ping, "memory": memory}


def run_checks(checks: Mapping[str, Check], timeout: float) -> dict[str, str | None]:
    """Each check's failure (``None``: it passed), after at most ``timeout`` seconds.
    A check still running then counts as failed; its daemon thread is left behind."""
    failures: dict[str, str | None] = {}

    def run(name: str, check: Check) -> None:
        try:
            check()
            failures[name] = None
        except Exception as error:  # any failure of a dependency means not ready
            failures[name] = f"{type(error).__name__}: {clip(str(error), 200)}"

    threads = [
        threading.Thread(target=run, args=item, name=f"ready-{item[0]}", daemon=True)
        for item in checks.items()
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    finished = dict(failures)
    return {name: finished.get(name, f"no answer within {timeout:g} s") for name in checks}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m workers.readiness",
        description="Exit 0 if Redis and the memory backend answer, else 1.",
    )
    parser.add_argument(
        "--timeout",
        type=seconds,
        default=DEFAULT_TIMEOUT_S,
        help=f"longest wait for the checks (default {DEFAULT_TIMEOUT_S:g} s)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        checks = dependency_checks(get_settings(), args.timeout)
    except InvalidSettingsError as error:
        print(f"not ready: {error}", file=sys.stderr)
        return EXIT_NOT_READY
    failures = run_checks(checks, args.timeout)
    parts = "; ".join(
        f"{name}: {failure}" if failure else f"{name} ok" for name, failure in failures.items()
    )
    if any(failures.values()):
        print(f"not ready: {parts}", file=sys.stderr)
        return EXIT_NOT_READY
    print(f"ready: {parts}")
    return EXIT_READY


if __name__ == "__main__":
    raise SystemExit(main())
