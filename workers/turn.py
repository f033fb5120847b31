"""Execute one turn: lease the session, run the agent, commit once, hand off.

Read top to bottom, ``TurnExecutor.execute`` is the whole life of a turn on a
worker. The Lua scripts it calls, and what happens when a worker dies at each
line, are described in ``fence.runs.scripts``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from celery.exceptions import SoftTimeLimitExceeded

from fence.agents import Agent
from fence.errors import StaleWriteError
from fence.memory.base import BaseMemory
from fence.runs import Lease, LeaseLost, Registry, RunState, RunStore
from fence.settings import Settings
from workers.dispatch import Dispatch
from workers.leases import LeaseRenewer
from workers.metrics import metrics

log = logging.getLogger(__name__)


class TurnCancelled(Exception):
    """The run was cancelled (or interrupted) while it ran."""


@dataclass(frozen=True)
class Outcome:
    state: RunState
    result: str = ""
    error: str = ""


class TurnExecutor:
    """Runs turns for one worker process."""

    def __init__(
        self,
        store: RunStore,
        agents: Registry,
        open_memory: Callable[[str], BaseMemory],
        dispatch: Dispatch,
        settings: Settings,
    ) -> None:
        self.store = store
        self.agents = agents
        self.open_memory = open_memory
        self.dispatch = dispatch
        self.settings = settings
        self.leases = LeaseRenewer(store, settings.lease_renew_ms / 1000)

    def execute(self, session_id: str, run_id: str, worker: str) -> str:
        """Run ``run_id`` if it is its session's turn; return what happened."""
        context = {"session_id": session_id, "run_id": run_id}
        lease = self.store.acquire(session_id, run_id, worker)
        if not isinstance(lease, Lease):
            log.info("turn skipped: %s", lease.reason, extra=context)
            if lease.next_run:
                self.dispatch(session_id, lease.next_run)
            return f"skipped ({lease.reason})"
        started = time.monotonic()
        with self.leases.hold(lease) as lost:
            try:
                outcome = self._run(lease, lost)
            except LeaseLost:
                return self._abandon(context)
        try:
            next_run = self.store.finish(
                lease, outcome.state, result=outcome.result, error=outcome.error
            )
        except LeaseLost:
            return self._abandon(context)
        log.info("turn %s", outcome.state.value, extra=context)
        metrics().turns.labels(outcome.state.value).inc()
        metrics().turn_seconds.observe(time.monotonic() - started)
        if next_run:
            self.dispatch(session_id, next_run)
        return outcome.state.value

    def _abandon(self, context: dict[str, str]) -> str:
        log.warning("turn abandoned: lease lost", extra=context)
        metrics().leases_lost.inc()
        return "abandoned (lease lost)"

    def _run(self, lease: Lease, lost: threading.Event) -> Outcome:
        record = lease.record
        if record.attempts > 1:
            metrics().lease_takeovers.inc()
        elif record.started_at is not None:
            metrics().queue_wait_seconds.observe(max(0.0, record.started_at - record.accepted_at))
        memory = self.open_memory(lease.session_id)
        # Only an earlier delivery can have committed this turn; if one did, the
        # turn is done whatever was asked of it since.
        if record.attempts > 1 and memory.has_turn(lease.run_id):
            return Outcome(RunState.SUCCEEDED, result=self.store.pending_result(lease) or "")
        if record.cancel_requested:
            return Outcome(RunState.CANCELLED, error="cancelled before it started")
        if record.attempts > self.settings.max_deliveries:
            return Outcome(
                RunState.FAILED,
                error=f"started {record.attempts - 1} times without finishing; a worker died "
                "each time (FENCE_MAX_DELIVERIES)",
            )
        factory = self.agents.get(record.agent)
        if factory is None:
            return Outcome(RunState.FAILED, error=f"unknown agent {record.agent!r}")
        fresh = True  # the record read with the lease has just shown no cancel

        def checkpoint() -> None:
            nonlocal fresh
            if lost.is_set():
                raise LeaseLost(lease.session_id, lease.run_id)
            if not fresh and self.store.cancel_requested(lease):
                raise TurnCancelled
            fresh = False

        attempts = self.settings.turn_retries + 1
        attempt = 1
        while True:
            # A failed attempt may have committed before it raised.
            if attempt > 1 and memory.has_turn(lease.run_id):
                return Outcome(RunState.SUCCEEDED, result=self.store.pending_result(lease) or "")
            try:
                return self._attempt(lease, factory(memory), checkpoint, lost)
            except TurnCancelled:
                return Outcome(RunState.CANCELLED, error="cancelled while running")
            except LeaseLost:
                raise
            except SoftTimeLimitExceeded:
                limit = self.settings.turn_timeout_s
                return Outcome(
                    RunState.FAILED, error=f"turn exceeded {limit:g}s (FENCE_TURN_TIMEOUT_S)"
                )
            except Exception as error:  # model, tool or agent failure: retry, then fail
                message = f"{type(error).__name__}: {error}"
                log.warning(
                    "turn attempt %d/%d failed: %s",
                    attempt,
                    attempts,
                    message,
                    extra={"session_id": lease.session_id, "run_id": lease.run_id},
                )
                if attempt == attempts:
                    return Outcome(RunState.FAILED, error=message)
                delay = self.settings.turn_retry_backoff_s * 2 ** (attempt - 1)
                if lost.wait(delay):
                    raise LeaseLost(lease.session_id, lease.run_id) from error
                attempt += 1

    def _attempt(
        self,
        lease: Lease,
        agent: Agent,
        checkpoint: Callable[[], None],
        lost: threading.Event,
    ) -> Outcome:
        """One try: the agent loop, then the answer saved, then one fenced commit."""
        prepared = agent.prepare_turn(lease.record.message, checkpoint=checkpoint)
        if lost.is_set():
            raise LeaseLost(lease.session_id, lease.run_id)
        saved = self.store.save_answer(lease, prepared.answer)  # also checks lease and cancel
        if saved == "lost":
            raise LeaseLost(lease.session_id, lease.run_id)
        if saved == "cancelled":
            raise TurnCancelled
        memory = agent.memory
        try:
            memory.commit_turn(lease.run_id, prepared.messages, expected_last_seq=prepared.last_seq)
        except StaleWriteError:
            if not memory.has_turn(lease.run_id):
                raise
        return Outcome(RunState.SUCCEEDED, result=prepared.answer)
