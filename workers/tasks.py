"""Celery tasks: ``fence.run_turn`` (one per turn), ``fence.deliver_webhook`` (one per
webhook attempt) and ``fence.sweep`` (beat).

A turn's Celery state is what Flower shows, so it follows the run's: ``SUCCESS``,
``FAILURE`` with the run's error, ``REVOKED`` when cancelled, and ``RETRY`` while the
run waits for an approval or for a later delivery. The run's state in Redis stays the
truth: the task reports it only once ``TurnExecutor.execute`` has recorded it and
published the session's next run, and every ending is acked as a success is.
"""

from __future__ import annotations

import logging
import os
import sys
from functools import lru_cache

from billiard.einfo import ExceptionInfo, ExceptionWithTraceback
from celery.exceptions import Ignore
from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    heartbeat_sent,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
)
from celery.worker.request import Request

from fence.memory.url import memory_factory
from fence.runs import RunState, RunStore, load_registry
from fence.runs.turn_message import TURN_TASK
from fence.settings import get_settings
from fence.tokens import count_tokens
from workers import celery_app
from workers.app import SWEEP
from workers.liveness import forget_heartbeat, record_heartbeat
from workers.logs import configure as configure_logs
from workers.metrics import install_observers, metrics, process_exited
from workers.metrics import serve as serve_metrics
from workers.turn import Outcome, TurnExecutor
from workers.webhooks import DELIVER_WEBHOOK, deliver
from workers.webhooks import publish as publish_webhook

log = logging.getLogger(__name__)
app = celery_app()


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


class RunFailed(Exception):
    """Raised by a turn whose run failed, after the run finished: Celery acks it as any
    failed task (``acks_late`` acks a failure; only a lost worker requeues) and sends
    ``task-failed``, so Flower shows ``FAILURE`` with the run's error."""


class Announced(Ignore):
    """Ends a turn that neither succeeded nor failed: Celery acks it and reports nothing
    (``Ignore``), and ``TurnRequest`` sends ``event`` with ``reason`` instead."""

    def __init__(self, event: str, reason: str) -> None:
        super().__init__(event, reason)  # the args rebuild it in the main process
        self.event, self.reason = event, reason


class TurnRequest(Request):
    """A turn in the worker's main process, which sends Celery's task events: an
    ``Announced`` turn's event goes out here, through the same buffer and after the
    turn's ``task-started``, so Flower receives them in order."""

    def on_failure(
        self, exc_info: ExceptionInfo, send_failed_event: bool = True, return_ok: bool = False
    ) -> None:
        super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)
        error = exc_info.exception
        if isinstance(error, ExceptionWithTraceback):
            error = error.exc
        if isinstance(error, Announced):  # Ignore: acked above, and no event of Celery's
            self.send_event(error.event, exception=error.reason)


def report(outcome: Outcome | None) -> str:
    """How this delivery left its run, for Celery and so for Flower: returns for
    ``SUCCESS`` and raises for the rest. ``REVOKED`` is Celery's word for a cancelled
    task, and keeps cancels out of Flower's failures; ``RETRY`` (the run will run
    again) rather than ``STARTED`` for a run that no worker runs now."""
    if outcome is None:  # not its turn, or its lease was lost: the run's holder reports it
        raise Ignore  # (a SUCCESS here would hide how the run ended: in Flower it wins)
    tries = f" ({outcome.attempts} attempts)" if outcome.attempts > 1 else ""
    if outcome.state is RunState.SUCCEEDED:
        return f"succeeded{tries}"
    if outcome.state is RunState.FAILED:
        raise RunFailed(f"{outcome.error}{tries}")
    if outcome.state is RunState.CANCELLED:
        raise Announced("task-revoked", outcome.error)
    if outcome.state is RunState.WAITING:
        assert outcome.approval is not None
        raise Announced("task-retried", f"waiting for approval of {outcome.approval.name!r}")
    if outcome.state is RunState.RUNNING:  # deferred: the sweeper delivers it again
        raise Announced("task-retried", outcome.error)
    raise AssertionError(f"a turn cannot end {outcome.state}")


@app.task(
    name=TURN_TASK,
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    Request=TurnRequest,
    throws=(RunFailed,),  # logged as expected, without a traceback: the run's error says it
)
def run_turn(self, run_id: str, session_id: str) -> str:
    """Run one turn of ``session_id`` (no-op unless it is that session's active run),
    then tell Celery how it went."""

    def retried(attempt: int, error: str) -> None:  # Flower shows the retry as it happens
        self.send_event("task-retried", exception=error, retries=attempt)

    worker = self.request.hostname or "unknown"
    return report(executor().execute(session_id, run_id, worker=worker, on_retry=retried))


@app.task(name=DELIVER_WEBHOOK, bind=True, acks_late=True, reject_on_worker_lost=True)
def deliver_webhook(self, run_id: str, session_id: str, attempt: int = 1) -> None:
    """POST an ended run's outcome to its webhook; a failed attempt retries with backoff."""
    delay = deliver(store(), session_id, run_id, attempt)
    if delay is not None:
        kwargs = {"run_id": run_id, "session_id": session_id, "attempt": attempt + 1}
        raise self.retry(kwargs=kwargs, countdown=delay, max_retries=None)


@app.task(name=SWEEP, ignore_result=True, send_events=False)
def sweep() -> int:
    """Re-dispatch active runs whose worker vanished (no lease, no progress), and send the
    webhooks nobody sent in time. It sends no task events: one every
    ``FENCE_SWEEP_INTERVAL_S`` would push turns out of Flower's task list (its logs and
    ``fence_sweeper_recoveries_total`` show it ran)."""
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
