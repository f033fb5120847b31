"""Webhook delivery: POST an ended run's outcome, signed, to its webhook.

The worker that finishes a run publishes ``fence.deliver_webhook`` for it at once; each
task makes one attempt and, if it fails, retries itself with a countdown that doubles
from ``FENCE_WEBHOOK_BACKOFF_S`` (at most ``MAX_BACKOFF_S``), for up to
``FENCE_WEBHOOK_RETRY_FOR_S`` after the run ended. The sweeper publishes the webhooks
nobody sent in time (``RunStore.due_webhooks``). A delivery is a task of its own, so
the session's next turn never waits for it. What is sent, and how it is signed:
``fence.runs.webhooks``.
"""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request
from functools import cache
from http.client import HTTPException

import workers
from fence.runs import RunRecord, RunStore
from fence.runs.schema import WebhookState
from fence.runs.webhooks import check_allowed, payload, signed_headers
from fence.settings import Settings
from fence.validation import clip

log = logging.getLogger(__name__)

DELIVER_WEBHOOK = "fence.deliver_webhook"
MAX_BACKOFF_S = 600.0
"""Longest wait between two attempts, whatever the doubling reaches."""
ERROR_CHARS = 300
"""Longest error kept on the run record."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not followed: an allowed URL must not lead the workers
    to an address ``FENCE_WEBHOOK_ALLOW`` does not name."""

    def redirect_request(self, *_: object, **__: object) -> None:
        return None


@cache
def _opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(_NoRedirects)


def publish(session_id: str, run_id: str, attempt: int = 1) -> None:
    """Ask a worker to make attempt ``attempt`` of the run's webhook. A publish that
    fails is logged and left to the sweeper: the run is due in ``keys.WEBHOOKS_DUE``."""
    try:
        workers.celery_app().send_task(
            DELIVER_WEBHOOK,
            kwargs={"run_id": run_id, "session_id": session_id, "attempt": attempt},
        )
    except Exception:
        log.exception(
            "publishing a webhook delivery failed; the sweeper will publish it again",
            extra={"session_id": session_id, "run_id": run_id},
        )


def deliver(store: RunStore, session_id: str, run_id: str, attempt: int) -> float | None:
    """Make attempt ``attempt`` of the run's webhook and record how it went. Returns the
    delay before the next attempt, or None when there is none to make (delivered, given
    up, or not this task's to make: a duplicate, a late task, a run not ended)."""
    context = {"session_id": session_id, "run_id": run_id}
    claimed = store.claim_webhook(session_id, run_id, attempt)
    if not isinstance(claimed, RunRecord):
        log.info("webhook attempt %d not made: %s", attempt, claimed.value, extra=context)
        return None
    settings = store.settings
    error, retry = _attempt(claimed, attempt, settings)
    if error is None:
        store.record_webhook(session_id, run_id, attempt, WebhookState.DELIVERED)
        log.info("webhook delivered on attempt %d", attempt, extra=context)
        return None
    delay = min(settings.webhook_backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S)
    ended = claimed.finished_at or time.time()
    if not retry or time.time() + delay > ended + settings.webhook_retry_for_s:
        store.record_webhook(session_id, run_id, attempt, WebhookState.FAILED, error=error)
        log.warning("webhook failed after %d attempts: %s", attempt, error, extra=context)
        return None
    pending = WebhookState.PENDING
    if not store.record_webhook(session_id, run_id, attempt, pending, error=error, retry_in=delay):
        return None  # settled, or a later attempt began, meanwhile
    log.warning(
        "webhook attempt %d failed: %s; next in %.3g s", attempt, error, delay, extra=context
    )
    return delay


def _attempt(record: RunRecord, attempt: int, settings: Settings) -> tuple[str | None, bool]:
    """POST the run's outcome once: (None, _) if the receiver took it, else (why not,
    whether another attempt may do better). The error names no secret."""
    if record.webhook is None:
        return "webhook: unreadable in the run record", False
    try:
        check_allowed(record.webhook, settings.webhook_allow)
    except ValueError as error:  # the workers' allowlist is the one that counts
        return f"{error} (on the workers)", False
    if not settings.webhook_secret:
        return "FENCE_WEBHOOK_SECRET is not set on the workers; nothing is sent unsigned", True
    body = payload(record)
    headers = signed_headers(record.id, attempt, body, settings.webhook_secret, time.time())
    request = urllib.request.Request(record.webhook, data=body, headers=headers, method="POST")
    timeout = settings.webhook_timeout_s
    try:
        with _opener().open(request, timeout=timeout):
            return None, False
    except urllib.error.HTTPError as error:
        error.close()
        redirect = ": a redirect, not followed" if 300 <= error.code < 400 else ""
        return f"HTTP {error.code}{redirect}", True
    except urllib.error.URLError as error:  # connecting failed
        if isinstance(error.reason, TimeoutError):
            return _timed_out(timeout), True
        return clip(f"unreachable: {error.reason}", ERROR_CHARS), True
    except TimeoutError:
        return _timed_out(timeout), True
    except (OSError, HTTPException) as error:
        return clip(f"{type(error).__name__}: {error}", ERROR_CHARS), True


def _timed_out(timeout: float) -> str:
    return f"no answer within {timeout:g} s (FENCE_WEBHOOK_TIMEOUT_S)"
