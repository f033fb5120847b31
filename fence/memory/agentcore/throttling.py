"""AgentCore throttling: every throttled response counted, CreateEvent retried.

AgentCore limits ``CreateEvent`` per actor and session (0.25 requests/s is
the figure users quote). botocore's ``standard`` retry mode retries a
throttled request up to 10 attempts with jittered exponential backoff; a
``needs-retry`` hook on each client counts every throttled response it sees,
by operation, for the runtime to expose (``throttle_counts()``, or
``observe_throttles()`` to feed a metric). ``retry_throttled`` then keeps
retrying a throttled ``CreateEvent`` past botocore (or with a client that
does not retry) until ``THROTTLE_BUDGET_S`` has passed since its first
attempt. A retried ``CreateEvent`` sends the same ``clientToken`` and
timestamp, so the service stores it once.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

from botocore.client import BaseClient
from botocore.exceptions import ClientError

from fence.memory import _aws

log = logging.getLogger(__name__)

THROTTLE_BUDGET_S = 60.0
"""How long a throttled CreateEvent is retried, from its first attempt."""
THROTTLE_BASE_S = 1.0
THROTTLE_CAP_S = 8.0
"""Full-jitter backoff: up to 1, 2, 4, 8, 8, ... s; a session's quota refills one
request every 4 s."""
HOOK_ID = "fence-agentcore-throttle-counter"

ThrottleObserver = Callable[[str], None]
_lock = threading.Lock()
_counts: Counter[str] = Counter()
_observers: list[ThrottleObserver] = []
T = TypeVar("T")


def observe_throttles(observer: ThrottleObserver) -> None:
    """Call ``observer(operation)`` (e.g. ``"CreateEvent"``) for every throttled
    AgentCore response. How the runtime feeds a metric without the library
    knowing about metrics."""
    _observers.append(observer)


def throttle_counts() -> dict[str, int]:
    """Throttled AgentCore responses seen by this process, by operation."""
    with _lock:
        return dict(_counts)


def record_throttle(operation: str) -> None:
    with _lock:
        _counts[operation] += 1
    for observer in list(_observers):
        try:
            observer(operation)
        except Exception:  # a metric must never fail a write
            log.exception("throttle observer failed")


def count_throttles(client: BaseClient) -> None:
    """Count every throttled response ``client`` receives (idempotent per client)."""
    client.meta.events.register(
        f"needs-retry.{client.meta.service_model.service_id.hyphenize()}",
        _on_response,
        unique_id=HOOK_ID,
    )


def _on_response(response: Any = None, operation: Any = None, **_: Any) -> None:
    """botocore calls this after each attempt; returning None leaves retrying to it."""
    if response is None:
        return
    code = (response[1] or {}).get("Error", {}).get("Code")
    if code in _aws.THROTTLING_CODES:
        record_throttle(getattr(operation, "name", "unknown"))


def retry_throttled(request: Callable[[], T], *, budget_s: float = THROTTLE_BUDGET_S) -> T:
    """``request()``, retried on a throttling error until ``budget_s`` has passed.

    Other errors, and the last throttling error, are raised unchanged.
    """
    started = time.monotonic()
    attempt = 0
    while True:
        try:
            return request()
        except ClientError as exc:
            if _aws.error_code(exc) not in _aws.THROTTLING_CODES:
                raise
            delay = random.uniform(0, min(THROTTLE_CAP_S, THROTTLE_BASE_S * 2**attempt))
            if time.monotonic() - started + delay > budget_s:
                raise
            log.warning(
                "AgentCore throttled a write (%s); retrying in %.1f s (retry %d)",
                _aws.error_code(exc),
                delay,
                attempt + 1,
            )
            time.sleep(delay)
            attempt += 1
