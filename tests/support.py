"""Test helpers shared by the runtime and gateway suites: a ``Runtime`` of real
processes (redis-server, ``celery worker``/``beat``) with SQLite memory in a temp dir."""

from __future__ import annotations

import itertools
import uuid
from pathlib import Path

import redis

from fence.memory.sqlite import SQLiteMemory
from fence.settings import Settings
from producer import Producer
from workers.stack import ManagedProcess, start_beat, start_worker

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

    def __init__(self, redis_url: str, directory: Path) -> None:
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
        fence_vars = {k: v for k, v in self.env.items() if k.startswith("FENCE_")}
        self.settings = Settings(
            **{k.removeprefix("FENCE_").lower(): v for k, v in fence_vars.items()}
        )
        self.control = redis.Redis.from_url(redis_url, decode_responses=True)
        self.processes: list[ManagedProcess] = []
        self._producer: Producer | None = None

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

    def memory(self, session_id: str) -> SQLiteMemory:
        return SQLiteMemory(self.db_path, session_id)

    def contents(self, session_id: str) -> list[str]:
        return [m.content for m in self.memory(session_id).get_messages()]

    def wait_entered(self, key: str, timeout: float = 30) -> None:
        """Block until the model has been called for ``key`` (once more)."""
        assert self.control.blpop([f"test:entered:{key}"], timeout=timeout), key

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


def new_key() -> str:
    return uuid.uuid4().hex[:10]
