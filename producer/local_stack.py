"""``fence stack``: the whole runtime on one machine — redis-server, workers,
beat, Flower, the HTTP gateway and a memory backend — started, watched and
shut down together, leaving no process behind."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import secrets
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workers.stack import ManagedProcess

# ``workers.stack`` is imported where a stack starts, not here: importing the
# ``workers`` package builds the Celery app from the settings, which the other
# ``fence`` commands neither need nor may fail on (they report bad settings in a line).

RESTART_FIRST_DELAY_S = 1.0
RESTART_MAX_DELAY_S = 30.0
RESTART_STABLE_S = 60.0
"""A child that exits is restarted after 1 s, then 2, 4 ... up to 30 s while it keeps
exiting; one that ran for a minute before exiting starts again at 1 s."""


def port_is_free(port: int) -> bool:
    """Whether a server could listen on ``port`` on loopback right now."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class StackError(RuntimeError):
    """The local stack cannot start; the message says what to change."""


class LocalDynamoDB:
    """moto's DynamoDB on loopback, inside this process, one request at a time.

    Serialised on purpose: moto's ``TransactWriteItems`` restores a table copy
    when a condition fails, erasing concurrent writes; real DynamoDB isolates
    transactions. Its data lives in memory and is gone when the stack stops.
    """

    def __init__(self, port: int = 0) -> None:
        try:
            from moto.moto_server.werkzeug_app import (
                DomainDispatcherApplication,
                MotoRequestHandler,
                create_backend_app,
            )
            from werkzeug.serving import make_server
        except ImportError as error:
            raise StackError(
                f"--memory dynamodb needs moto's server ({error}): pip install 'moto[server]' "
                "(it is in the dev extra: pip install -e '.[dev]')"
            ) from None
        import logging

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        app = DomainDispatcherApplication(create_backend_app)
        lock = threading.Lock()

        def serialised(environ, start_response):  # type: ignore[no-untyped-def]
            with lock:
                return list(app(environ, start_response))

        self._server = make_server(
            "127.0.0.1", port, serialised, threaded=True, request_handler=MotoRequestHandler
        )
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="local-dynamodb", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()


LOCAL_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "fence-local",
    "AWS_SECRET_ACCESS_KEY": "fence-local",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
"""Dummy credentials for the local DynamoDB endpoint, so no real account is used."""

LOCAL_TABLE = "agent-memory"


def _default_shutdown_timeout() -> float:
    from fence.settings import get_settings

    return get_settings().turn_timeout_s + 30


@dataclass
class StackConfig:
    """What ``fence stack`` runs. Ports: None picks the usual port if free, else any;
    0 picks any free port; a number must be free."""

    directory: Path = Path(".fence/stack")
    redis_port: int | None = None
    workers: int = 2
    concurrency: int = 2
    memory: str = "sqlite"
    flower: bool = True
    flower_port: int | None = None
    flower_auth: str | None = None
    gateway: bool = True
    gateway_port: int | None = None
    api_tokens: str | None = None
    echo: bool = True
    shutdown_timeout: float = field(default_factory=_default_shutdown_timeout)
    cwd: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    rotate_secrets: bool = False
    """Make a new gateway token and Flower password instead of reusing the stored ones."""


ENV_FILE = "env"
"""In the stack directory: ``source`` it to use the stack from another shell."""
SECRETS_FILE = "secrets.json"
"""In the stack directory, mode 0600: the gateway token and Flower login it reuses."""
FLOWER_DEFAULT_PORT = 5555
GATEWAY_DEFAULT_PORT = 8000
MEMORY_CHOICES = ("sqlite", "dynamodb")


def pick_port(
    requested: int | None, usual: int | None, option: str, taken: set[int] | None = None
) -> int:
    """The port to use for ``option`` (see ``StackConfig``), not one of ``taken``."""
    from workers.stack import free_port

    taken = taken if taken is not None else set()
    if requested == 0 or (requested is None and (usual is None or usual in taken)):
        port = free_port()
        while port in taken:
            port = free_port()
        taken.add(port)
        return port
    if requested is not None:
        if requested in taken:
            raise StackError(f"{option}: port {requested} is already used by this stack")
        if not 0 < requested < 65536:
            raise StackError(f"{option}: must be a TCP port 1-65535 or 0 for any (got {requested})")
        if not port_is_free(requested):
            raise StackError(f"{option}: port {requested} is in use; choose another, or 0 for any")
        taken.add(requested)
        return requested
    if usual is not None and port_is_free(usual):
        taken.add(usual)
        return usual
    return pick_port(0, None, option, taken)


class LocalStack:
    """The whole runtime on one machine: redis-server (AOF on), N Celery workers,
    beat, Flower and the HTTP gateway, with SQLite or local DynamoDB memory.

    ``start`` brings it up (everything or nothing); ``stop`` takes it down in
    the order that loses no turn: workers first with a warm shutdown, then
    beat, Flower and the gateway, then the memory endpoint, then Redis.
    """

    def __init__(self, config: StackConfig) -> None:
        if config.workers < 1:
            raise StackError(f"--workers: must be at least 1 (got {config.workers})")
        if config.concurrency < 1:
            raise StackError(f"--concurrency: must be at least 1 (got {config.concurrency})")
        if config.memory not in MEMORY_CHOICES:
            raise StackError(
                f"--memory: must be one of {', '.join(MEMORY_CHOICES)} (got {config.memory!r})"
            )
        if config.flower_auth is not None and ":" not in config.flower_auth:
            raise StackError("FENCE_FLOWER_BASIC_AUTH: write user:password")
        self.config = config
        self.directory = Path(config.directory).resolve()
        self.logs = self.directory / "logs"
        self.redis: ManagedProcess | None = None
        self.redis_url = ""
        self.memory_url = ""
        self.workers: list[ManagedProcess] = []
        self.metrics_urls: list[str] = []
        self.services: list[ManagedProcess] = []
        self.dynamodb: LocalDynamoDB | None = None
        self.flower_url: str | None = None
        self.flower_auth = config.flower_auth or ""
        self.gateway_url: str | None = None
        self.api_tokens = config.api_tokens or ""
        """The gateway's bearer tokens: FENCE_API_TOKENS, else the stack's own (``start``)."""
        self.notes: list[str] = []
        self.env: dict[str, str] = {}
        self._ready: dict[str, str] = {}
        """What each child prints once it serves, by name (a restarted one is awaited too)."""
        self._echo = config.echo
        self._stopping = threading.Event()
        self._replacing = threading.Lock()
        self._lock_file: Any = None
        self._ports: set[int] = set()

    @property
    def processes(self) -> list[ManagedProcess]:
        """Every child process, in start order."""
        return [p for p in (self.redis, *self.workers, *self.services) if p is not None]

    # -- start ----------------------------------------------------------------

    def start(self) -> None:
        """Start everything, or stop what started and raise ``StackError``."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        self._take_lock()
        self._stop_leftovers()
        stored = self._secrets()
        self.flower_auth = self.config.flower_auth or stored["flower_auth"]
        self.api_tokens = self.config.api_tokens or stored["api_tokens"]
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    @property
    def api_token(self) -> str:
        """One of the gateway's bearer tokens."""
        return self.api_tokens.split(",")[0].strip()

    def _secrets(self) -> dict[str, str]:
        """The gateway token and Flower's login of this stack directory: made once, kept in
        a file only the user can read, and reused by every start (so a shell that sourced
        the env file keeps working) until ``rotate_secrets``."""
        path = self.directory / SECRETS_FILE
        stored: dict[str, str] = {}
        if not self.config.rotate_secrets:
            with contextlib.suppress(OSError, ValueError):
                stored = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(stored, dict) or not {"api_tokens", "flower_auth"} <= stored.keys():
            stored = {
                "api_tokens": secrets.token_urlsafe(24),
                "flower_auth": f"fence:{secrets.token_urlsafe(12)}",
            }
            _write_private(path, json.dumps(stored))
        return stored

    def _take_lock(self) -> None:
        import fcntl

        self._lock_file = open(self.directory / "stack.lock", "a+")  # noqa: SIM115
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock_file.close()
            self._lock_file = None
            raise StackError(
                f"--dir: another fence stack is running with {self.directory}; stop it "
                "or pass another --dir"
            ) from None

    def _start(self) -> None:
        from workers.stack import (
            BEAT_READY,
            FLOWER_READY,
            GATEWAY_READY,
            WORKER_READY,
            gateway_missing,
            launch_beat,
            launch_flower,
            launch_gateway,
            launch_worker,
            start_redis,
        )

        config = self.config
        taken = self._ports
        redis_port = pick_port(config.redis_port, None, "--redis-port", taken)
        flower_port = (
            pick_port(config.flower_port, FLOWER_DEFAULT_PORT, "--flower-port", taken)
            if config.flower
            else None
        )
        missing = gateway_missing() if config.gateway else None
        if missing:
            self.notes.append(f"gateway skipped: {missing}")
        gateway_port = (
            pick_port(config.gateway_port, GATEWAY_DEFAULT_PORT, "--gateway-port", taken)
            if config.gateway and not missing
            else None
        )

        try:
            self.redis, self.redis_url = start_redis(
                self.directory / "redis", redis_port, append_only=True
            )
        except RuntimeError as error:
            raise StackError(f"redis-server did not start: {error}") from None
        self._remember()

        env = {"FENCE_REDIS_URL": self.redis_url, "PYTHONUNBUFFERED": "1"}
        if config.memory == "dynamodb":
            env.update(self._start_dynamodb())
        else:
            self.memory_url = f"sqlite:///{self.directory / 'memory.db'}"
        env["FENCE_MEMORY"] = self.memory_url
        self.env = {**env, **config.env}

        for index in range(1, config.workers + 1):
            name = f"worker-{index}"
            self.workers.append(
                launch_worker(
                    name,
                    {**self.env, **self._metrics_env(name)},
                    concurrency=config.concurrency,
                    **self._output(name),
                )
            )
        waits: list[tuple[ManagedProcess, str]] = [(w, WORKER_READY) for w in self.workers]

        def service(process: ManagedProcess, ready: str) -> None:
            self.services.append(process)
            waits.append((process, ready))

        schedule = self.directory / "beat-schedule"
        service(launch_beat(self.env, schedule, **self._output("beat")), BEAT_READY)
        if flower_port is not None:
            flower = launch_flower(
                self.env, flower_port, self.flower_auth, **self._output("flower")
            )
            service(flower, FLOWER_READY)
            self.flower_url = f"http://127.0.0.1:{flower_port}"
        if gateway_port is not None:
            gateway_env = {**self.env, "FENCE_API_TOKENS": self.api_tokens}
            gateway = launch_gateway(gateway_env, gateway_port, **self._output("gateway"))
            service(gateway, GATEWAY_READY)
            self.gateway_url = f"http://127.0.0.1:{gateway_port}"
        self._remember()
        self._ready = {process.name: ready for process, ready in waits}
        for process, ready in waits:
            try:
                process.wait_for(ready, timeout=90)
            except (RuntimeError, TimeoutError) as error:
                raise StackError(
                    f"{process.name} did not start (log: {self.logs / process.name}.log): {error}"
                ) from None
        self._write_env_file()
        self._remember()

    def _output(self, name: str) -> dict[str, Any]:
        """Where process ``name`` runs and writes (``ManagedProcess``'s output options)."""
        return {
            "cwd": self.config.cwd,
            "log_path": self.logs / f"{name}.log",
            "echo": self.config.echo,
        }

    def _remember(self) -> None:
        """Record the children (pid and start time), so a later stack on this directory
        can stop them if this one is killed before it could."""
        record = {p.name: [p.process.pid, _start_time(p.process.pid)] for p in self.processes}
        (self.directory / "pids.json").write_text(json.dumps(record), encoding="utf-8")

    def _stop_leftovers(self) -> None:
        """Stop the children of a previous stack on this directory that died without
        stopping them (SIGKILL, a closed terminal): two Redis servers must never
        share one AOF directory."""
        path = self.directory / "pids.json"
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        leftovers = {
            name: pid
            for name, (pid, started) in record.items()
            if started is not None and _start_time(pid) == started
        }
        if leftovers:
            self.notes.append(
                "stopped processes a previous stack on this directory left running: "
                + ", ".join(f"{name} (pid {pid})" for name, pid in leftovers.items())
            )
            for pid in leftovers.values():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and any(
                _start_time(pid) is not None for pid in leftovers.values()
            ):
                time.sleep(0.1)
            for pid in leftovers.values():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
        path.unlink(missing_ok=True)

    def _metrics_env(self, name: str) -> dict[str, str]:
        """A Prometheus port and multiprocess directory per worker."""
        port = pick_port(0, None, "metrics", self._ports)
        directory = self.directory / "metrics" / name
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        self.metrics_urls.append(f"http://127.0.0.1:{port}/metrics")
        return {"FENCE_METRICS_PORT": str(port), "PROMETHEUS_MULTIPROC_DIR": str(directory)}

    def _start_dynamodb(self) -> dict[str, str]:
        self.dynamodb = LocalDynamoDB()
        self.dynamodb.start()
        os.environ.update(LOCAL_AWS_ENV)  # this process reads the table too (demo, checks)
        from fence.memory.aws_setup import create_dynamodb_table

        try:
            create_dynamodb_table(LOCAL_TABLE, endpoint_url=self.dynamodb.url, region="us-east-1")
        except Exception as error:
            raise StackError(f"--memory dynamodb: could not create the table: {error}") from None
        self.memory_url = (
            f"dynamodb://{LOCAL_TABLE}?region=us-east-1&endpoint_url={self.dynamodb.url}"
        )
        return dict(LOCAL_AWS_ENV)

    def shell_env(self) -> dict[str, str]:
        """What a shell needs to use this stack: the ``fence`` command on its PATH, every
        FENCE_* setting the stack runs with (and PYTHONPATH), and where the gateway and
        Flower are, with their credentials."""
        env = {"PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
        env |= {
            name: value
            for name, value in os.environ.items()
            if name.startswith("FENCE_") or name == "PYTHONPATH"  # FENCE_AGENTS may need it
        }
        env |= {name: value for name, value in self.env.items() if name != "PYTHONUNBUFFERED"}
        if self.gateway_url:
            env |= {"FENCE_GATEWAY_URL": self.gateway_url, "FENCE_API_TOKENS": self.api_tokens}
        if self.flower_url:
            env |= {
                "FENCE_FLOWER_URL": self.flower_url,
                "FENCE_FLOWER_BASIC_AUTH": self.flower_auth,
            }
        return env

    def _write_env_file(self) -> None:
        import shlex

        lines = [f"export {name}={shlex.quote(value)}" for name, value in self.shell_env().items()]
        _write_private(self.directory / ENV_FILE, "\n".join(lines) + "\n")

    # -- run ------------------------------------------------------------------

    def watch(
        self,
        on_exit: Callable[[ManagedProcess], None],
        log: Callable[[str], None] = lambda _: None,
    ) -> None:
        """Supervise the children from threads until ``stop``: restart a worker, beat,
        Flower or the gateway that exits, with backoff, saying so through ``log``.
        Redis cannot be replaced under its clients: if it exits, ``on_exit(process)``."""
        for process in self.processes:
            if process is self.redis:
                target = functools.partial(self._report_exit, process, on_exit)
            else:
                target = functools.partial(self._supervise, process, log)
            threading.Thread(target=target, name=f"watch-{process.name}", daemon=True).start()

    def _report_exit(
        self, process: ManagedProcess, on_exit: Callable[[ManagedProcess], None]
    ) -> None:
        process.process.wait()
        if not self._stopping.is_set():
            on_exit(process)

    def _supervise(self, process: ManagedProcess, log: Callable[[str], None]) -> None:
        restarts = 0
        while True:
            started = time.monotonic()
            code = process.process.wait()
            if self._stopping.is_set():
                return
            restarts = 1 if time.monotonic() - started >= RESTART_STABLE_S else restarts + 1
            delay = min(RESTART_MAX_DELAY_S, RESTART_FIRST_DELAY_S * 2 ** (restarts - 1))
            log(
                f"{process.name} exited unexpectedly (code {code}); restarting it in "
                f"{delay:g} s (restart {restarts} in a row)"
            )
            if self._stopping.wait(delay) or (process := self._replace(process)) is None:
                return
            try:
                process.wait_for(self._ready[process.name], timeout=90)
            except (RuntimeError, TimeoutError):
                continue  # exited while starting (the loop restarts it) or is slow (watched)
            log(f"{process.name} restarted (pid {process.process.pid})")

    def _replace(self, process: ManagedProcess) -> ManagedProcess | None:
        """Start a new run of the exited ``process`` in its place, unless ``stop`` began."""
        with self._replacing:
            if self._stopping.is_set():
                return None
            process.stop()  # kill what the dead leader left in its group (pool children)
            new = process.relaunch(echo=self._echo)
            group = self.workers if process in self.workers else self.services
            group[group.index(process)] = new
            self._remember()
            return new

    def set_echo(self, enabled: bool) -> None:
        """Pause or resume streaming the children's logs (their log files keep all)."""
        self._echo = enabled and self.config.echo
        for process in (*self.workers, *self.services):
            process.set_echo(self._echo)

    # -- stop -----------------------------------------------------------------

    def stop(self, log: Callable[[str], None] = lambda _: None) -> None:
        """Take everything down in order; leave no process behind. Safe to call twice."""
        self._stopping.set()
        with self._replacing:  # a restart under way finishes first, so it is stopped too
            pass
        if self.workers:
            log(
                f"warm shutdown of {len(self.workers)} worker(s): running turns finish "
                f"(up to {self.config.shutdown_timeout:g} s)"
            )
        _in_parallel([lambda w=w: w.shutdown(self.config.shutdown_timeout) for w in self.workers])
        if self.services:
            log("stopping " + ", ".join(p.name for p in self.services))
        _in_parallel([lambda p=p: p.shutdown(15) for p in self.services])
        if self.dynamodb is not None:
            log("stopping the local DynamoDB endpoint")
            self.dynamodb.stop()
        if self.redis is not None:
            log("stopping redis-server (AOF flushed on shutdown)")
            self.redis.shutdown(15)
        (self.directory / "pids.json").unlink(missing_ok=True)
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def kill(self) -> None:
        """SIGKILL every child group at once (a second Ctrl-C)."""
        self._stopping.set()
        for process in self.processes:
            process._signal_group(signal.SIGKILL)


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, readable and writable by this user only (it holds secrets)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # also when the file existed with other bits
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)


def _start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot), or None if it is gone or a zombie.

    Compared with a recorded value it tells a process from a later one that
    reused its pid.
    """
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as file:
            fields = file.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else int(fields[19])


def _in_parallel(calls: Sequence[Callable[[], object]]) -> None:
    threads = [threading.Thread(target=call, daemon=True) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
