"""The Lua scripts that make every multi-key step of the runtime atomic.

Failure timeline (who may die where, and what then):

* Producer dies after ``SUBMIT`` returned ``dispatch`` but before publishing
  the Celery task: the session is active with no task. The sweeper sees no
  lease and no progress for ``stall_after_s`` and publishes it again.
* Worker dies before ``ACQUIRE``: the task is redelivered (acks late) or the
  sweeper re-dispatches it; nothing was written.
* Worker dies holding the lease, before its memory commit: the lease expires,
  the sweeper re-dispatches, the next worker resumes the turn from its journal
  (``JOURNAL``: every step it finished is replayed, not run again; only the step
  in flight may run twice). The dead worker wrote nothing to memory (commits are
  atomic), and a stale one cannot journal (the write checks its token).
* A run waiting for an approval (``PAUSE``) has no lease and no worker; the
  sweeper leaves it alone (``SWEEP_SESSION``) until it is cancelled or its
  deadline passes, then publishes it, and the worker that takes it ends it through
  ``FINISH`` like any run. ``DECIDE`` journals a decision and queues it again.
* Worker dies after the memory commit, before ``FINISH``: the next worker
  finds the turn already in memory (idempotent commit keyed by run id), does
  not call the model again, and runs ``FINISH``.
* Worker stalls (GC pause, partition) and its lease expires while another
  worker takes over: the stale worker's renewals fail, so it stops at its next
  checkpoint. It may be past its last checkpoint, between ``SAVE_ANSWER`` and
  its memory commit. So the worker that takes over claims the session's fence
  in memory with its newer token before it decides anything: from then on the
  memory refuses the stale worker's commit (its token is older). If the stale
  commit landed before the claim, the new worker finds the turn in memory and
  finishes the run as succeeded; it can never end as failed or cancelled with
  its turn in memory. ``FINISH`` refuses the stale worker's token.
* Fencing tokens never go backwards: ``ACQUIRE`` takes the larger of the
  counter plus one and Redis's clock in milliseconds, so a token issued after
  an idle session's counter expired is still larger than any before it.

Idle sessions expire: when a session goes idle its hash and fencing counter
get ``session_ttl_s``; a submit that makes it active again removes the TTL
(``PERSIST``), so no active session, queued run or lease can lose its state.

Every script keeps to keys of one session (one hash tag); run records of the
same session are addressed through the ``run_prefix`` argument.

The Lua sources write every hash field, run state, strategy and outcome as
``'$name'``; ``_lua`` fills them in and refuses a name that is not declared in
Python (``keys.SessionField``, ``keys.RunField``, ``RunRecord``'s fields,
``RunState``, ``Strategy`` and the outcome enums below), so each is named once.
Event types are written ``'$event_<name>'`` (``EventType.<NAME>``).
Each script's first lines give its KEYS, ARGV and what it returns.

Webhooks (``fence.runs.webhooks``): a worker may die before, during or after a
delivery attempt. Each attempt number is claimed once (``CLAIM_WEBHOOK``), so a
duplicate or late task does nothing; an attempt's outcome is recorded only while the
webhook is pending and no later attempt began (``RECORD_WEBHOOK``); a run left due
in ``keys.WEBHOOKS_DUE`` is sent again by the sweeper with the next attempt number.
"""

from __future__ import annotations

from enum import StrEnum
from string import Template

from fence.runs.events import EventType
from fence.runs.keys import RunField, SessionField
from fence.runs.schema import RunRecord, RunState, Strategy, WebhookState


class Submitted(StrEnum):
    """What ``SUBMIT`` did with a run."""

    DISPATCH = "dispatch"
    """The session was idle: the run is active now; publish its task."""
    QUEUED = "queued"
    """The session is busy: the run waits in the mailbox."""
    REJECTED = "rejected"
    """The session is busy and the strategy is reject: recorded as rejected."""
    DUPLICATE = "duplicate"
    """The idempotency key names an earlier run: nothing was written."""


class Acquired(StrEnum):
    """What ``ACQUIRE`` found."""

    ACQUIRED = "acquired"
    """The lease is ours, with a new fencing token."""
    NOT_ACTIVE = "not_active"
    """Not the session's active run: a duplicate or late delivery."""
    LEASED = "leased"
    """Another worker holds the session's lease."""
    MISSING = "missing"
    """The run's record is gone; if it was the active run, the session moved on."""


class Saved(StrEnum):
    """What ``SAVE_ANSWER`` did."""

    SAVED = "saved"
    LOST = "lost"
    """The lease is no longer ours: do not commit."""
    CANCELLED = "cancelled"
    """A cancel was requested: do not commit."""


class Finished(StrEnum):
    """What ``FINISH`` did."""

    NEXT = "next"
    """The outcome is recorded and the session's next run is active: publish it."""
    IDLE = "idle"
    """The outcome is recorded and the session is idle."""
    LOST = "lost"
    """The lease is no longer ours: nothing was written."""


class Cancelled(StrEnum):
    """What ``CANCEL`` did."""

    CANCELLED = "cancelled"
    """The run was queued: it left the mailbox and is cancelled."""
    REQUESTED = "requested"
    """The run is in flight: it stops at its next step."""
    TERMINAL = "terminal"
    """The run had already finished: nothing changed."""
    MISSING = "missing"
    """No such run."""


class Emitted(StrEnum):
    """What ``EMIT`` did."""

    EMITTED = "emitted"
    LOST = "lost"
    """The lease is no longer ours: nothing was written."""


class Journaled(StrEnum):
    """What ``JOURNAL`` did."""

    RECORDED = "recorded"
    LOST = "lost"
    """The lease is no longer ours: nothing was written."""
    FULL = "full"
    """The entry would take the journal past ``FENCE_JOURNAL_MAX_BYTES``: not written."""


class Paused(StrEnum):
    """What ``PAUSE`` did."""

    WAITING = "waiting"
    """The run waits for an approval; the lease is released."""
    LOST = "lost"
    """The lease is no longer ours: nothing was written."""
    CANCELLED = "cancelled"
    """A cancel was requested: nothing was written; finish the run as cancelled."""


class Decided(StrEnum):
    """What ``DECIDE`` did."""

    RESUMED = "resumed"
    """The decision is journaled and the run queued again: publish it."""
    NOT_WAITING = "not_waiting"
    """The run is not waiting on that call (any more): nothing was written."""
    MISSING = "missing"


class WebhookClaim(StrEnum):
    """What ``CLAIM_WEBHOOK`` found."""

    CLAIMED = "claimed"
    """This attempt is ours to make."""
    STALE = "stale"
    """Not the next attempt: a duplicate or late task, or the sweeper sent it again."""
    SETTLED = "settled"
    """Delivered or failed already, or the run has no webhook."""
    UNFINISHED = "unfinished"
    """The run has not ended: there is no outcome to send yet."""
    MISSING = "missing"
    """The run's record is gone (expired)."""


class Swept(StrEnum):
    """What ``SWEEP_SESSION`` found."""

    REDISPATCH = "redispatch"
    """An active run with no lease and no progress (or a waiting run that was cancelled
    or ran out of time): publish it again."""
    WAITING = "waiting"
    """The active run waits for an approval, within its time."""
    IDLE = "idle"
    LEASED = "leased"
    RECENT = "recent"
    """Progress within the (backed-off) stall period: leave it."""


_NAMES = {
    name: name
    for name in [
        *SessionField,
        *RunField,
        *RunRecord.model_fields,
        *RunState,
        *Strategy,
        *WebhookState,
        *(
            o
            for e in (
                Submitted,
                Acquired,
                Saved,
                Finished,
                Cancelled,
                Emitted,
                Journaled,
                Paused,
                Decided,
                Swept,
            )
            for o in e
        ),
        *WebhookClaim,
    ]
} | {f"event_{kind.name.lower()}": kind.value for kind in EventType}


def _lua(source: str) -> str:
    """``source`` with its ``$name``s filled in; ``KeyError`` names an undeclared one."""
    return Template(source).substitute(_NAMES)


LOG = """
-- Append one event to the session's log and to the run's, with the same id (the
-- run's log is its slice of the session's); both keep about max_events entries.
-- Returns the event id. A script that appends calls keep_logs once after.
local function append_event(session_log, run_log, run_id, kind, at, data, max_events)
  local id = redis.call('XADD', session_log, 'MAXLEN', '~', max_events, '*',
    'run', run_id, 'type', kind, 'at', at, 'data', data)
  redis.call('XADD', run_log, 'MAXLEN', '~', max_events, id,
    'run', run_id, 'type', kind, 'at', at, 'data', data)
  return id
end

-- Both logs expire ttl_s after their last event.
local function keep_logs(session_log, run_log, ttl_s)
  redis.call('EXPIRE', session_log, ttl_s)
  redis.call('EXPIRE', run_log, ttl_s)
end

-- One event, appended and kept.
local function log_event(session_log, run_log, run_id, kind, at, data, max_events, ttl_s)
  local id = append_event(session_log, run_log, run_id, kind, at, data, max_events)
  keep_logs(session_log, run_log, ttl_s)
  return id
end

-- The terminal event, written in the step that makes the run terminal.
local function log_finished(session_log, run_log, run_id, state, at, error, max_events, ttl_s)
  local data = {state = state}
  if error and error ~= '' then data['error'] = error end
  return log_event(session_log, run_log, run_id, '$event_finished', at, cjson.encode(data),
    max_events, ttl_s)
end
"""

SUBMIT = _lua(
    LOG
    + """
-- KEYS: session, mailbox, run, idempotency, session events, run events, session runs
-- ARGV: run_id, strategy, has_idempotency, idempotency_ttl_s, now, run_prefix,
--       run_ttl_s, max_events, field1, value1, ...
-- RETURNS: {Submitted, run id (the earlier one if duplicate), runs ahead (-1: none),
--          the id of a waiting run this one interrupted, to publish so a worker ends it
--          (or '')}
if ARGV[3] == '1' then
  local existing = redis.call('GET', KEYS[4])
  if existing then return {'$duplicate', existing, -1, ''} end
end
local fields = {}
for i = 9, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[3], unpack(fields))
redis.call('ZADD', KEYS[7], ARGV[5], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', tonumber(ARGV[5]) - tonumber(ARGV[7]))
redis.call('EXPIRE', KEYS[7], ARGV[7])
local active = redis.call('HGET', KEYS[1], '$active')
local outcome
if not active then
  redis.call('HSET', KEYS[1], '$active', ARGV[1], '$progress_at', ARGV[5])
  redis.call('PERSIST', KEYS[1])
  outcome = {'$dispatch', ARGV[1], 0, ''}
elseif ARGV[2] == '$reject' then
  redis.call('HSET', KEYS[3], '$state', '$rejected', '$finished_at', ARGV[5],
    '$error', 'session is busy with run ' .. active .. ' and strategy is reject')
  redis.call('EXPIRE', KEYS[3], ARGV[7])
  outcome = {'$rejected', ARGV[1], -1, ''}
elseif ARGV[2] == '$interrupt' then
  redis.call('HSET', ARGV[6] .. active, '$cancel_requested', '1')
  redis.call('LPUSH', KEYS[2], ARGV[1])
  local waiting = redis.call('HGET', ARGV[6] .. active, '$state') == '$waiting'
  outcome = {'$queued', ARGV[1], 1, waiting and active or ''}
else
  outcome = {'$queued', ARGV[1], redis.call('RPUSH', KEYS[2], ARGV[1]), ''}
end
if ARGV[3] == '1' then redis.call('SET', KEYS[4], ARGV[1], 'EX', ARGV[4]) end
log_event(KEYS[5], KEYS[6], ARGV[1], '$event_accepted', ARGV[5],
  cjson.encode({position = outcome[3] >= 0 and outcome[3] or nil}), ARGV[8], ARGV[7])
if outcome[1] == '$rejected' then
  log_finished(KEYS[5], KEYS[6], ARGV[1], '$rejected', ARGV[5],
    redis.call('HGET', KEYS[3], '$error'), ARGV[8], ARGV[7])
end
return outcome
"""
)

ADVANCE = """
-- Make the session's next queued run active, or mark the session idle (its
-- hash and fencing counter then expire after session_ttl_s unless it is
-- used again). Returns the next run id, or false.
local function advance(session, mailbox, counter, run_prefix, now, session_ttl_s)
  while true do
    local candidate = redis.call('LPOP', mailbox)
    if not candidate then break end
    if redis.call('HGET', run_prefix .. candidate, '$state') == '$queued' then
      redis.call('HSET', session, '$active', candidate, '$progress_at', now)
      redis.call('HDEL', session, '$redispatches')
      return candidate
    end
  end
  redis.call('HDEL', session, '$active')
  redis.call('HSET', session, '$progress_at', now)
  redis.call('EXPIRE', session, session_ttl_s)
  redis.call('EXPIRE', counter, session_ttl_s)
  return false
end
"""

ACQUIRE = _lua(
    ADVANCE
    + LOG
    + """
-- KEYS: session, lease, fencing counter, run, mailbox, session events, run events
-- ARGV: run_id, lease_ms, now, worker, run_prefix, session_ttl_s, max_events, run_ttl_s
-- RETURNS: {'acquired', token, the run hash as a flat list}, or {Acquired, next run id or ''}
local active = redis.call('HGET', KEYS[1], '$active') == ARGV[1]
if redis.call('EXISTS', KEYS[4]) == 0 then
  -- The active run's record is gone (expired or lost in a failover): nothing can
  -- run it, so move the session on rather than leave it busy forever.
  if active and redis.call('EXISTS', KEYS[2]) == 0 then
    return {'$missing', advance(KEYS[1], KEYS[5], KEYS[3], ARGV[5], ARGV[3], ARGV[6]) or ''}
  end
  return {'$missing', ''}
end
if not active then return {'$not_active', ''} end
if redis.call('EXISTS', KEYS[2]) == 1 then return {'$leased', ''} end
-- max(counter + 1, Redis clock in ms): strictly increasing, and still larger
-- than every earlier token after an idle session's counter expired.
local clock = redis.call('TIME')
local now_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local token = string.format('%d',
  math.max(tonumber(redis.call('GET', KEYS[3]) or '0') + 1, now_ms))
redis.call('SET', KEYS[3], token)
redis.call('SET', KEYS[2], token, 'PX', ARGV[2])
if redis.call('HGET', KEYS[4], '$state') == '$queued' then  -- a waiting run stays waiting
  redis.call('HSET', KEYS[4], '$state', '$running')
  if not redis.call('HGET', KEYS[4], '$started_at') then
    redis.call('HSET', KEYS[4], '$started_at', ARGV[3])
  end
end
redis.call('HSET', KEYS[4], '$worker', ARGV[4])
-- HINCRBY would fail on a field corrupted to a non-number, midway, leaving the lease held
local delivery = (tonumber(redis.call('HGET', KEYS[4], '$deliveries')) or 0) + 1
redis.call('HSET', KEYS[4], '$deliveries', delivery)
log_event(KEYS[6], KEYS[7], ARGV[1], '$event_started', ARGV[3], cjson.encode({
  attempt = (tonumber(redis.call('HGET', KEYS[4], '$attempts')) or 0) + 1,
  delivery = delivery, worker = ARGV[4]}), ARGV[7], ARGV[8])
redis.call('HSET', KEYS[1], '$progress_at', ARGV[3])
redis.call('HDEL', KEYS[1], '$redispatches')
return {'$acquired', token, redis.call('HGETALL', KEYS[4])}
"""
)

RENEW = _lua("""
-- KEYS: lease, session   ARGV: token, lease_ms, now
-- RETURNS: 1 if the lease was ours and is extended, else 0
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('HSET', KEYS[2], '$progress_at', ARGV[3])
return 1
""")

SAVE_ANSWER = _lua("""
-- KEYS: lease, run   ARGV: token, answer
-- RETURNS: a Saved
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return '$lost' end
if redis.call('HGET', KEYS[2], '$cancel_requested') == '1' then return '$cancelled' end
redis.call('HSET', KEYS[2], '$pending_result', ARGV[2])
return '$saved'
""")

FINISH = _lua(
    ADVANCE
    + LOG
    + """
-- KEYS: session, mailbox, lease, run, fencing counter, session events, run events, journal
-- ARGV: token, run_id, state, now, run_ttl_s, run_prefix, result, error, done_channel,
--       attempts (turn tries this delivery made), session_ttl_s, max_events
-- RETURNS: {'next', next run id}, {'idle'} or {'lost'} (Finished)
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return {'$lost'} end
redis.call('HSET', KEYS[4], '$state', ARGV[3], '$finished_at', ARGV[4],
  '$result', ARGV[7], '$error', ARGV[8])
redis.call('HSET', KEYS[4], '$attempts',
  (tonumber(redis.call('HGET', KEYS[4], '$attempts')) or 0) + tonumber(ARGV[10]))
redis.call('HDEL', KEYS[4], '$pending_result', '$events_emitted', '$journal_bytes')
redis.call('DEL', KEYS[8])
redis.call('EXPIRE', KEYS[4], ARGV[5])
if ARGV[3] == '$succeeded' then
  append_event(KEYS[6], KEYS[7], ARGV[2], '$event_committed', ARGV[4], '{}', ARGV[12])
end
log_finished(KEYS[6], KEYS[7], ARGV[2], ARGV[3], ARGV[4], ARGV[8], ARGV[12], ARGV[5])
redis.call('PUBLISH', ARGV[9], ARGV[3])
redis.call('DEL', KEYS[3])
local next_run = advance(KEYS[1], KEYS[2], KEYS[5], ARGV[6], ARGV[4], ARGV[11])
if next_run then return {'$next', next_run} end
return {'$idle'}
"""
)

CANCEL = _lua(
    LOG
    + """
-- KEYS: session, mailbox, run, session events, run events
-- ARGV: run_id, now, run_ttl_s, done_channel, max_events
-- RETURNS: {Cancelled}
local state = redis.call('HGET', KEYS[3], '$state')
if not state then return {'$missing'} end
if state ~= '$queued' and state ~= '$running' and state ~= '$waiting' then
  return {'$terminal'}
end
if redis.call('HGET', KEYS[1], '$active') == ARGV[1] then
  redis.call('HSET', KEYS[3], '$cancel_requested', '1')
  return {'$requested'}
end
redis.call('LREM', KEYS[2], 1, ARGV[1])
redis.call('HSET', KEYS[3], '$state', '$cancelled', '$finished_at', ARGV[2],
  '$cancel_requested', '1')
redis.call('EXPIRE', KEYS[3], ARGV[3])
log_finished(KEYS[4], KEYS[5], ARGV[1], '$cancelled', ARGV[2], '', ARGV[5], ARGV[3])
redis.call('PUBLISH', ARGV[4], '$cancelled')
return {'$cancelled'}
"""
)

EMIT = _lua(
    LOG
    + """
-- KEYS: lease, session events, run events, run
-- ARGV: token, run_id, now, max_events, ttl_s, first, type1, data1, type2, data2, ...
--       (first: how many events this lease logged before this batch)
-- RETURNS: {'emitted', id, ...} (the ids of the events logged now) or {'lost'} (nothing
-- written): a turn's events, logged only by the worker holding the lease, each once
-- even if a batch is sent again (a retry after a lost reply)
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {'$lost'} end
local sent = 0
local mark = redis.call('HGET', KEYS[4], '$events_emitted')
if mark then
  local token, count = string.match(mark, '^(%d+):(%d+)$$')
  if token == ARGV[1] then sent = tonumber(count) end
end
local outcome = {'$emitted'}
local index = tonumber(ARGV[6])
for i = 7, #ARGV, 2 do
  if index >= sent then
    outcome[#outcome + 1] = append_event(KEYS[2], KEYS[3], ARGV[2], ARGV[i], ARGV[3],
      ARGV[i + 1], ARGV[4])
  end
  index = index + 1
end
if index > sent then
  redis.call('HSET', KEYS[4], '$events_emitted', ARGV[1] .. ':' .. index)
  keep_logs(KEYS[2], KEYS[3], ARGV[5])
end
return outcome
"""
)

JOURNAL = _lua("""
-- KEYS: lease, journal, run   ARGV: token, entry (JSON), max_bytes, ttl_s
-- RETURNS: a Journaled: a step of the turn kept, only by the worker holding the lease
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return '$lost' end
local used = (tonumber(redis.call('HGET', KEYS[3], '$journal_bytes')) or 0) + #ARGV[2]
if used > tonumber(ARGV[3]) then return '$full' end
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('HSET', KEYS[3], '$journal_bytes', used)
return '$recorded'
""")

SWEEP_SESSION = _lua("""
-- KEYS: session, lease   ARGV: now, stall_after_s, run_prefix
-- RETURNS: {'redispatch', active run id} or {Swept}
-- A run re-dispatched n times waits stall_after_s * 2^n (n <= 6) before the
-- next: a run that is only queued behind a long backlog is not flooded with
-- duplicates. ACQUIRE and ADVANCE reset n. A waiting run is left alone until it
-- is cancelled or its approval deadline passes: then a worker ends it.
local active = redis.call('HGET', KEYS[1], '$active')
if not active then return {'$idle'} end
if redis.call('EXISTS', KEYS[2]) == 1 then return {'$leased'} end
local run = ARGV[3] .. active
if redis.call('HGET', run, '$state') == '$waiting'
    and redis.call('HGET', run, '$cancel_requested') ~= '1' then
  local readable, pending = pcall(cjson.decode, redis.call('HGET', run, '$approval') or '')
  if readable and type(pending) == 'table' and tonumber(pending['deadline'])
      and tonumber(ARGV[1]) < tonumber(pending['deadline']) then
    return {'$waiting'}
  end
end
local progress = tonumber(redis.call('HGET', KEYS[1], '$progress_at') or '0')
local sent = tonumber(redis.call('HGET', KEYS[1], '$redispatches') or '0')
local wait = tonumber(ARGV[2]) * 2 ^ math.min(sent, 6)
if tonumber(ARGV[1]) - progress < wait then return {'$recent'} end
redis.call('HSET', KEYS[1], '$progress_at', ARGV[1])
redis.call('HINCRBY', KEYS[1], '$redispatches', 1)
return {'$redispatch', active}
""")

PAUSE = _lua(
    LOG
    + """
-- KEYS: lease, run, session, session events, run events
-- ARGV: token, run_id, approval (PendingApproval JSON), now, attempts (turn tries this
--       delivery made), max_events, ttl_s, event data (JSON)
-- RETURNS: a Paused: the run waits for a decision with its lease released, so its
-- worker's slot is free and the session stays the run's (its later runs queue)
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return '$lost' end
if redis.call('HGET', KEYS[2], '$cancel_requested') == '1' then return '$cancelled' end
redis.call('HSET', KEYS[2], '$state', '$waiting', '$approval', ARGV[3],
  '$attempts', (tonumber(redis.call('HGET', KEYS[2], '$attempts')) or 0) + tonumber(ARGV[5]),
  '$waits', (tonumber(redis.call('HGET', KEYS[2], '$waits')) or 0) + 1)
redis.call('HDEL', KEYS[2], '$events_emitted')
log_event(KEYS[4], KEYS[5], ARGV[2], '$event_approval_requested', ARGV[4], ARGV[8], ARGV[6],
  ARGV[7])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[3], '$progress_at', ARGV[4])
return '$waiting'
"""
)

DECIDE = _lua(
    LOG
    + """
-- KEYS: run, journal, session, session events, run events
-- ARGV: run_id, call id, decision (journal entry JSON), now, max_events, ttl_s,
--       event data (JSON)
-- RETURNS: {Decided, the run's state}: a waiting run's decision on the call it waits
-- on, journaled, and the run queued again to resume
local state = redis.call('HGET', KEYS[1], '$state')
if not state then return {'$missing', ''} end
if state ~= '$waiting' then return {'$not_waiting', state} end
local readable, pending = pcall(cjson.decode, redis.call('HGET', KEYS[1], '$approval') or '')
if not readable or type(pending) ~= 'table' or pending['id'] ~= ARGV[2] then
  return {'$not_waiting', state}
end
redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[6])
redis.call('HSET', KEYS[1], '$state', '$queued',
  '$journal_bytes', (tonumber(redis.call('HGET', KEYS[1], '$journal_bytes')) or 0) + #ARGV[3])
redis.call('HDEL', KEYS[1], '$approval')
redis.call('HSET', KEYS[3], '$progress_at', ARGV[4])
redis.call('HDEL', KEYS[3], '$redispatches')
log_event(KEYS[4], KEYS[5], ARGV[1], '$event_approval_decided', ARGV[4], ARGV[7], ARGV[5],
  ARGV[6])
return {'$resumed', '$queued'}
"""
)

FORGET_IDLE = _lua("""
-- KEYS: active-sessions index   ARGV: session_id, score seen
-- RETURNS: 1 if the session was forgotten, 0 if it was touched since it was seen idle
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) == tonumber(ARGV[2]) then
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
""")

CLAIM_WEBHOOK = _lua("""
-- KEYS: run   ARGV: attempt
-- RETURNS: {'claimed', the run hash as a flat list} or {WebhookClaim}: attempt n of an
-- ended run's pending webhook, claimed once and only after attempt n - 1 was
local state = redis.call('HGET', KEYS[1], '$state')
if not state then return {'$missing'} end
if state == '$queued' or state == '$running' or state == '$waiting' then
  return {'$unfinished'}
end
if redis.call('HGET', KEYS[1], '$webhook_state') ~= '$pending' then return {'$settled'} end
local begun = tonumber(redis.call('HGET', KEYS[1], '$webhook_attempts')) or 0
if begun ~= tonumber(ARGV[1]) - 1 then return {'$stale'} end
redis.call('HSET', KEYS[1], '$webhook_attempts', ARGV[1])
return {'$claimed', redis.call('HGETALL', KEYS[1])}
""")

RECORD_WEBHOOK = _lua("""
-- KEYS: run   ARGV: attempt, webhook state (pending: it is retried), error
-- RETURNS: 1 if recorded; 0 (nothing written) if the webhook is no longer pending or,
-- unless this attempt delivered it, a later attempt began
if redis.call('HGET', KEYS[1], '$webhook_state') ~= '$pending' then return 0 end
if ARGV[2] ~= '$delivered'
    and (tonumber(redis.call('HGET', KEYS[1], '$webhook_attempts')) or 0) ~= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], '$webhook_state', ARGV[2], '$webhook_error', ARGV[3])
return 1
""")
