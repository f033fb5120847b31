"""The worker's readiness probe (``python -m workers.readiness``) against real
dependencies and real faults: a DynamoDB endpoint that is SIGSTOPped (accepts
connections, never answers) and a Redis that is SIGKILLed. Readiness follows the
dependencies, bounded in time; liveness keeps following the worker process, so a
memory outage makes workers not ready without giving Kubernetes cause to restart them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from producer.stack.processes import free_port
from tests.runtime.conftest import on_memory_endpoint
from tests.runtime.test_liveness import mtime, until, with_liveness
from tests.support import REPO, Runtime
from tests.test_settings_secrets import _clean_environ, leaked, secret_env
from workers.liveness import EXIT_ALIVE
from workers.readiness import EXIT_NOT_READY, EXIT_READY

TIMEOUT_S = 1.0
STARTUP_S = 5.0  # an interpreter importing redis and boto3, on a busy 2-core machine


def readiness(env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    """The probe as Kubernetes runs it, and how long it took to answer."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "workers.readiness", "--timeout", str(TIMEOUT_S)],
        env={**_clean_environ(), **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result, time.monotonic() - started


def liveness(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers.liveness", "--max-age", "60"],
        env={**os.environ, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def probed_runtime(restartable_redis, memory_endpoint, redis_url, tmp_path) -> Iterator[Runtime]:
    """A runtime on a Redis and a DynamoDB endpoint that the test may break."""
    with on_memory_endpoint(
        memory_endpoint, restartable_redis.url, tmp_path, control_url=redis_url
    ) as runtime:
        yield runtime


def test_readiness_follows_the_dependencies_and_liveness_the_worker(
    probed_runtime, memory_endpoint, restartable_redis
):
    runtime = probed_runtime
    heartbeat = with_liveness(runtime)
    worker = runtime.start_worker()
    until(lambda: mtime(heartbeat) is not None, "the worker's first heartbeat")

    ready, _ = readiness(runtime.env)
    assert (ready.returncode, ready.stdout.strip()) == (EXIT_READY, "ready: redis ok; memory ok")

    memory_endpoint.pause()
    try:
        hung, took = readiness(runtime.env)
        alive = liveness(runtime.env)
    finally:
        memory_endpoint.resume()
    assert hung.returncode == EXIT_NOT_READY, hung.stdout
    assert hung.stderr.strip() == f"not ready: redis ok; memory: no answer within {TIMEOUT_S:g} s"
    assert took < TIMEOUT_S + STARTUP_S  # boto3 alone would wait 60 s, then retry
    assert alive.returncode == EXIT_ALIVE, alive.stderr  # nothing to restart the worker for
    assert worker.process.poll() is None

    assert readiness(runtime.env)[0].returncode == EXIT_READY  # back when memory is

    restartable_redis.kill()
    down, took = readiness(runtime.env)
    assert down.returncode == EXIT_NOT_READY
    assert down.stderr.startswith("not ready: redis: ConnectionError: ")
    assert down.stderr.strip().endswith("; memory ok")
    assert took < TIMEOUT_S + STARTUP_S

    restartable_redis.restart()
    assert readiness(runtime.env)[0].returncode == EXIT_READY


def test_readiness_shows_no_secret_and_a_bad_setting_in_one_line(tmp_path):
    env = {**secret_env(free_port()), "FENCE_MEMORY": f"sqlite:///{tmp_path / 'memory.db'}"}
    unreachable, _ = readiness(env)
    assert unreachable.returncode == EXIT_NOT_READY
    assert "not ready: redis: ConnectionError" in unreachable.stderr
    assert leaked(unreachable.stdout + unreachable.stderr) == [], unreachable.stderr

    bad, _ = readiness({**env, "FENCE_LEASE_MS": "0"})
    assert bad.returncode == EXIT_NOT_READY
    assert bad.stderr.splitlines() == ["not ready: FENCE_LEASE_MS: Input should be greater than 0"]
    assert bad.stdout == ""
