"""RunStore: the runtime's state in Redis, shared by producers, workers and the sweeper.

It never publishes Celery tasks itself: methods that make a run the
session's active one return its id, and the caller dispatches it. That keeps
this module free of Celery and keeps "accepted" independent of the broker: a
run is accepted once ``SUBMIT`` has recorded it, and a lost dispatch is
recovered by the sweeper.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import redis
from redis.client import Pipeline
from redis.commands.core import Script
from redis.exceptions import NoScriptError

from fence.messages import validate_session_id
from fence.runs import approvals, keys, listing, scripts
from fence.runs.approvals import NotWaiting
from fence.runs.events import EventLog, EventType, RunEvent, event_id
from fence.runs.keys import RunField, SessionField
from fence.runs.schema import (
    PendingApproval,
    RunRecord,
    RunRequest,
    RunState,
    Strategy,
    WebhookState,
)
from fence.runs.scripts import (
    Acquired,
    Cancelled,
    Decided,
    Emitted,
    Finished,
    Journaled,
    Paused,
    Saved,
    Submitted,
    Swept,
    WebhookClaim,
)
from fence.runs.turn_message import turn_message
from fence.runs.webhooks import check_allowed
from fence.settings import Settings, get_settings
from fence.validation import InvalidInput

REDIS_TIMEOUT_S = 10.0
"""A Redis that hangs fails calls after this long instead of hanging its callers."""

SWEEP_BATCH = 200
"""Sessions checked per Redis round trip by the sweeper."""

T = TypeVar("T")


class RunNotFound(LookupError):
    """No run with that id (never accepted, or its record expired)."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id!r} not found (never accepted, or its record expired)")
        self.run_id = run_id


class IdempotencyConflict(ValueError):
    """An idempotency key came back with a different request than it was first used for.

    As payment APIs do, the key names one request: a retry must send the same one.
    Nothing was written for the second request.
    """

    def __init__(self, run_id: str, differs: list[str]) -> None:
        super().__init__(
            f"idempotency_key: already used for run {run_id} with a different "
            f"{', '.join(differs)}; send the same request again, or use a new key"
        )
        self.run_id = run_id
        self.differs = differs


class RunTimeout(TimeoutError):
    """A wait for a run's result ended before the run finished."""


@dataclass(frozen=True)
class Submission:
    """What ``submit`` did. ``position`` counts the runs ahead of this one when this
    submit queued it, and is None when it did not (rejected, or a duplicate)."""

    run_id: str
    state: RunState
    position: int | None
    dispatch: bool
    duplicate: bool
    wake: str | None = None
    """A waiting run this submit interrupted: publish it, so a worker ends it."""

    @property
    def to_publish(self) -> list[str]:
        """The runs whose turn message the submitter publishes now."""
        return [self.run_id] * self.dispatch + [self.wake] * (self.wake is not None)


@dataclass(frozen=True)
class Lease:
    """A worker's claim on a session, with the fencing token that proves it,
    and the run's record as it was when the lease was taken."""

    token: str
    record: RunRecord

    @property
    def fence(self) -> int:
        """The token as memory backends take it (``commit_turn(fence=...)``)."""
        return int(self.token)

    @property
    def session_id(self) -> str:
        return self.record.session_id

    @property
    def run_id(self) -> str:
        return self.record.id


@dataclass(frozen=True)
class Skip:
    """Why a delivery did not get the lease (see ``Acquired``); if the run's record
    was gone and it was the active run, the session moved on to ``next_run``."""

    reason: Acquired
    next_run: str | None = None


@dataclass(frozen=True)
class SessionInfo:
    """A session's runtime state, read in one snapshot."""

    session_id: str
    active_run: str | None
    queued: list[str]
    """Queued run ids, oldest first (the first ``queued_limit`` if one was given)."""
    queued_count: int
    progress_at: float | None
    """When the session last showed life (epoch s), if it has state."""
    lease_token: str | None
    lease_expires_in_ms: int | None
    """Time to live of the lease of the worker running the active run, if one holds it."""

    @property
    def state(self) -> str:
        return "busy" if self.active_run else "idle"


@dataclass(frozen=True)
class RuntimeGauges:
    """What the runtime holds in Redis now, from a scan of the indexed sessions."""

    indexed_sessions: int
    scanned_sessions: int
    busy_sessions: int
    queued_runs: int
    deepest_queue: int


class RunStore:
    """Typed operations over the runtime's Redis keys and scripts."""

    def __init__(self, client: redis.Redis, settings: Settings | None = None) -> None:
        self.redis = client
        self.settings = settings or get_settings()
        self._submit = client.register_script(scripts.SUBMIT)
        self._acquire = client.register_script(scripts.ACQUIRE)
        self._renew = client.register_script(scripts.RENEW)
        self._save_answer = client.register_script(scripts.SAVE_ANSWER)
        self._finish = client.register_script(scripts.FINISH)
        self._cancel = client.register_script(scripts.CANCEL)
        self._sweep_session = client.register_script(scripts.SWEEP_SESSION)
        self._forget_idle = client.register_script(scripts.FORGET_IDLE)
        self._emit = client.register_script(scripts.EMIT)
        self._journal = client.register_script(scripts.JOURNAL)
        self._pause = client.register_script(scripts.PAUSE)
        self._decide = client.register_script(scripts.DECIDE)
        self._claim_webhook = client.register_script(scripts.CLAIM_WEBHOOK)
        self._record_webhook = client.register_script(scripts.RECORD_WEBHOOK)
        self.event_log = EventLog(client)
        self._scripts = tuple(v for v in vars(self).values() if isinstance(v, Script))
        """All of the above: what ``_loading_scripts`` loads into an emptied cache."""

    @classmethod
    def from_url(cls, url: str | None = None, settings: Settings | None = None) -> RunStore:
        settings = settings or get_settings()
        client = redis.Redis.from_url(
            url or settings.redis_url,
            decode_responses=True,
            encoding_errors="surrogateescape",  # bytes that are not UTF-8 reach from_hash
            socket_connect_timeout=REDIS_TIMEOUT_S,
            socket_timeout=REDIS_TIMEOUT_S,
            health_check_interval=30,
        )
        return cls(client, settings)

    def _call(self, script: Script, keys: list[str], args: list[Any]) -> Any:
        """Run one script: ``Script.__call__``, without its per-call overhead."""
        return self._loading_scripts(lambda: _evalsha(self.redis, script, keys, args))

    def _pipeline(self, queue: Callable[[Pipeline], None]) -> list[Any]:
        """Run the commands ``queue`` adds to a pipeline, in one round trip.

        redis-py checks a pipeline's scripts with an extra ``SCRIPT EXISTS`` round
        trip every time; these pipelines call ``EVALSHA`` directly instead. Every
        command these pipelines hold may run twice (see ``_loading_scripts``).
        """

        def execute() -> list[Any]:
            pipe = self.redis.pipeline(transaction=False)
            queue(pipe)
            return pipe.execute()

        return self._loading_scripts(execute)

    def _loading_scripts(self, run: Callable[[], T]) -> T:
        """``run()``; if Redis has lost its script cache (a restart, ``SCRIPT FLUSH``),
        load the scripts and run it once more: a command that met ``NOSCRIPT`` did
        not run."""
        try:
            return run()
        except NoScriptError:
            for script in self._scripts:
                self.redis.script_load(script.script)
            return run()

    # -- producers ----------------------------------------------------------

    def submit(self, request: RunRequest) -> Submission:
        """Record the run durably and decide whether it runs now, waits, or is rejected.

        A request whose idempotency key was used before returns that run, or raises
        ``IdempotencyConflict`` if it differs from the request first sent with it. A
        webhook ``FENCE_WEBHOOK_ALLOW`` does not allow raises ``InvalidInput`` first.
        (``AsyncRunStore.submit`` is the same, on ``redis.asyncio``.)
        """
        call = SubmitCall(request, self.settings)
        *_, reply = self._pipeline(lambda pipe: call.queue(pipe, self._submit.sha))
        read = call.read(reply)
        if isinstance(read, str):  # a duplicate: the earlier run
            pipe = self.redis.pipeline(transaction=False)
            call.forget_index(pipe)
            pipe.hgetall(keys.run(call.session_id, read))
            _, fields = pipe.execute()
            return call.duplicate(read, fields)
        if read.state is RunState.REJECTED:
            call.keep_index(self.redis)
        return read

    def session_of(self, run_id: str) -> str:
        session_id = self.redis.get(keys.run_index(run_id))
        if session_id is None:
            raise RunNotFound(run_id)
        return session_id

    def get(self, run_id: str, session_id: str | None = None) -> RunRecord:
        session_id = session_id or self.session_of(run_id)
        fields = self.redis.hgetall(keys.run(session_id, run_id))
        if not fields:
            raise RunNotFound(run_id)
        return RunRecord.from_hash(fields, run_id=run_id, session_id=session_id)

    def cancel(self, run_id: str, session_id: str | None = None) -> RunRecord:
        """Cancel durably: a queued run leaves the mailbox; a running one stops at its
        next step and commits nothing. Cancelling a finished run changes nothing."""
        sid = session_id or self.session_of(run_id)
        now = time.time()
        webhook = self.redis.hget(keys.run(sid, run_id), "webhook")  # set once, at submit

        def queue(pipe: Pipeline) -> None:
            if webhook:  # CANCEL may end it
                _webhook_due(pipe, sid, run_id, now)
            _evalsha(
                pipe,
                self._cancel,
                [
                    keys.session(sid),
                    keys.mailbox(sid),
                    keys.run(sid, run_id),
                    *keys.event_logs(sid, run_id),
                ],
                [
                    run_id,
                    repr(now),
                    self.settings.run_ttl_s,
                    keys.done_channel(run_id),
                    self.settings.events_max,
                ],
            )

        [outcome] = self._pipeline(queue)[-1]
        if outcome == Cancelled.MISSING:
            raise RunNotFound(run_id)
        if outcome == Cancelled.CANCELLED:
            self.redis.expire(keys.run_index(run_id), self.settings.run_ttl_s)
        record = self.get(run_id, sid)
        if outcome == Cancelled.REQUESTED and record.state is RunState.WAITING:
            self.publish(sid, run_id)  # no worker holds it: one takes it to end it
        return record

    def decide(
        self,
        run_id: str,
        *,
        approved: bool,
        arguments: dict[str, Any] | None = None,
        reason: str | None = None,
        session_id: str | None = None,
    ) -> RunRecord:
        """Approve (optionally with edited ``arguments``) or deny the tool call a waiting
        run waits on, then queue the run to resume from its journal. ``NotWaiting`` if
        it is not waiting; ``InvalidInput`` if the arguments do not match the tool's
        schema (``arguments.<name>``) or the reason is too long; nothing changes then."""
        sid = session_id or self.session_of(run_id)
        record = self.get(run_id, sid)
        pending = record.approval
        if record.state is not RunState.WAITING or pending is None:
            raise NotWaiting(run_id, record.state)
        entry = approvals.decision(pending, approved=approved, arguments=arguments, reason=reason)
        data: dict[str, Any] = {"id": pending.id, "approved": approved}
        data.update({k: v for k, v in (("arguments", arguments), ("reason", reason)) if v})
        at = time.time()

        def queue(pipe: Pipeline) -> None:
            _evalsha(
                pipe,
                self._decide,
                [
                    keys.run(sid, run_id),
                    keys.journal(sid, run_id),
                    keys.session(sid),
                    *keys.event_logs(sid, run_id),
                ],
                [
                    run_id,
                    pending.id,
                    json.dumps(entry),
                    repr(at),
                    self.settings.events_max,
                    self.settings.run_ttl_s,
                    json.dumps(data),
                ],
            )
            _touch(pipe, sid, at, self.settings.session_ttl_s)

        outcome, state = self._pipeline(queue)[0]
        if outcome == Decided.MISSING:
            raise RunNotFound(run_id)
        if outcome == Decided.NOT_WAITING:
            raise NotWaiting(run_id, state)
        self.publish(sid, run_id)  # if lost, the sweeper publishes it again
        return self.get(run_id, sid)

    def session(self, session_id: str, queued_limit: int | None = None) -> SessionInfo:
        """The session's active run, queue, last progress and lease, in one snapshot."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hmget(keys.session(session_id), [SessionField.ACTIVE, SessionField.PROGRESS_AT])
        pipe.lrange(keys.mailbox(session_id), 0, -1 if queued_limit is None else queued_limit - 1)
        pipe.llen(keys.mailbox(session_id))
        pipe.get(keys.lease(session_id))
        pipe.pttl(keys.lease(session_id))
        (active, progress), queued, count, token, ttl_ms = pipe.execute()
        return SessionInfo(
            session_id,
            active,
            queued,
            count,
            float(progress) if progress else None,
            token,
            ttl_ms if ttl_ms >= 0 else None,
        )

    def sessions(
        self,
        state: listing.SessionState | str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> listing.Page[listing.SessionSummary]:
        """Sessions, most recently active first; only those in ``state`` if given."""
        return listing.sessions(self, state, limit, cursor)

    def runs(
        self, session_id: str, limit: int = 50, cursor: str | None = None
    ) -> listing.Page[RunRecord]:
        """The session's runs, newest first, until their records expire."""
        try:
            validate_session_id(session_id)
        except ValueError as error:
            raise InvalidInput.at("session_id", str(error)) from None
        return listing.runs(self, session_id, limit, cursor)

    def gauges(self, scan_limit: int) -> RuntimeGauges:
        """Busy sessions and queue depths over the first ``scan_limit`` indexed sessions
        (the index is a superset of the busy ones), ``SWEEP_BATCH`` per round trip."""
        indexed = self.redis.zcard(keys.ACTIVE_SESSIONS)
        sessions = self.redis.zrange(keys.ACTIVE_SESSIONS, 0, scan_limit - 1)
        busy = queued = deepest = 0
        for start in range(0, len(sessions), SWEEP_BATCH):
            pipe = self.redis.pipeline(transaction=False)
            for session_id in sessions[start : start + SWEEP_BATCH]:
                pipe.hexists(keys.session(session_id), SessionField.ACTIVE)
                pipe.llen(keys.mailbox(session_id))
            replies = pipe.execute()
            for active, depth in zip(replies[::2], replies[1::2], strict=True):
                busy += bool(active)
                queued += depth
                deepest = max(deepest, depth)
        return RuntimeGauges(indexed, len(sessions), busy, queued, deepest)

    def wait(self, run_id: str, timeout: float, session_id: str | None = None) -> RunRecord:
        """Block until the run is terminal, without polling: subscribe, then check."""
        session_id = session_id or self.session_of(run_id)
        deadline = time.monotonic() + timeout
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(keys.done_channel(run_id))
            while True:
                record = self.get(run_id, session_id)
                if record.state.terminal:
                    return record
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RunTimeout(
                        f"run {run_id!r} still {record.state.value} after {timeout:g}s"
                    )
                pubsub.get_message(timeout=remaining)
        finally:
            pubsub.close()

    def events(
        self,
        run_id: str,
        after: str | None = None,
        *,
        timeout: float | None = None,
        session_id: str | None = None,
    ) -> Iterator[RunEvent | None]:
        """The run's events after the event id ``after``, in order, as they happen,
        ending with its terminal event (see ``EventLog.follow``). A bad ``after`` or an
        unknown run raises here, before anything is read."""
        sid = session_id or self.session_of(run_id)
        self.get(run_id, sid)  # raises RunNotFound
        return self.event_log.follow(
            sid,
            run_id,
            event_id(after),
            timeout=timeout,
            finished=lambda: self.get(run_id, sid).state.terminal,
        )

    def session_events(
        self, session_id: str, after: str | None = None, *, timeout: float | None = None
    ) -> Iterator[RunEvent | None]:
        """Every run's events in the session after the event id ``after``, in order, as
        they happen; it ends only when ``timeout`` (s) passes."""
        return self.event_log.follow(session_id, None, event_id(after), timeout=timeout)

    # -- workers ------------------------------------------------------------

    def emit(
        self, lease: Lease, events: Sequence[tuple[EventType, dict[str, Any]]], first: int
    ) -> list[str]:
        """Append a turn's events to its logs, if the lease is still ours (one step);
        returns the ids of those logged now. ``first`` counts the events this lease
        logged before these, so a batch sent twice is logged once. Raises
        ``LeaseLost`` (nothing written) if the lease is not ours."""
        outcome, *ids = self._call(self._emit, *self._emit_call(lease, events, first))
        if outcome == Emitted.LOST:
            raise LeaseLost(lease.session_id, lease.run_id)
        return ids

    def _emit_call(
        self, lease: Lease, events: Sequence[tuple[EventType, dict[str, Any]]], first: int
    ) -> tuple[list[str], list[Any]]:
        sid, run_id = lease.session_id, lease.run_id
        pairs = [item for kind, data in events for item in (kind.value, json.dumps(data))]
        return (
            [keys.lease(sid), *keys.event_logs(sid, run_id), keys.run(sid, run_id)],
            [
                lease.token,
                run_id,
                repr(time.time()),
                self.settings.events_max,
                self.settings.run_ttl_s,
                first,
                *pairs,
            ],
        )

    def journal(self, lease: Lease) -> list[str]:
        """The run's step journal, its JSON entries oldest first."""
        return self.redis.lrange(keys.journal(lease.session_id, lease.run_id), 0, -1)

    def record_step(self, lease: Lease, entry: str) -> Journaled:
        """Append ``entry`` to the run's journal if the lease is still ours and the
        journal has room (one step); nothing is written unless ``RECORDED``."""
        sid, run_id = lease.session_id, lease.run_id
        return Journaled(
            self._call(
                self._journal,
                [keys.lease(sid), keys.journal(sid, run_id), keys.run(sid, run_id)],
                [lease.token, entry, self.settings.journal_max_bytes, self.settings.run_ttl_s],
            )
        )

    def pause(self, lease: Lease, pending: PendingApproval, attempts: int) -> Paused:
        """Make the run wait for a decision on ``pending`` and release the lease, if it is
        still ours and no cancel was asked (then nothing is written). ``attempts``: the
        turn tries this delivery made."""
        sid, run_id = lease.session_id, lease.run_id
        event = {
            "id": pending.id,
            "name": pending.name,
            "arguments": pending.arguments,
            "step": pending.step,
            "deadline": pending.deadline,
        }
        at = time.time()

        def queue(pipe: Pipeline) -> None:
            _evalsha(
                pipe,
                self._pause,
                [
                    keys.lease(sid),
                    keys.run(sid, run_id),
                    keys.session(sid),
                    *keys.event_logs(sid, run_id),
                ],
                [
                    lease.token,
                    run_id,
                    pending.model_dump_json(),
                    repr(at),
                    attempts,
                    self.settings.events_max,
                    self.settings.run_ttl_s,
                    json.dumps(event),
                ],
            )
            _touch(pipe, sid, at, self.settings.session_ttl_s)

        return Paused(self._pipeline(queue)[0])

    def acquire(self, session_id: str, run_id: str, worker: str) -> Lease | Skip:
        """Take the session's lease for its active run, or say why not (``Skip``)."""
        outcome, value, *record = self._call(
            self._acquire,
            [
                keys.session(session_id),
                keys.lease(session_id),
                keys.fencing_counter(session_id),
                keys.run(session_id, run_id),
                keys.mailbox(session_id),
                *keys.event_logs(session_id, run_id),
            ],
            [
                run_id,
                self.settings.lease_ms,
                repr(time.time()),
                worker,
                keys.run_prefix(session_id),
                self.settings.session_ttl_s,
                self.settings.events_max,
                self.settings.run_ttl_s,
            ],
        )
        if outcome == Acquired.ACQUIRED:
            fields = dict(zip(record[0][::2], record[0][1::2], strict=True))
            return Lease(value, RunRecord.from_hash(fields, run_id=run_id, session_id=session_id))
        return Skip(Acquired(outcome), next_run=value or None)

    def renew(self, leases: list[Lease]) -> list[bool]:
        """Extend leases in one round trip; False means that lease was lost."""
        now = repr(time.time())

        def queue(pipe: Pipeline) -> None:
            for lease in leases:
                _evalsha(
                    pipe,
                    self._renew,
                    [keys.lease(lease.session_id), keys.session(lease.session_id)],
                    [lease.token, self.settings.lease_ms, now],
                )

        return [bool(held) for held in self._pipeline(queue)]

    def holds(self, lease: Lease) -> bool:
        return self.redis.get(keys.lease(lease.session_id)) == lease.token

    def cancel_requested(self, lease: Lease) -> bool:
        flag = self.redis.hget(keys.run(lease.session_id, lease.run_id), "cancel_requested")
        return flag == "1"

    def save_answer(
        self,
        lease: Lease,
        answer: str,
        events: Sequence[tuple[EventType, dict[str, Any]]] = (),
        first: int = 0,
    ) -> Saved:
        """Keep the answer before the memory commit, so a worker that finds the
        turn already committed can finish the run without calling the model.
        Unless ``Saved.SAVED``, the turn must not be committed. ``events`` (the turn's
        last, as ``emit`` takes them) are logged first in the same round trip; both
        steps check the lease, so a lost lease writes neither.
        """
        sid, run_id = lease.session_id, lease.run_id

        def queue(pipe: Pipeline) -> None:
            if events:
                _evalsha(pipe, self._emit, *self._emit_call(lease, events, first))
            _evalsha(
                pipe,
                self._save_answer,
                [keys.lease(sid), keys.run(sid, run_id)],
                [lease.token, answer],
            )

        return Saved(self._pipeline(queue)[-1])

    def pending_result(self, lease: Lease) -> str | None:
        return self.redis.hget(keys.run(lease.session_id, lease.run_id), RunField.PENDING_RESULT)

    def finish(
        self,
        lease: Lease,
        state: RunState,
        *,
        result: str = "",
        error: str = "",
        attempts: int = 0,
    ) -> str | None:
        """Record the outcome and hand the session to its next run, atomically.

        ``attempts`` is how many times this delivery tried the turn. Returns the
        next run id to dispatch, or None when the session went idle. Raises
        ``LeaseLost`` if another worker holds the session now.
        """
        sid, run_id = lease.session_id, lease.run_id
        at = time.time()
        now = repr(at)

        def queue(pipe: Pipeline) -> None:
            if lease.record.webhook:  # the worker sends it next; the sweeper if it dies
                _webhook_due(pipe, sid, run_id, at + self.settings.stall_after_s)
            _evalsha(
                pipe,
                self._finish,
                [
                    keys.session(sid),
                    keys.mailbox(sid),
                    keys.lease(sid),
                    keys.run(sid, run_id),
                    keys.fencing_counter(sid),
                    *keys.event_logs(sid, run_id),
                    keys.journal(sid, run_id),
                ],
                [
                    lease.token,
                    run_id,
                    state.value,
                    now,
                    self.settings.run_ttl_s,
                    keys.run_prefix(sid),
                    result,
                    error,
                    keys.done_channel(run_id),
                    attempts,
                    self.settings.session_ttl_s,
                    self.settings.events_max,
                ],
            )
            pipe.expire(keys.run_index(run_id), self.settings.run_ttl_s)  # harmless if lost
            _touch(pipe, sid, at, self.settings.session_ttl_s)

        *_, outcome, _, _, _ = self._pipeline(queue)
        if outcome[0] == Finished.LOST:
            raise LeaseLost(sid, run_id)
        return outcome[1] if outcome[0] == Finished.NEXT else None

    def publish(self, session_id: str, run_id: str) -> None:
        """Ask a worker to run ``run_id``: push its Celery task message onto the queue.

        A publish lost after the run became active is recovered by the sweeper, and a
        duplicate delivery is harmless (the lease and the idempotent commit see to it).
        """
        self.redis.lpush(keys.TURN_QUEUE, turn_message(session_id, run_id))

    # -- webhooks -----------------------------------------------------------

    def claim_webhook(self, session_id: str, run_id: str, attempt: int) -> RunRecord | WebhookClaim:
        """Begin attempt ``attempt`` of the run's webhook: the run as it ended, or why not.
        First the run's due time moves past the attempt's time, so the sweeper makes the
        attempt again if its worker dies."""
        settings = self.settings
        due = time.time() + settings.webhook_timeout_s + settings.stall_after_s
        member = keys.webhook_due_member(session_id, run_id)

        def queue(pipe: Pipeline) -> None:
            pipe.zadd(keys.WEBHOOKS_DUE, {member: due}, xx=True)
            _evalsha(pipe, self._claim_webhook, [keys.run(session_id, run_id)], [attempt])

        _, (outcome, *record) = self._pipeline(queue)
        if outcome != WebhookClaim.CLAIMED:
            return WebhookClaim(outcome)
        fields = dict(zip(record[0][::2], record[0][1::2], strict=True))
        return RunRecord.from_hash(fields, run_id=run_id, session_id=session_id)

    def record_webhook(
        self,
        session_id: str,
        run_id: str,
        attempt: int,
        state: WebhookState,
        *,
        error: str = "",
        retry_in: float = 0.0,
    ) -> bool:
        """Record how attempt ``attempt`` ended: ``delivered``, ``failed`` (given up), or
        ``pending`` with its ``error``, the next attempt due in ``retry_in`` s. False, and
        nothing written, if the webhook settled meanwhile or a later attempt began."""
        recorded = self._call(
            self._record_webhook, [keys.run(session_id, run_id)], [attempt, state.value, error]
        )
        if recorded:
            member = keys.webhook_due_member(session_id, run_id)
            if state is WebhookState.PENDING:
                due = time.time() + retry_in + self.settings.stall_after_s
                self.redis.zadd(keys.WEBHOOKS_DUE, {member: due}, xx=True)
            else:
                self.redis.zrem(keys.WEBHOOKS_DUE, member)
        return bool(recorded)

    def due_webhooks(self, now: float | None = None) -> list[tuple[str, str, int]]:
        """Pending webhooks of ended runs that nobody sent in time (their worker died, or
        the run ended in a producer: cancelled while queued, or rejected), as ``(session
        id, run id, the attempt to make)``. Each is due again a stall period (and an
        attempt's time) later; runs whose webhook settled, or whose record is gone, leave
        ``keys.WEBHOOKS_DUE``."""
        now = time.time() if now is None else now
        stall, timeout = self.settings.stall_after_s, self.settings.webhook_timeout_s
        members = self.redis.zrangebyscore(keys.WEBHOOKS_DUE, "-inf", now)
        fields = ["state", "webhook_state", "webhook_attempts"]
        send: list[tuple[str, str, int]] = []
        for start in range(0, len(members), SWEEP_BATCH):
            batch = [(m, *keys.webhook_due_ids(m)) for m in members[start : start + SWEEP_BATCH]]
            pipe = self.redis.pipeline(transaction=False)
            for _, session_id, run_id in batch:
                pipe.hmget(keys.run(session_id, run_id), fields)
            found = pipe.execute()
            pipe = self.redis.pipeline(transaction=False)
            for (member, session_id, run_id), (state, webhook, begun) in zip(
                batch, found, strict=True
            ):
                if webhook != WebhookState.PENDING:
                    pipe.zrem(keys.WEBHOOKS_DUE, member)
                elif state in (RunState.QUEUED, RunState.RUNNING):
                    pipe.zadd(keys.WEBHOOKS_DUE, {member: now + stall}, xx=True)
                else:
                    pipe.zadd(keys.WEBHOOKS_DUE, {member: now + stall + timeout}, xx=True)
                    attempts = int(begun) if begun and begun.isdigit() else 0
                    send.append((session_id, run_id, attempts + 1))
            pipe.execute()
        return send

    # -- sweeper ------------------------------------------------------------

    def stalled_runs(self, now: float | None = None) -> list[tuple[str, str]]:
        """Active runs with no lease and no progress for ``stall_after_s``.

        Marks each as progressed (so it is re-dispatched once per stall period)
        and forgets sessions seen idle for longer than that period.
        """
        now = time.time() if now is None else now
        stall = self.settings.stall_after_s
        stalled: list[tuple[str, str]] = []
        sessions = self.redis.zrange(keys.ACTIVE_SESSIONS, 0, -1, withscores=True)
        for start in range(0, len(sessions), SWEEP_BATCH):
            batch = sessions[start : start + SWEEP_BATCH]

            def queue(pipe: Pipeline, batch: list[tuple[str, float]] = batch) -> None:
                for session_id, _ in batch:
                    _evalsha(
                        pipe,
                        self._sweep_session,
                        [keys.session(session_id), keys.lease(session_id)],
                        [repr(now), stall, keys.run_prefix(session_id)],
                    )

            for (session_id, score), outcome in zip(batch, self._pipeline(queue), strict=True):
                if outcome[0] == Swept.REDISPATCH:
                    stalled.append((session_id, outcome[1]))
                elif outcome[0] == Swept.IDLE and now - score > stall:
                    self._call(self._forget_idle, [keys.ACTIVE_SESSIONS], [session_id, repr(score)])
        return stalled


class SubmitCall:
    """One submit's Redis round trip and what its reply means, whichever client runs it
    (``RunStore`` on redis-py, ``AsyncRunStore`` on ``redis.asyncio``)."""

    def __init__(self, request: RunRequest, settings: Settings) -> None:
        if request.webhook is not None:
            try:
                check_allowed(request.webhook, settings.webhook_allow)
            except ValueError as error:
                raise InvalidInput.at("webhook", str(error)) from None
        self.request = request
        self.settings = settings
        self.session_id = request.session_id
        self.run_id = uuid.uuid4().hex
        self.now = time.time()

    def queue(self, pipe: Any, submit_sha: str) -> None:
        """In this order, so the index entries exist before the run can."""
        request, sid, run_id, now = self.request, self.session_id, self.run_id, self.now
        idem = request.idempotency_key
        fields = RunRecord.new_hash(run_id, request, now)
        pipe.set(keys.run_index(run_id), sid)
        pipe.zadd(keys.ACTIVE_SESSIONS, {sid: now})
        pipe.zadd(keys.SESSIONS, {sid: now})
        if request.webhook and request.strategy is Strategy.REJECT:  # SUBMIT may end it
            _webhook_due(pipe, sid, run_id, now)
        pipe.evalsha(
            submit_sha,
            7,
            keys.session(sid),
            keys.mailbox(sid),
            keys.run(sid, run_id),
            keys.idempotency(sid, idem or "-"),
            *keys.event_logs(sid, run_id),
            keys.session_runs(sid),
            run_id,
            request.strategy.value,
            "1" if idem else "0",
            self.settings.idempotency_ttl_s,
            repr(now),
            keys.run_prefix(sid),
            self.settings.run_ttl_s,
            self.settings.events_max,
            *(item for pair in fields.items() for item in pair),
        )

    def read(self, reply: list[Any]) -> Submission | str:
        """``SUBMIT``'s reply: what was done, or the id of the earlier run of a duplicate
        (then ``forget_index`` and ``duplicate`` with that run's hash)."""
        outcome, found_id, position, wake = reply
        if outcome == Submitted.DUPLICATE:
            return str(found_id)
        if outcome == Submitted.REJECTED:
            return Submission(self.run_id, RunState.REJECTED, None, dispatch=False, duplicate=False)
        dispatch = outcome == Submitted.DISPATCH
        return Submission(
            self.run_id,
            RunState.QUEUED,
            int(position),
            dispatch,
            duplicate=False,
            wake=wake or None,
        )

    def forget_index(self, client: Any) -> Any:
        """A duplicate's own run id was never used."""
        return client.delete(keys.run_index(self.run_id))

    def keep_index(self, client: Any) -> Any:
        """A rejected run is finished: its index entry expires with its record."""
        return client.expire(keys.run_index(self.run_id), self.settings.run_ttl_s)

    def duplicate(self, found_id: str, fields: dict[str, str]) -> Submission:
        """The earlier run, unless it was asked with another request (a conflict)."""
        if not fields:
            raise RunNotFound(found_id)
        record = RunRecord.from_hash(fields, run_id=found_id, session_id=self.session_id)
        differs = [
            name
            for name in ("message", "agent", "strategy", "metadata", "webhook")
            if getattr(record, name) != getattr(self.request, name)
        ]
        if differs and not record.corrupt:
            raise IdempotencyConflict(found_id, differs)
        return Submission(found_id, record.state, None, dispatch=False, duplicate=True)


def _evalsha(
    client: redis.Redis | Pipeline, script: Script, keys: list[str], args: list[Any]
) -> Any:
    return client.evalsha(script.sha, len(keys), *keys, *args)


def _touch(pipe: Pipeline, session_id: str, at: float, session_ttl_s: float) -> None:
    """Two commands: the session's last activity in ``keys.SESSIONS`` is ``at``; sessions
    idle for ``session_ttl_s`` leave it."""
    pipe.zadd(keys.SESSIONS, {session_id: at})
    pipe.zremrangebyscore(keys.SESSIONS, "-inf", at - session_ttl_s)


def _webhook_due(pipe: Pipeline, session_id: str, run_id: str, at: float) -> None:
    """Mark the run's webhook due at ``at``: a command of its own, before the step that may
    end the run, as ``keys.WEBHOOKS_DUE`` is outside the session's slot."""
    pipe.zadd(keys.WEBHOOKS_DUE, {keys.webhook_due_member(session_id, run_id): at})


class LeaseLost(RuntimeError):
    """The worker's lease on the session expired and another worker may hold it."""

    def __init__(self, session_id: str, run_id: str) -> None:
        super().__init__(f"lease on session {session_id!r} lost while running run {run_id!r}")
        self.session_id = session_id
        self.run_id = run_id
