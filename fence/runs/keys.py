"""Every Redis key the runtime uses, named once.

Keys of one session carry the session id in a hash tag (``{...}``) so they
share a Redis Cluster slot and multi-key Lua scripts stay legal. The only
keys outside a session's slot are the run-id index (a run id alone must find
its session), the index of possibly-active sessions the sweeper walks, the index of
all sessions by activity, the agents workers advertise, the set of webhooks due,
and the broker queue turns are published to.
"""

from __future__ import annotations

from enum import StrEnum

PREFIX = "fence"


class SessionField(StrEnum):
    """Fields of the session hash (``session``)."""

    ACTIVE = "active"
    """The run id in flight; absent when the session is idle."""
    PROGRESS_AT = "progress_at"
    """When the session last showed life (accepted, leased, renewed, advanced), epoch s."""
    REDISPATCHES = "redispatches"
    """Sweeper re-dispatches since the active run last made progress."""


class RunField(StrEnum):
    """Fields of a run hash beside ``RunRecord``'s (which are named by that model)."""

    PENDING_RESULT = "pending_result"
    """The answer saved before the memory commit, until the run finishes."""
    EVENTS_EMITTED = "events_emitted"
    """``<lease token>:<n>``: the worker holding that lease has logged n events, so a
    retried ``EMIT`` logs none twice; until the run finishes."""
    JOURNAL_BYTES = "journal_bytes"
    """Bytes in the run's step journal, held under ``FENCE_JOURNAL_MAX_BYTES``."""


def session(session_id: str) -> str:
    """Hash: ``active`` (run id in flight, absent when idle), ``progress_ms``."""
    return f"{PREFIX}:{{{session_id}}}:session"


def mailbox(session_id: str) -> str:
    """List of run ids accepted while the session was busy, oldest first."""
    return f"{PREFIX}:{{{session_id}}}:mailbox"


def lease(session_id: str) -> str:
    """String: the fencing token of the worker running the session's turn (PX TTL)."""
    return f"{PREFIX}:{{{session_id}}}:lease"


def fencing_counter(session_id: str) -> str:
    """String: the session's newest fencing token; ``ACQUIRE`` gives each lease a
    larger one (see ``fence.runs.scripts``). Expires with the idle session."""
    return f"{PREFIX}:{{{session_id}}}:fencing"


def run(session_id: str, run_id: str) -> str:
    """Hash: the run record (see ``fence.runs.schema.RunRecord``)."""
    return f"{PREFIX}:{{{session_id}}}:run:{run_id}"


def journal(session_id: str, run_id: str) -> str:
    """List: the run's step journal, JSON entries oldest first (``fence.runs.journal``);
    deleted when the run ends."""
    return f"{PREFIX}:{{{session_id}}}:journal:{run_id}"


def session_runs(session_id: str) -> str:
    """Sorted set: the session's run ids by when they were accepted (epoch s), for
    listing them; members whose record expired are dropped as they are met."""
    return f"{PREFIX}:{{{session_id}}}:runs"


def run_prefix(session_id: str) -> str:
    """Scripts append a run id to this to address a run record of the same session."""
    return f"{PREFIX}:{{{session_id}}}:run:"


def idempotency(session_id: str, key: str) -> str:
    """String: the run id first accepted under this idempotency key."""
    return f"{PREFIX}:{{{session_id}}}:idem:{key}"


def session_events(session_id: str) -> str:
    """Stream: the session's events, every run's, in order (``fence.runs.events``)."""
    return f"{PREFIX}:{{{session_id}}}:events"


def run_events(session_id: str, run_id: str) -> str:
    """Stream: one run's events, the same entries (and ids) as in the session's."""
    return f"{PREFIX}:{{{session_id}}}:events:{run_id}"


def event_logs(session_id: str, run_id: str) -> tuple[str, str]:
    """The two logs every event of a run goes to, as the scripts take them."""
    return session_events(session_id), run_events(session_id, run_id)


def run_index(run_id: str) -> str:
    """String: the session id of a run, so a run id alone can be looked up."""
    return f"{PREFIX}:runs:{{{run_id}}}"


def done_channel(run_id: str) -> str:
    """Pub/sub channel announcing that a run reached a terminal state."""
    return f"{PREFIX}:done:{run_id}"


ACTIVE_SESSIONS = f"{PREFIX}:active-sessions"
"""Sorted set (score: ms when added) of sessions that may have a run in flight.

A superset: a session is added before it can become active and removed by
the sweeper only after it was seen idle, so no active session is missing.
"""

SESSIONS = f"{PREFIX}:sessions"
"""Sorted set: every session by its last activity (a run accepted, paused, decided or
finished; epoch s), for listing them; sessions idle for ``session_ttl_s`` are dropped."""

AGENTS = f"{PREFIX}:agents"
"""Hash: worker hostname -> JSON ``{"agents": [...], "until": epoch s}``, the agents each
live worker can run (``fence.runs.advertised``); stale fields are dropped as they are met."""

WEBHOOKS_DUE = f"{PREFIX}:webhooks-due"
"""Sorted set of runs whose webhook may still need sending (``webhook_due_member``), scored
with when the sweeper should send it if nobody has by then (epoch s).

A superset, like ``ACTIVE_SESSIONS``: every step that ends a run with a webhook adds it
first, in the same round trip but as a command of its own, since this key is outside the
session's slot; the sweeper drops a run once its webhook is delivered, failed or gone.
So a worker that dies right after ending a run leaves its webhook here, due.
"""


def webhook_due_member(session_id: str, run_id: str) -> str:
    """A run's member of ``WEBHOOKS_DUE``: a session id has no space, a run id is hex."""
    return f"{session_id} {run_id}"


def webhook_due_ids(member: str) -> tuple[str, str]:
    """The session id and run id a ``WEBHOOKS_DUE`` member names."""
    session_id, _, run_id = member.rpartition(" ")
    return session_id, run_id


TURN_QUEUE = "celery"
"""List: the broker queue turns are published to (``fence.runs.turn_message``), Celery's
default queue, which workers consume and KEDA scales on. Outside every session's slot."""
