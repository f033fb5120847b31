"""Celery tasks: ``fence.run_turn`` (one per turn), ``fence.deliver_webhook`` (one per
webhook attempt) and ``fence.sweep`` (beat)."""

from __future__ import annotations

import logging
import os
import sys
from functools import lru_cache

from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    heartbeat_sent,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
)

from fence.memory.url import memory_factory
from fence.runs import RunStore, load_registry
from fence.runs.turn_message import TURN_TASK
from fence.settings import get_settings
from fence.tokens import count_tokens
from workers import app
from workers.app import SWEEP
from workers.liveness import forget_heartbeat, record_heartbeat
from workers.logs import configure as configure_logs
from workers.metrics import install_observers, metrics, process_exited
from workers.metrics import serve as serve_metrics
from workers.turn import TurnExecutor
from workers.webhooks import DELIVER_WEBHOOK, deliver
from workers.webhooks import publish as publish_webhook

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def store() -> RunStore:
    return RunStore.from_url()


@lru_cache(maxsize=1)
def executor() -> TurnExecutor:
    """Built once, in the main process at start-up (inherited by the pool's forks)."""
    settings = get_settings()
    if settings.memory.startswith("fleeting:"):
        raise ValueError(
            "FENCE_MEMORY: fleeting:// keeps history inside one process, so workers cannot "
            "share it; use sqlite:///fence.db, dynamodb://<table> or agentcore://<memory-id>"
        )
    try:  # a session's memory, opened once now (on a factory of its own, so no client
        # made here is inherited by the pool), so that a table name or path no worker
        # could use stops the worker at start-up, not every turn
        memory_factory(settings.memory)("fence-config-check")
    except ValueError as error:
        raise ValueError(f"FENCE_MEMORY: {error}") from None
    return TurnExecutor(
        store=store(),
        agents=load_registry(settings.agents),
        open_memory=memory_factory(settings.memory),
        settings=settings,
    )


@app.task(name=TURN_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
def run_turn(self, run_id: str, session_id: str) -> str:
    """Run one turn of ``session_id`` (no-op unless it is that session's active run)."""
    return executor().execute(session_id, run_id, worker=self.request.hostname or "unknown")


@app.task(name=DELIVER_WEBHOOK, bind=True, acks_late=True, reject_on_worker_lost=True)
def deliver_webhook(self, run_id: str, session_id: str, attempt: int = 1) -> None:
    """POST an ended run's outcome to its webhook; a failed attempt retries with backoff."""
    delay = deliver(store(), session_id, run_id, attempt)
    if delay is not None:
        kwargs = {"run_id": run_id, "session_id": session_id, "attempt": attempt + 1}
        raise self.retry(kwargs=kwargs, countdown=delay, max_retries=None)


@app.task(name=SWEEP, ignore_result=True)
def sweep() -> int:
    """Re-dispatch active runs whose worker vanished (no lease, no progress), and send the
    webhooks nobody sent in time."""
    stalled = store().stalled_runs()
    for session_id, run_id in stalled:
        log.warning(
            "re-dispatching stalled run", extra={"session_id": session_id, "run_id": run_id}
        )
        store().publish(session_id, run_id)
    metrics().sweeper_recoveries.inc(len(stalled))
    for session_id, run_id, attempt in store().due_webhooks():
        log.warning(
            "publishing a webhook left due", extra={"session_id": session_id, "run_id": run_id}
        )
        publish_webhook(session_id, run_id, attempt)
    return len(stalled)


@worker_init.connect
def start_worker(**_: object) -> None:
    """In the main process, before the pool forks: metrics, then fail fast on bad settings."""
    settings = get_settings()
    if settings.metrics_port is not None:
        serve_metrics(settings.metrics_host, settings.metrics_port)
    install_observers(settings.memory)
    try:
        executor()
    except ValueError as error:  # Celery would log and swallow it, then run broken
        print(f"fence worker: {error}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


worker_init.connect(forget_heartbeat)
heartbeat_sent.connect(record_heartbeat)


@worker_process_init.connect
def warm_up(**_: object) -> None:
    """Load the tokenizer in each pool process before its first turn, not during it."""
    count_tokens("warm up")


@worker_process_shutdown.connect
def forget_process(pid: int | None = None, **_: object) -> None:
    process_exited(pid or os.getpid())


@after_setup_logger.connect
@after_setup_task_logger.connect
def structured_logs(logger: logging.Logger, **_: object) -> None:
    configure_logs(logger, get_settings().log_format)
