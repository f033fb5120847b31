"""Execute one turn: lease the session, run the agent, commit once, hand off.

Read top to bottom, ``TurnExecutor.execute`` is the whole life of a turn on a
worker. The Lua scripts it calls, and what happens when a worker dies at each
line, are described in ``fence.runs.scripts``; how memory and Redis outages
are met, in ``workers.backends``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from celery.exceptions import SoftTimeLimitExceeded

from fence.agents import Agent, ApprovalRequired
from fence.errors import FencedOutError, StaleWriteError
from fence.memory.base import BaseMemory
from fence.runs import (
    AgentFactory,
    Lease,
    LeaseLost,
    PendingApproval,
    Registry,
    RunRecord,
    RunState,
    RunStore,
)
from fence.runs.events import EventType
from fence.runs.journal import JournalFull, RunJournal
from fence.runs.scripts import Paused, Saved
from fence.settings import Settings
from workers.backends import MEMORY_ERRORS, BackendCalls, BackendDown
from workers.leases import LeaseRenewer
from workers.metrics import metrics
from workers.turn_events import TurnEvents
from workers.webhooks import publish as publish_webhook

log = logging.getLogger(__name__)


class TurnCancelled(Exception):
    """The run was cancelled (or interrupted) while it ran."""


class Deferred(Exception):
    """The run cannot be decided now: memory is unreachable and may hold (or be
    about to receive) its turn. The delivery ends without finishing the run; its
    lease expires and the sweeper runs it again."""


class Checkpoint:
    """Called before every model and tool step: stops the turn if its lease was lost
    or its run was cancelled. The first call trusts the record read with the lease
    (it showed no cancel), which saves a round trip on every turn."""

    def __init__(
        self, store: RunStore, lease: Lease, lost: threading.Event, calls: BackendCalls
    ) -> None:
        self.lost = lost
        self.calls = calls
        self._store = store
        self._lease = lease
        self._fresh = True

    def __call__(self) -> None:
        lease = self._lease
        if self.lost.is_set():
            raise LeaseLost(lease.session_id, lease.run_id)
        if not self._fresh and self.calls.redis(
            "cancel_requested", lambda: self._store.cancel_requested(lease)
        ):
            raise TurnCancelled
        self._fresh = False


@dataclass(frozen=True)
class Outcome:
    state: RunState
    result: str = ""
    error: str = ""
    attempts: int = 0
    """Turn tries this delivery made."""
    approval: PendingApproval | None = None
    """What a ``waiting`` outcome waits on."""


class TurnExecutor:
    """Runs turns for one worker process."""

    def __init__(
        self,
        store: RunStore,
        agents: Registry,
        open_memory: Callable[[str], BaseMemory],
        settings: Settings,
    ) -> None:
        self.store = store
        self.agents = agents
        self.open_memory = open_memory
        self.settings = settings
        self.leases = LeaseRenewer(store, settings.lease_renew_ms / 1000)

    def execute(
        self,
        session_id: str,
        run_id: str,
        worker: str,
        on_retry: Callable[[int, str], None] | None = None,
    ) -> Outcome | None:
        """Run ``run_id`` if it is its session's turn. Returns how this delivery left the
        run (ended, ``waiting``, or ``running`` when deferred, with why in ``error``), or
        None when another delivery has it (not its turn, or the lease was lost)."""
        context = {"session_id": session_id, "run_id": run_id}
        calls = BackendCalls(session_id, run_id, self.settings)
        lease = calls.redis("acquire", lambda: self.store.acquire(session_id, run_id, worker))
        if not isinstance(lease, Lease):
            log.info("turn skipped: %s", lease.reason, extra=context)
            if lease.next_run:
                self.store.publish(session_id, lease.next_run)
            return None
        started = time.monotonic()
        with self.leases.hold(lease) as lost:
            calls = calls.holding(lease, lost)
            events = TurnEvents(self.store, lease, calls, self.settings.stream_coalesce_ms / 1000)
            try:
                outcome = self._run(lease, lost, calls, events, on_retry)
                events.flush()  # a failed attempt's text too, before the terminal event
                if outcome.approval is not None:
                    outcome = self._pause(lease, calls, outcome)
                if outcome.state is RunState.WAITING:
                    log.info("turn waiting for approval", extra=context)
                    metrics().turns.labels(outcome.state.value).inc()
                    return outcome
                next_run = calls.redis(
                    "finish",
                    lambda: self.store.finish(
                        lease,
                        outcome.state,
                        result=outcome.result,
                        error=outcome.error,
                        attempts=outcome.attempts,
                    ),
                )
            except LeaseLost:
                log.warning("turn abandoned: lease lost", extra=context)
                metrics().leases_lost.inc()
                return None
            except Deferred as why:
                log.warning("turn deferred: %s", why, extra=context)
                return Outcome(RunState.RUNNING, error=f"deferred: {why}")
            finally:
                events.close()
        log.info("turn %s", outcome.state.value, extra=context)
        metrics().turns.labels(outcome.state.value).inc()
        metrics().turn_seconds.observe(time.monotonic() - started)
        if next_run:
            self.store.publish(session_id, next_run)
        if lease.record.webhook:
            publish_webhook(session_id, run_id)
        return outcome

    def _pause(self, lease: Lease, calls: BackendCalls, outcome: Outcome) -> Outcome:
        """Make the run wait for its approval, releasing the lease (the slot is free
        then); a cancel that came first ends it instead."""
        assert outcome.approval is not None
        approval = outcome.approval
        paused = calls.redis("pause", lambda: self.store.pause(lease, approval, outcome.attempts))
        if paused is Paused.LOST:
            raise LeaseLost(lease.session_id, lease.run_id)
        if paused is Paused.CANCELLED:
            return Outcome(
                RunState.CANCELLED, error="cancelled while running", attempts=outcome.attempts
            )
        return outcome

    def _run(
        self,
        lease: Lease,
        lost: threading.Event,
        calls: BackendCalls,
        events: TurnEvents,
        on_retry: Callable[[int, str], None] | None,
    ) -> Outcome:
        """The pre-checks, then the attempt loop: the run's outcome."""
        record = lease.record
        if record.redelivered:
            metrics().lease_takeovers.inc()
        elif record.started_at is not None:
            metrics().queue_wait_seconds.observe(max(0.0, record.started_at - record.accepted_at))
        ready = self._prepare(lease, calls)
        if isinstance(ready, Outcome):
            return ready
        memory, factory = ready
        checkpoint = Checkpoint(self.store, lease, lost, calls)
        return self._attempts(lease, memory, factory, checkpoint, events, on_retry)

    def _prepare(
        self, lease: Lease, calls: BackendCalls
    ) -> Outcome | tuple[BaseMemory, AgentFactory]:
        """What a run needs before its first attempt, or the outcome that ends it first."""
        record = lease.record
        try:
            memory = self.open_memory(lease.session_id)
        except ValueError as error:  # FENCE_MEMORY names something no worker can use
            return Outcome(RunState.FAILED, error=f"memory: {error}")
        if record.redelivered:
            decided = self._take_over(lease, memory, calls)
            if decided is not None:
                return decided
        if record.corrupt:
            return Outcome(RunState.FAILED, error=f"run record unreadable: {record.corrupt}")
        if record.state is RunState.WAITING:
            return self._waiting(record)
        if record.cancel_requested:
            return Outcome(RunState.CANCELLED, error="cancelled before it started")
        if record.deliveries - record.waits > self.settings.max_deliveries:
            return Outcome(
                RunState.FAILED,
                error=f"started {record.deliveries - record.waits - 1} times without "
                "finishing: its worker "
                "died, stalled past its lease or could not reach memory each time "
                "(FENCE_MAX_DELIVERIES)",
            )
        factory = self.agents.get(record.agent)
        if factory is None:
            return Outcome(RunState.FAILED, error=f"unknown agent {record.agent!r}")
        return memory, factory

    def _waiting(self, record: RunRecord) -> Outcome:
        """A waiting run delivered: published to end it (cancelled, or out of time), or a
        duplicate delivery, which leaves it waiting."""
        approval = record.approval
        assert approval is not None  # a waiting record without one is corrupt
        if record.cancel_requested:
            return Outcome(RunState.CANCELLED, error="cancelled while waiting for approval")
        if time.time() >= approval.deadline:
            limit = self.settings.approval_timeout_s
            return Outcome(
                RunState.FAILED,
                error=f"no decision on tool {approval.name!r} within {limit:g}s "
                "(FENCE_APPROVAL_TIMEOUT_S)",
            )
        return Outcome(RunState.WAITING, approval=approval)

    def _attempts(
        self,
        lease: Lease,
        memory: BaseMemory,
        factory: AgentFactory,
        checkpoint: Checkpoint,
        events: TurnEvents,
        on_retry: Callable[[int, str], None] | None,
    ) -> Outcome:
        """Try the turn up to ``FENCE_TURN_RETRIES`` + 1 times, with backoff between;
        ``on_retry(attempt, error)`` hears of each failed try that is tried again."""
        context = {"session_id": lease.session_id, "run_id": lease.run_id}
        tries = self.settings.turn_retries + 1
        journal = RunJournal(self.store, lease, checkpoint.calls.redis)  # a retry resumes it
        for attempt in range(1, tries + 1):
            try:
                if attempt > 1:  # ACQUIRE logged the first
                    events.put(EventType.STARTED, self._started(lease, attempt))
                agent = factory(memory)
                return self._attempt(lease, agent, checkpoint, events, attempt, journal)
            except ApprovalRequired as paused:
                return Outcome(RunState.WAITING, attempts=attempt, approval=self._pending(paused))
            except TurnCancelled:
                return Outcome(
                    RunState.CANCELLED, error="cancelled while running", attempts=attempt
                )
            except (LeaseLost, Deferred):
                raise
            except JournalFull as error:  # the same step would not fit on a retry either
                return Outcome(RunState.FAILED, error=str(error), attempts=attempt)
            except SoftTimeLimitExceeded:
                limit = self.settings.turn_timeout_s
                return Outcome(
                    RunState.FAILED,
                    error=f"turn exceeded {limit:g}s (FENCE_TURN_TIMEOUT_S)",
                    attempts=attempt,
                )
            except Exception as error:  # model, tool, agent or memory read failure
                message = f"{type(error).__name__}: {error}"
                if isinstance(error, BackendDown):  # its message names the backend's error
                    message = str(error)
                if isinstance(error, MEMORY_ERRORS):  # the window read, inside the agent
                    checkpoint.calls.failed("memory", "read_window", error)
                log.warning("turn attempt %d/%d failed: %s", attempt, tries, message, extra=context)
                if attempt == tries:
                    return Outcome(RunState.FAILED, error=message, attempts=attempt)
                if on_retry is not None:
                    on_retry(attempt, message)
                delay = self.settings.turn_retry_backoff_s * 2 ** (attempt - 1)
                if checkpoint.lost.wait(delay):
                    raise LeaseLost(lease.session_id, lease.run_id) from error
        raise AssertionError("unreachable")

    def _pending(self, paused: ApprovalRequired) -> PendingApproval:
        call = paused.call
        return PendingApproval(
            id=call.id,
            name=call.name,
            arguments=call.arguments,
            parameters=paused.parameters,
            step=paused.step,
            index=paused.index,
            deadline=time.time() + self.settings.approval_timeout_s,
        )

    @staticmethod
    def _started(lease: Lease, attempt: int) -> dict[str, object]:
        """``turn.started``'s data for this delivery's ``attempt`` (as ``ACQUIRE`` logs it)."""
        return {
            "attempt": lease.record.attempts + attempt,
            "delivery": lease.record.deliveries,
            "worker": lease.record.worker,
        }

    def _take_over(self, lease: Lease, memory: BaseMemory, calls: BackendCalls) -> Outcome | None:
        """A run another delivery held before: fence that holder out of memory, then
        see whether it committed. Only then may the run end in any state, so it can
        never end failed or cancelled with its turn in memory.

        Returns the outcome if that decides the run, else None (run the turn).
        """
        try:
            calls.memory("claim_fence", lambda: memory.claim_fence(lease.fence))
            committed = calls.memory("has_turn", lambda: memory.has_turn(lease.run_id))
        except FencedOutError as error:  # a newer holder claimed: we are the stale one
            raise LeaseLost(lease.session_id, lease.run_id) from error
        except BackendDown as error:
            if lease.record.deliveries <= self.settings.max_deliveries:
                raise Deferred(str(error)) from error
            # Out of deliveries: fail unfenced rather than hold the session forever.
            return Outcome(
                RunState.FAILED,
                error=f"{error}; gave up after {lease.record.deliveries - 1} deliveries "
                "(FENCE_MAX_DELIVERIES)",
            )
        if committed:  # an earlier delivery committed; the turn is done whatever since
            pending = calls.redis("pending_result", lambda: self.store.pending_result(lease))
            return Outcome(RunState.SUCCEEDED, result=pending or "")
        return None

    def _attempt(
        self,
        lease: Lease,
        agent: Agent,
        checkpoint: Checkpoint,
        events: TurnEvents,
        attempt: int,
        journal: RunJournal,
    ) -> Outcome:
        """One try: the agent loop (resuming from the run's journal), then the answer
        saved, then one fenced commit.

        Saving and committing are retried in place, never by running the model
        again: the commit is idempotent (keyed by the run id). If memory stays
        unreachable the commit may or may not have landed, so the run is
        ``Deferred`` to a later delivery, which claims the fence and looks.
        """
        calls = checkpoint.calls
        on_event = events.add if self.settings.stream_events else None
        prepared = agent.prepare_turn(
            lease.record.message,
            checkpoint=checkpoint,
            on_event=on_event,
            journal=journal,
            turn_id=lease.run_id,
            attempt=lease.record.attempts + attempt,
        )
        if checkpoint.lost.is_set():
            raise LeaseLost(lease.session_id, lease.run_id)
        # the answer's text is logged, then the answer saved (checking the lease and a
        # cancel), in one round trip
        saved = events.flush_into(
            lambda batch, first: calls.redis(
                "save_answer",
                lambda: self.store.save_answer(lease, prepared.answer, batch, first),
            )
        )
        if saved is Saved.LOST:
            raise LeaseLost(lease.session_id, lease.run_id)
        if saved is Saved.CANCELLED:
            raise TurnCancelled
        memory = agent.memory
        try:
            calls.memory(
                "commit_turn",
                lambda: memory.commit_turn(
                    lease.run_id,
                    prepared.messages,
                    expected_last_seq=prepared.last_seq,
                    fence=lease.fence,
                ),
            )
        except FencedOutError as error:  # a newer holder took the session over
            raise LeaseLost(lease.session_id, lease.run_id) from error
        except StaleWriteError:
            if not calls.memory("has_turn", lambda: memory.has_turn(lease.run_id)):
                # The history moved under us (a write outside the runtime): try again on
                # the new history. The journal replays the steps already taken, so no tool
                # runs twice; the turn lands after the newer messages, as journaled.
                raise
        except BackendDown as error:
            raise Deferred(str(error)) from error
        return Outcome(RunState.SUCCEEDED, result=prepared.answer, attempts=attempt)
