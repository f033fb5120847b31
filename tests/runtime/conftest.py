"""A real runtime per test: redis-server on a free port, real ``celery worker``
and ``celery beat`` processes, SQLite memory in a temp dir."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tests.support import Runtime, new_key  # noqa: F401 - the tests import them from here
from workers.stack import start_redis


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    process, url = start_redis(tmp_path_factory.mktemp("redis"))
    yield url
    process.stop()


@pytest.fixture
def runtime(redis_url, tmp_path) -> Iterator[Runtime]:
    """A fresh runtime for one test (it may kill and restart workers)."""
    redis.Redis.from_url(redis_url).flushall()
    runtime = Runtime(redis_url, tmp_path)
    yield runtime
    runtime.stop()
