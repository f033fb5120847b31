"""One real stack for the gateway tests: redis-server, a ``celery worker`` and the
gateway as ``python -m producer.gateway``, each on a free port, driven over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from fence.runs import keys
from producer.stack.launch import start_gateway, start_redis
from producer.stack.processes import ManagedProcess, free_port
from tests.support import REPO, Runtime

TOKENS = ("tok-alpha-1f8e", "tok-beta-77c2")
MAX_BODY = 64 * 1024
MAX_MESSAGE = 4096
HEARTBEAT_S = 0.5
"""Lowered from 15 s, so a test sees an idle stream's keep-alive comments quickly."""


@dataclass
class Stack:
    runtime: Runtime
    gateway: ManagedProcess
    base_url: str
    metrics_dir: Path

    def client(self, token: str | None = TOKENS[0]) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=60)

    def fence_state(self) -> tuple[set[str], list[str]]:
        """Every runtime key, and the active-sessions index: to prove nothing was written."""
        control = self.runtime.control
        return set(control.scan_iter("fence:*")), control.zrange(keys.ACTIVE_SESSIONS, 0, -1)


def launch_gateway(env: dict[str, str], directory: Path, name: str) -> tuple[ManagedProcess, str]:
    """The gateway as its launcher runs it, on a free loopback port."""
    port = free_port()
    process = start_gateway(env, port, cwd=REPO, log_path=directory / f"{name}.log")  # bound
    return process, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("gateway")
    redis_process, redis_url = start_redis(directory / "redis")
    runtime = Runtime(redis_url, directory)
    gateway = None
    try:
        runtime.start_worker(concurrency=2)
        metrics_dir = directory / "prometheus"
        metrics_dir.mkdir()
        env = {
            **runtime.env,
            "FENCE_API_TOKENS": ",".join(TOKENS),
            "FENCE_API_MAX_BODY_BYTES": str(MAX_BODY),
            "FENCE_MAX_MESSAGE_BYTES": str(MAX_MESSAGE),
            "FENCE_API_HEARTBEAT_S": str(HEARTBEAT_S),
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        }
        gateway, base_url = launch_gateway(env, directory, "gateway")
        yield Stack(runtime, gateway, base_url, metrics_dir)
    finally:
        if gateway is not None:
            gateway.stop()
        runtime.stop()
        redis_process.stop()


@pytest.fixture
def client(stack: Stack) -> Iterator[httpx.Client]:
    with stack.client() as client:
        yield client
