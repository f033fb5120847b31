"""A real runtime per test: redis-server on a free port, real ``celery worker``
and ``celery beat`` processes, SQLite memory in a temp dir. Outage tests get
servers they may kill: a Redis with AOF on, and DynamoDB memory on a moto process."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from fence.runs import RunRequest, RunStore
from fence.settings import Settings
from producer.stack.launch import start_redis
from tests.memory.aws_server import DUMMY_ENV
from tests.support import (  # noqa: F401 - the tests import them from here
    MemoryEndpoint,
    RestartableRedis,
    Runtime,
    new_key,
)

OUTAGE_TABLE = "outage-memory"


def empty_store(redis_url: str, **settings: object) -> RunStore:
    """A ``RunStore`` on an emptied Redis, for the scripts' contract without workers."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushall()
    return RunStore(client, Settings(redis_url=redis_url, **settings))


def request(session_id: str = "s1", message: str = "hi", **fields: object) -> RunRequest:
    return RunRequest(session_id=session_id, message=message, agent="demo", **fields)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    process, url = start_redis(tmp_path_factory.mktemp("redis"))
    yield url
    process.stop()


@contextmanager
def fresh_runtime(redis_url: str, directory: Path, **options: str) -> Iterator[Runtime]:
    redis.Redis.from_url(options.get("control_url") or redis_url).flushall()
    runtime = Runtime(redis_url, directory, **options)
    try:
        yield runtime
    finally:
        runtime.stop()


@pytest.fixture
def runtime(redis_url, tmp_path) -> Iterator[Runtime]:
    """A fresh runtime for one test (it may kill and restart workers)."""
    with fresh_runtime(redis_url, tmp_path) as runtime:
        yield runtime


@pytest.fixture
def restartable_redis(tmp_path) -> Iterator[RestartableRedis]:
    server = RestartableRedis(tmp_path / "redis")
    yield server
    server.stop()


@pytest.fixture
def redis_outage_runtime(restartable_redis, redis_url, tmp_path) -> Iterator[Runtime]:
    """A runtime on ``restartable_redis``; the test agents steer through the suite's
    other Redis (``redis_url``), which stays up."""
    with fresh_runtime(restartable_redis.url, tmp_path, control_url=redis_url) as runtime:
        yield runtime


@pytest.fixture
def memory_endpoint(tmp_path) -> Iterator[MemoryEndpoint]:
    """A DynamoDB endpoint process with the table ``OUTAGE_TABLE``."""
    endpoint = MemoryEndpoint(tmp_path)
    endpoint.create_table(OUTAGE_TABLE)
    yield endpoint
    endpoint.stop()


@pytest.fixture
def dynamodb_runtime(memory_endpoint, redis_url, tmp_path) -> Iterator[Runtime]:
    """A runtime whose memory is ``OUTAGE_TABLE`` on ``memory_endpoint``.

    Its processes stop before the endpoint does, so none waits on a dead endpoint.
    """
    with on_memory_endpoint(memory_endpoint, redis_url, tmp_path) as runtime:
        yield runtime


@contextmanager
def on_memory_endpoint(
    endpoint: MemoryEndpoint, redis_url: str, directory: Path, control_url: str | None = None
) -> Iterator[Runtime]:
    """A fresh runtime whose memory is ``OUTAGE_TABLE`` on ``endpoint``."""
    with fresh_runtime(redis_url, directory, control_url=control_url) as runtime:
        runtime.use_memory(
            endpoint.memory_url(OUTAGE_TABLE), endpoint.opener(OUTAGE_TABLE), DUMMY_ENV
        )
        try:
            yield runtime
        finally:
            endpoint.resume()  # a test that failed while it was stopped
