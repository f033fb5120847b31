"""Test helpers shared by the runtime and gateway suites: a ``Runtime`` of real
processes (redis-server, ``celery worker``/``beat``) with SQLite memory in a temp dir,
and servers that outage tests kill and restart (``RestartableRedis``, ``MemoryEndpoint``)."""

from __future__ import annotations

import contextlib
import itertools
import signal
import sys
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import boto3
import redis
from prometheus_client.parser import text_string_to_metric_families

from fence.memory.base import BaseMemory
from fence.memory.dynamodb import DynamoDBMemory
from fence.memory.sqlite import SQLiteMemory
from fence.settings import Settings
from producer import Producer
from producer.stack.launch import start_beat, start_redis, start_worker
from producer.stack.processes import ManagedProcess, free_port
from tests.memory import aws_server
from tests.memory.moto_process import READY as MOTO_READY

REPO = Path(__file__).resolve().parents[1]

FAST_RECOVERY = {
    "FENCE_LEASE_MS": "1500",
    "FENCE_LEASE_RENEW_MS": "300",
    "FENCE_STALL_AFTER_S": "1.0",
    "FENCE_SWEEP_INTERVAL_S": "0.5",
    "FENCE_TURN_RETRIES": "2",
    "FENCE_TURN_RETRY_BACKOFF_S": "0.01",
}


class Runtime:
    """Processes and clients of one test runtime."""

    _names = itertools.count(1)

    def __init__(self, redis_url: str, directory: Path, *, control_url: str | None = None) -> None:
        """``control_url``: a Redis of its own for the test agents' control keys, so a
        test can kill the runtime's Redis and still steer and count model calls."""
        self.redis_url = redis_url
        self.directory = directory
        self.db_path = directory / "memory.db"
        self.env = {
            "FENCE_REDIS_URL": redis_url,
            "FENCE_MEMORY": f"sqlite:///{self.db_path}",
            "FENCE_AGENTS": "tests.runtime.agents:registry",
            "FENCE_DEFAULT_AGENT": "controlled",
            "PYTHONPATH": str(REPO),
            **FAST_RECOVERY,
        }
        if control_url:
            self.env["TEST_CONTROL_REDIS_URL"] = control_url
        fence_vars = {k: v for k, v in self.env.items() if k.startswith("FENCE_")}
        self.settings = Settings(
            **{k.removeprefix("FENCE_").lower(): v for k, v in fence_vars.items()}
        )
        self.control = redis.Redis.from_url(control_url or redis_url, decode_responses=True)
        self.processes: list[ManagedProcess] = []
        self._producer: Producer | None = None
        self.open_memory: Callable[[str], BaseMemory] = lambda session_id: SQLiteMemory(
            self.db_path, session_id
        )

    def use_memory(
        self, url: str, open_memory: Callable[[str], BaseMemory], env: Mapping[str, str]
    ) -> None:
        """Point the processes started from now on (and ``memory()``) at another backend."""
        self.env.update({"FENCE_MEMORY": url, **env})
        self.open_memory = open_memory

    def start_worker(self, concurrency: int = 1) -> ManagedProcess:
        name = f"w{next(self._names)}"
        worker = start_worker(
            name,
            self.env,
            concurrency=concurrency,
            cwd=REPO,
            log_path=self.directory / f"{name}.log",
        )
        self.processes.append(worker)
        return worker

    def start_beat(self) -> ManagedProcess:
        beat = start_beat(
            self.env,
            self.directory / "beat-schedule",
            cwd=REPO,
            log_path=self.directory / "beat.log",
        )
        self.processes.append(beat)
        return beat

    @property
    def producer(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(settings=self.settings)
        return self._producer

    def memory(self, session_id: str) -> BaseMemory:
        return self.open_memory(session_id)

    def contents(self, session_id: str) -> list[str]:
        return [m.content for m in self.memory(session_id).get_messages()]

    def wait_entered(self, key: str, timeout: float = 30) -> None:
        """Block until the model has been called for ``key`` (once more)."""
        assert self.control.blpop([f"test:entered:{key}"], timeout=timeout), key

    def wait_committing(self, key: str, timeout: float = 30) -> None:
        """Block until the turn for ``key`` saved its answer and is about to commit."""
        assert self.control.blpop([f"test:committing:{key}"], timeout=timeout), key

    def wait_committed(self, key: str, timeout: float = 30) -> None:
        assert self.control.blpop([f"test:committed:{key}"], timeout=timeout), key

    def release(self, key: str) -> None:
        self.control.rpush(f"test:release:{key}", "go")

    def calls(self, key: str) -> int:
        return int(self.control.get(f"test:calls:{key}") or 0)

    def worker_of(self, run_id: str) -> ManagedProcess:
        hostname = self.producer.run(run_id).status().worker or ""
        return next(p for p in self.processes if p.name == hostname.split("@")[0])

    def stop(self) -> None:
        """Stop every process started here (newest first) and close the Redis clients."""
        for process in reversed(self.processes):
            process.stop()
        if self._producer is not None:
            self._producer.store.redis.close()
        self.control.close()


def fence_script() -> list[str]:
    """The installed ``fence`` console script (what users run), else the module."""
    script = Path(sys.executable).with_name("fence")
    return [str(script)] if script.exists() else [sys.executable, "-m", "producer.cli"]


def new_key() -> str:
    return uuid.uuid4().hex[:10]


class RestartableRedis:
    """The runtime's redis-server with AOF on, which a test may SIGKILL and then
    restart on the same port and data directory: what it acknowledged survives."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.process, self.url = start_redis(directory, append_only=True)
        self.port = int(self.url.rsplit(":", 1)[1].split("/")[0])

    def kill(self) -> None:
        self.process.kill()
        self.process.stop()  # reaps it and closes its log

    def restart(self) -> None:
        self.process, _ = start_redis(self.directory, self.port, append_only=True)

    def stop(self) -> None:
        self.process.stop()


class MemoryEndpoint:
    """A local DynamoDB endpoint (moto, ``tests.memory.moto_process``) as a process of
    its own on a fixed port, so a test can SIGKILL, SIGSTOP and restart it. Its tables
    live in its memory: a restarted endpoint has none."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = self._launch()
        self._client: Any = None

    def _launch(self) -> ManagedProcess:
        argv = [sys.executable, "-m", "tests.memory.moto_process", str(self.port)]
        process = ManagedProcess(
            "moto", argv, env=aws_server.DUMMY_ENV, cwd=REPO, log_path=self.directory / "moto.log"
        )
        process.wait_for(MOTO_READY, timeout=30)
        return process

    def kill(self) -> None:
        self.process.kill()
        self.process.stop()

    def restart(self) -> None:
        """Start again on the same port, with no tables."""
        self.process = self._launch()

    def pause(self) -> None:
        """SIGSTOP: connections are still accepted (by the kernel), never answered."""
        self.process.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        self.resume()  # a stopped process would not hear SIGTERM
        self.process.stop()

    @property
    def client(self) -> Any:
        """A boto3 DynamoDB client for the endpoint, with fake credentials."""
        if self._client is None:
            session = boto3.session.Session(
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
                region_name="us-east-1",
            )
            self._client = session.client("dynamodb", endpoint_url=self.url)
        return self._client

    def create_table(self, table: str) -> None:
        aws_server.create_seed_table(self.client, table)

    def memory_url(self, table: str) -> str:
        """``FENCE_MEMORY`` for ``table`` on this endpoint."""
        return f"dynamodb://{table}?region=us-east-1&endpoint_url={self.url}"

    def opener(self, table: str) -> Callable[[str], BaseMemory]:
        """Open a session's memory in ``table`` from the test process."""
        return lambda session_id: DynamoDBMemory(
            table, primary_key_value=session_id, client=self.client
        )


def scrape_metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


def metric_total(text: str, name: str, **labels: str) -> float:
    """The sum of the samples ``name`` whose labels include ``labels`` (0 if none)."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )
