"""``LocalStack``: the whole runtime on one machine — redis-server, workers, beat,
Flower, the HTTP gateway and a memory backend — started, watched and shut down
together, leaving no process behind."""

from __future__ import annotations

import functools
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from producer.stack.config import (
    FLOWER_DEFAULT_PORT,
    GATEWAY_DEFAULT_PORT,
    StackConfig,
    StackError,
    pick_port,
)
from producer.stack.directory import StackDirectory
from producer.stack.dynamodb import LOCAL_AWS_ENV, LocalDynamoDB
from producer.stack.launch import (
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
from producer.stack.processes import ManagedProcess

RESTART_FIRST_DELAY_S = 1.0
RESTART_MAX_DELAY_S = 30.0
RESTART_STABLE_S = 60.0
"""A child that exits is restarted after 1 s, then 2, 4 ... up to 30 s while it keeps
exiting; one that ran for a minute before exiting starts again at 1 s."""
START_TIMEOUT_S = 90.0

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


class LocalStack:
    """The whole runtime on one machine: redis-server (AOF on), N Celery workers,
    beat, Flower and the HTTP gateway, with SQLite or local DynamoDB memory.

    ``start`` brings it up (everything or nothing); ``stop`` takes it down in
    the order that loses no turn: workers first with a warm shutdown, then
    beat, Flower and the gateway, then the memory endpoint, then Redis.
    """

    def __init__(self, config: StackConfig) -> None:
        config.check()
        self.config = config
        self.files = StackDirectory(config.directory)
        self.directory = self.files.path
        self.logs = self.files.logs
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
        self._ports: set[int] = set()

    @property
    def processes(self) -> list[ManagedProcess]:
        """Every child process, in start order."""
        return [p for p in (self.redis, *self.workers, *self.services) if p is not None]

    @property
    def api_token(self) -> str:
        """One of the gateway's bearer tokens."""
        return self.api_tokens.split(",")[0].strip()

    # -- start ----------------------------------------------------------------

    def start(self) -> None:
        """Start everything, or stop what started and raise ``StackError``."""
        self.files.lock()
        if note := self.files.stop_leftovers():
            self.notes.append(note)
        stored = self.files.secrets(rotate=self.config.rotate_secrets)
        self.flower_auth = self.config.flower_auth or stored["flower_auth"]
        self.api_tokens = self.config.api_tokens or stored["api_tokens"]
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        redis_port, flower_port, gateway_port = self._pick_ports()
        self._start_redis(redis_port)
        self.env = {**self._memory_env(), **self.config.env}
        for index in range(1, self.config.workers + 1):
            name = f"worker-{index}"
            worker_env = {**self.env, **self._metrics_env(name)}
            worker = launch_worker(
                name, worker_env, concurrency=self.config.concurrency, **self._output(name)
            )
            self.workers.append(worker)
            self._ready[name] = WORKER_READY
        schedule = self.directory / "beat-schedule"
        self._service(launch_beat(self.env, schedule, **self._output("beat")), BEAT_READY)
        if flower_port is not None:
            output = self._output("flower")
            flower = launch_flower(self.env, flower_port, self.flower_auth, **output)
            self._service(flower, FLOWER_READY)
            self.flower_url = f"http://127.0.0.1:{flower_port}"
        if gateway_port is not None:
            gateway_env = {**self.env, "FENCE_API_TOKENS": self.api_tokens}
            gateway = launch_gateway(gateway_env, gateway_port, **self._output("gateway"))
            self._service(gateway, GATEWAY_READY)
            self.gateway_url = f"http://127.0.0.1:{gateway_port}"
        self.files.remember(self.processes)
        for process in (*self.workers, *self.services):
            try:
                process.wait_for(self._ready[process.name], timeout=START_TIMEOUT_S)
            except (RuntimeError, TimeoutError) as error:
                raise StackError(
                    f"{process.name} did not start (log: {self.logs / process.name}.log): {error}"
                ) from None
        self.files.write_env(self.shell_env())
        self.files.remember(self.processes)

    def _pick_ports(self) -> tuple[int, int | None, int | None]:
        """Redis's, Flower's and the gateway's ports (None: not started), all checked
        before anything starts, so a port in use fails the start at once."""
        config = self.config
        redis_port = pick_port(config.redis_port, None, "--redis-port", self._ports)
        flower_port = (
            pick_port(config.flower_port, FLOWER_DEFAULT_PORT, "--flower-port", self._ports)
            if config.flower
            else None
        )
        missing = gateway_missing() if config.gateway else None
        if missing:
            self.notes.append(f"gateway skipped: {missing}")
        gateway_port = (
            pick_port(config.gateway_port, GATEWAY_DEFAULT_PORT, "--gateway-port", self._ports)
            if config.gateway and not missing
            else None
        )
        return redis_port, flower_port, gateway_port

    def _start_redis(self, port: int) -> None:
        try:
            self.redis, self.redis_url = start_redis(
                self.directory / "redis", port, append_only=True
            )
        except RuntimeError as error:
            raise StackError(f"redis-server did not start: {error}") from None
        self.files.remember(self.processes)

    def _memory_env(self) -> dict[str, str]:
        """The children's environment for Redis and the memory backend (started here)."""
        env = {"FENCE_REDIS_URL": self.redis_url, "PYTHONUNBUFFERED": "1"}
        if self.config.memory == "dynamodb":
            self.dynamodb = LocalDynamoDB()
            self.dynamodb.start()
            self.memory_url = self.dynamodb.create_memory_table()
            env |= LOCAL_AWS_ENV
        else:
            self.memory_url = f"sqlite:///{self.directory / 'memory.db'}"
        return {**env, "FENCE_MEMORY": self.memory_url}

    def _service(self, process: ManagedProcess, ready: str) -> None:
        self.services.append(process)
        self._ready[process.name] = ready

    def _output(self, name: str) -> dict[str, Any]:
        """Where process ``name`` runs and writes (``ManagedProcess``'s output options)."""
        return {
            "cwd": self.config.cwd,
            "log_path": self.logs / f"{name}.log",
            "echo": self.config.echo,
        }

    def _metrics_env(self, name: str) -> dict[str, str]:
        """A Prometheus port and multiprocess directory per worker."""
        port = pick_port(0, None, "metrics", self._ports)
        directory = self.directory / "metrics" / name
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        self.metrics_urls.append(f"http://127.0.0.1:{port}/metrics")
        return {"FENCE_METRICS_PORT": str(port), "PROMETHEUS_MULTIPROC_DIR": str(directory)}

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

    # -- run ------------------------------------------------------------------

    def watch(self, on_exit: Callable[[ManagedProcess], None], log: Log = _quiet) -> None:
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

    def _supervise(self, process: ManagedProcess, log: Log) -> None:
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
                process.wait_for(self._ready[process.name], timeout=START_TIMEOUT_S)
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
            self.files.remember(self.processes)
            return new

    def set_echo(self, enabled: bool) -> None:
        """Pause or resume streaming the children's logs (their log files keep all)."""
        self._echo = enabled and self.config.echo
        for process in (*self.workers, *self.services):
            process.set_echo(self._echo)

    # -- stop -----------------------------------------------------------------

    def stop(self, log: Log = _quiet) -> None:
        """Take everything down in order; leave no process behind. Safe to call twice."""
        self._stopping.set()
        with self._replacing:  # a restart under way finishes first, so it is stopped too
            pass
        timeout = self.config.shutdown_timeout
        if self.workers:
            log(
                f"warm shutdown of {len(self.workers)} worker(s): running turns finish "
                f"(up to {timeout:g} s)"
            )
        _in_parallel([functools.partial(w.shutdown, timeout) for w in self.workers])
        if self.services:
            log("stopping " + ", ".join(p.name for p in self.services))
        _in_parallel([functools.partial(p.shutdown, 15) for p in self.services])
        if self.dynamodb is not None:
            log("stopping the local DynamoDB endpoint")
            self.dynamodb.stop()
        if self.redis is not None:
            log("stopping redis-server (AOF flushed on shutdown)")
            self.redis.shutdown(15)
        self.files.forget()
        self.files.unlock()

    def kill(self) -> None:
        """SIGKILL every child group at once (a second Ctrl-C)."""
        self._stopping.set()
        for process in self.processes:
            process.signal_group(signal.SIGKILL)


def _in_parallel(calls: Sequence[Callable[[], object]]) -> None:
    threads = [threading.Thread(target=call, daemon=True) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
