"""Start the runtime's programs as child processes: redis-server, Celery workers, beat,
Flower and the HTTP gateway, each by its command line (``celery -A workers ...``,
``python -m producer.gateway``), so ``fence stack``, the tests and the benchmarks run
the real programs the same way.

``launch_*`` returns at once, so several programs boot in parallel; ``start_*``
also waits until the program says it is ready.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from producer.stack.processes import ManagedProcess, free_port

WORKER_READY = r"\bready\."
BEAT_READY = r"beat: Starting"
FLOWER_READY = r"Visit me at"
GATEWAY_READY = r"Uvicorn running on"  # printed once the port is bound
GATEWAY_MODULE = "producer.gateway"
CELERY_APP = "workers"
FLOWER_TASK_COLUMNS = "--tasks_columns=name,uuid,kwargs,state,received,runtime,worker"
"""Flower's task list with the kwargs column (Flower hides it by default): each turn's
session id shows, and its search finds a session's turns."""
READY_TIMEOUT_S = 60.0


def start_redis(
    directory: str | os.PathLike[str],
    port: int | None = None,
    *,
    append_only: bool = False,
    appendfsync: str = "always",
) -> tuple[ManagedProcess, str]:
    """Start a private redis-server on loopback; return it and its URL.

    With ``append_only``, ``appendfsync always`` by default: Redis fsyncs each
    write before it replies, so an accepted run survives even a host crash.
    """
    port = port or free_port()
    Path(directory).mkdir(parents=True, exist_ok=True)
    argv = [
        _redis_server(),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(directory),
        "--save", "",
        "--appendonly", "yes" if append_only else "no",
        "--appendfsync", appendfsync,
    ]  # fmt: skip
    process = ManagedProcess("redis", argv, log_path=Path(directory) / "redis.log")
    process.wait_for(r"Ready to accept connections", timeout=20)
    return process, f"redis://127.0.0.1:{port}/0"


def _redis_server() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError(
            "redis-server not found: install it (Debian/Ubuntu: apt-get install -y "
            "redis-server; macOS: brew install redis)"
        )
    return binary


def _celery(
    name: str, args: Sequence[str], env: Mapping[str, str], *, app: str = CELERY_APP, **output: Any
) -> ManagedProcess:
    """Run ``celery -A <app> <args>`` with this interpreter."""
    argv = [sys.executable, "-m", "celery", "-A", app, *args]
    return ManagedProcess(name, argv, env=env, **output)


def launch_worker(
    name: str,
    env: Mapping[str, str],
    *,
    concurrency: int = 1,
    loglevel: str = "INFO",
    pool: str = "prefork",
    host: str = "%h",
    app: str = CELERY_APP,
    **output: Any,
) -> ManagedProcess:
    """Start a worker ``<name>@<host>`` without waiting, so several can boot in parallel.

    ``output`` takes ``cwd``, ``log_path`` and ``echo``, as ``ManagedProcess`` does.
    """
    args = [
        "worker",
        "--hostname", f"{name}@{host}",
        "--pool", pool,
        "--concurrency", str(concurrency),
        "--loglevel", loglevel,
        "--without-mingle",
        "--without-gossip",
    ]  # fmt: skip
    return _celery(name, args, env, app=app, **output)


def launch_beat(
    env: Mapping[str, str], schedule_path: str | os.PathLike[str], **output: Any
) -> ManagedProcess:
    """Start beat (the recovery sweeper's clock) without waiting for it."""
    args = ["beat", "--schedule", str(schedule_path), "--loglevel", "INFO"]
    return _celery("beat", args, env, **output)


def launch_flower(
    env: Mapping[str, str],
    port: int,
    basic_auth: str,
    *,
    address: str = "127.0.0.1",
    **output: Any,
) -> ManagedProcess:
    """Start Flower with basic auth on; the credentials travel in the environment
    (``FLOWER_BASIC_AUTH``), not on the command line where ``ps`` shows them."""
    if ":" not in basic_auth:
        raise ValueError("basic_auth: write user:password")
    args = ["flower", f"--address={address}", f"--port={port}", FLOWER_TASK_COLUMNS]
    return _celery("flower", args, {**env, "FLOWER_BASIC_AUTH": basic_auth}, **output)


def launch_gateway(
    env: Mapping[str, str], port: int, *, host: str = "127.0.0.1", **output: Any
) -> ManagedProcess:
    """Start ``python -m producer.gateway`` without waiting for it."""
    argv = [sys.executable, "-m", GATEWAY_MODULE, "--host", host, "--port", str(port)]
    return ManagedProcess("gateway", argv, env=env, **output)


def ready(process: ManagedProcess, pattern: str) -> ManagedProcess:
    """Wait until ``process`` prints ``pattern``; return it."""
    process.wait_for(pattern, timeout=READY_TIMEOUT_S)
    return process


def start_worker(name: str, env: Mapping[str, str], **options: Any) -> ManagedProcess:
    """Start a worker and wait until it is ready to take tasks."""
    return ready(launch_worker(name, env, **options), WORKER_READY)


def start_beat(
    env: Mapping[str, str], schedule_path: str | os.PathLike[str], **output: Any
) -> ManagedProcess:
    """Start beat and wait until it schedules."""
    return ready(launch_beat(env, schedule_path, **output), BEAT_READY)


def start_gateway(env: Mapping[str, str], port: int, **options: Any) -> ManagedProcess:
    """Start the HTTP gateway and wait until uvicorn accepts connections."""
    return ready(launch_gateway(env, port, **options), GATEWAY_READY)


def gateway_missing() -> str | None:
    """Why the HTTP gateway cannot start here, or None when it can."""
    if importlib.util.find_spec(GATEWAY_MODULE) is None:
        return f"{GATEWAY_MODULE} is not in this checkout"
    for module in ("fastapi", "uvicorn"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install -e '.[api]')"
    return None
