"""Start and stop the runtime's processes on one machine: redis-server, Celery
workers, beat, Flower and the HTTP gateway. Used by ``fence stack``
(``producer.local_stack``), the tests and the benchmarks, so all of them run
the real programs the same way.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fence import console


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ManagedProcess:
    """A child process in its own process group whose output is watched line by line.

    ``wait_for`` blocks until a line matches (an event, not a sleep), and
    ``kill`` takes down the whole group, the way a crashed machine would.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        log_path: str | os.PathLike[str] | None = None,
        echo: bool = False,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self._launch = {"env": env, "cwd": cwd, "log_path": log_path}
        self._lines: list[str] = []
        self._changed = threading.Condition()
        self._log = open(log_path, "a", encoding="utf-8") if log_path else None  # noqa: SIM115
        self._echo = echo
        self.process = subprocess.Popen(
            self.argv,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, name=f"{name}-output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if self._log:
                self._log.write(line)
                self._log.flush()
            if self._echo:
                console.write(f"[{self.name}] {line}")
            with self._changed:
                self._lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        with self._changed:
            return "".join(self._lines)

    def wait_for(self, pattern: str, timeout: float = 30.0, start: int = 0) -> str:
        """Block until an output line from index ``start`` on matches ``pattern``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            index = start
            while True:
                for line in self._lines[index:]:
                    if regex.search(line):
                        return line
                index = len(self._lines)
                if self.process.poll() is not None and not self._reader.is_alive():
                    raise RuntimeError(
                        f"{self.name} exited ({self.process.returncode}) before printing "
                        f"{pattern!r}; output:\n{''.join(self._lines[-40:])}"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"{self.name} did not print {pattern!r} within {timeout}s; output:\n"
                        + "".join(self._lines[-40:])
                    )
                self._changed.wait(remaining)

    def relaunch(self, *, echo: bool) -> ManagedProcess:
        """A new run of the same program (argv, environment, directory, log file), for a
        supervisor replacing one that exited; ``stop`` this one first."""
        return ManagedProcess(self.name, self.argv, echo=echo, **self._launch)

    def set_echo(self, enabled: bool) -> None:
        """Pause or resume copying output to stdout (log files keep everything)."""
        self._echo = enabled

    def line_count(self) -> int:
        with self._changed:
            return len(self._lines)

    def kill(self) -> None:
        """SIGKILL the whole process group: no shutdown handlers run."""
        self._signal_group(signal.SIGKILL)
        self.process.wait()

    def freeze(self) -> None:
        """SIGSTOP the whole process group: a stall (GC pause, partition) it cannot see."""
        self._signal_group(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT the process group after ``freeze``."""
        self._signal_group(signal.SIGCONT)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM (warm shutdown for Celery), then SIGKILL if it does not exit."""
        if self.process.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.process.wait()
        else:
            self._signal_group(signal.SIGKILL)  # reap children a dead leader left behind
        self._reader.join(timeout=5)
        if self._log:
            self._log.close()
        return self.process.returncode

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)

    def shutdown(self, timeout: float = 20.0) -> int:
        """SIGTERM the leader only, wait, then SIGKILL whatever is left of the group.

        Unlike ``stop`` this lets a Celery worker do a warm shutdown: only the
        main process hears SIGTERM, so its pool children finish their turns
        instead of being killed mid-turn (SIGTERM's default action).
        """
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
        self._signal_group(signal.SIGKILL)
        self.process.wait()
        self._reader.join(timeout=5)
        if self._log:
            self._log.close()
        return self.process.returncode


def redis_server_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError(
            "redis-server not found: install it (Debian/Ubuntu: apt-get install -y "
            "redis-server; macOS: brew install redis)"
        )
    return binary


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
        redis_server_binary(),
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


def celery(
    name: str, args: Sequence[str], env: Mapping[str, str], *, app: str = "workers", **output: Any
) -> ManagedProcess:
    """Run ``celery -A <app> <args>`` with this interpreter."""
    argv = [sys.executable, "-m", "celery", "-A", app, *args]
    return ManagedProcess(name, argv, env=env, **output)


WORKER_READY = r"\bready\."
BEAT_READY = r"beat: Starting"
FLOWER_READY = r"Visit me at"
GATEWAY_READY = r"Uvicorn running on"  # printed once the port is bound
GATEWAY_MODULE = "producer.gateway"
READY_TIMEOUT_S = 60.0


def launch_worker(
    name: str,
    env: Mapping[str, str],
    *,
    concurrency: int = 1,
    loglevel: str = "INFO",
    pool: str = "prefork",
    host: str = "%h",
    app: str = "workers",
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
    return celery(name, args, env, app=app, **output)


def launch_beat(
    env: Mapping[str, str], schedule_path: str | os.PathLike[str], **output: Any
) -> ManagedProcess:
    """Start beat (the recovery sweeper's clock) without waiting for it."""
    args = ["beat", "--schedule", str(schedule_path), "--loglevel", "INFO"]
    return celery("beat", args, env, **output)


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
    args = ["flower", f"--address={address}", f"--port={port}"]
    return celery("flower", args, {**env, "FLOWER_BASIC_AUTH": basic_auth}, **output)


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
    return ready(launch_beat(env, schedule_path, **output), BEAT_READY)


def start_flower(
    env: Mapping[str, str], port: int, basic_auth: str, **options: Any
) -> ManagedProcess:
    """Start Flower and wait until it serves HTTP."""
    return ready(launch_flower(env, port, basic_auth, **options), FLOWER_READY)


def start_gateway(env: Mapping[str, str], port: int, **options: Any) -> ManagedProcess:
    """Start the HTTP gateway and wait until uvicorn accepts connections."""
    return ready(launch_gateway(env, port, **options), GATEWAY_READY)


def gateway_missing() -> str | None:
    """Why the HTTP gateway cannot start here, or None when it can."""
    import importlib.util

    if importlib.util.find_spec(GATEWAY_MODULE) is None:
        return f"{GATEWAY_MODULE} is not in this checkout"
    for module in ("fastapi", "uvicorn"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install -e '.[api]')"
    return None
