"""The turn path's one failure policy for calls to memory and to Redis.

A turn is more than its model call: it reads and commits memory and saves its
answer and outcome in Redis. Each of those calls can meet an outage. The
policy, written once here:

* **Memory** calls are retried ``FENCE_TURN_RETRIES`` times with the turn's
  backoff; then ``BackendDown`` carries the backend's own error, which the
  executor records on the run.
* **Redis** steps are retried in place, with backoff, for up to the lease's
  lifetime (``FENCE_LEASE_MS``): a Redis blip must not cost a second model
  call, and past that the lease is gone anyway and the turn belongs to the
  sweeper (``LeaseLost``; before the lease is taken, the error itself).

Every failed call counts in ``fence_backend_errors_total{backend, operation}``.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import redis

from fence.errors import MemoryBackendError
from fence.runs import Lease, LeaseLost
from fence.settings import Settings
from workers.metrics import metrics

log = logging.getLogger(__name__)

T = TypeVar("T")

MEMORY_ERRORS: tuple[type[BaseException], ...] = (MemoryBackendError, sqlite3.Error)
"""What a memory backend raises when it, not the caller's input, failed."""

REDIS_ERRORS: tuple[type[BaseException], ...] = (redis.ConnectionError, redis.TimeoutError)
"""Redis unreachable, restarting or loading its data: worth waiting out."""

REDIS_BACKOFF_CAP_S = 1.0


class BackendDown(Exception):
    """A memory call kept failing through its retries; the message is the backend's."""

    def __init__(self, operation: str, error: BaseException) -> None:
        super().__init__(f"memory {operation} failed: {type(error).__name__}: {error}")
        self.operation = operation


class BackendCalls:
    """Runs one turn's memory and Redis calls under the policy; ``lost`` is the
    event of the lease held, if one is."""

    def __init__(
        self,
        session_id: str,
        run_id: str,
        settings: Settings,
        lost: threading.Event | None = None,
    ) -> None:
        self._lost = lost or threading.Event()
        self._holding = lost is not None
        self._settings = settings
        self._context = {"session_id": session_id, "run_id": run_id}

    def holding(self, lease: Lease, lost: threading.Event) -> BackendCalls:
        """The same policy for the turn run under ``lease``."""
        return BackendCalls(lease.session_id, lease.run_id, self._settings, lost)

    def memory(self, operation: str, call: Callable[[], T]) -> T:
        """``call()``, retried on backend errors; ``BackendDown`` when they persist."""
        tries = self._settings.turn_retries + 1
        for attempt in range(1, tries + 1):
            try:
                return call()
            except MEMORY_ERRORS as error:
                self.failed("memory", operation, error)
                if attempt == tries:
                    raise BackendDown(operation, error) from error
                delay = self._settings.turn_retry_backoff_s * 2 ** (attempt - 1)
                if self._lost.wait(delay):
                    raise self._lease_lost() from error
        raise AssertionError("unreachable")

    def redis(self, operation: str, call: Callable[[], T]) -> T:
        """``call()``, retried while Redis is unreachable, for up to the lease's life."""
        deadline = time.monotonic() + self._settings.lease_ms / 1000
        delay = 0.05
        while True:
            try:
                return call()
            except REDIS_ERRORS as error:
                self.failed("redis", operation, error)
                if time.monotonic() + delay > deadline:
                    if not self._holding:
                        raise
                    raise self._lease_lost() from error
            time.sleep(delay)  # the renewer cannot tell a lost lease while Redis is down
            delay = min(delay * 2, REDIS_BACKOFF_CAP_S)

    def failed(self, backend: str, operation: str, error: BaseException) -> None:
        """Count and log one failed call (also for calls made outside this policy)."""
        metrics().backend_errors.labels(backend, operation).inc()
        log.warning(
            "%s %s failed: %s: %s",
            backend,
            operation,
            type(error).__name__,
            error,
            extra=self._context,
        )

    def _lease_lost(self) -> LeaseLost:
        return LeaseLost(self._context["session_id"], self._context["run_id"])
