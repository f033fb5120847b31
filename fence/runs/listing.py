"""Pages of sessions (most recently active first) and of a session's runs (newest first).

Both walk a sorted set (``keys.SESSIONS``, ``keys.session_runs``) from a cursor, an
opaque string that names the last item shown: its score and its member, so a page
neither skips nor repeats an item when others are added meanwhile (ties on the score
are ordered by member, as Redis orders them). A run whose record has expired is
dropped from its session's set when a page meets it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Generic, TypeVar

from fence.runs import keys
from fence.runs.keys import SessionField
from fence.runs.schema import RunRecord, RunState
from fence.validation import InvalidInput

if TYPE_CHECKING:
    from fence.runs.store import RunStore

MAX_PAGE = 500
CURSOR = re.compile(
    r"(-?[0-9]{1,20}(?:\.[0-9]{1,20})?(?:[eE][-+]?[0-9]{1,2})?)/"
    r"([A-Za-z0-9][A-Za-z0-9_.:@-]{0,127})"
)
"""A cursor: the score and the member (a session or run id) of the last item shown."""
BATCH = 100
"""Set members read per round trip while filling a page."""
T = TypeVar("T")


class SessionState(StrEnum):
    IDLE = "idle"
    """No run in flight."""
    BUSY = "busy"
    """A run is in flight (queued for a worker or running)."""
    WAITING = "waiting"
    """Its run in flight waits for an approval."""


@dataclass(frozen=True)
class SessionSummary:
    session_id: str
    state: SessionState
    active_run: str | None
    queued_count: int
    """Runs waiting behind the active one."""
    last_activity: float
    """When a run of it was last accepted, paused, decided or finished (epoch s)."""


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None
    """Pass it back for the next page; None on the last."""


def check_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise InvalidInput.at("limit", f"must be an integer from 1 to {MAX_PAGE}")
    return limit


def sessions(
    store: RunStore, state: SessionState | str | None, limit: int, cursor: str | None
) -> Page[SessionSummary]:
    """Sessions by last activity, newest first, those in ``state`` only if given."""
    check_limit(limit)
    if state is not None:
        try:
            state = SessionState(state)
        except ValueError:
            rule = f"must be one of {', '.join(SessionState)}"
            raise InvalidInput.at("state", rule) from None
    found: list[SessionSummary] = []
    for batch in _walk(store, keys.SESSIONS, cursor):
        for summary in _summaries(store, batch):
            if state is None or summary.state is state:
                found.append(summary)
                if len(found) == limit + 1:
                    return _page(found, lambda s: (s.last_activity, s.session_id))
    return Page(found, None)


def runs(store: RunStore, session_id: str, limit: int, cursor: str | None) -> Page[RunRecord]:
    """The session's runs, newest first, while their records last."""
    check_limit(limit)
    index = keys.session_runs(session_id)
    found: list[RunRecord] = []
    for batch in _walk(store, index, cursor):
        pipe = store.redis.pipeline(transaction=False)
        for run_id, _ in batch:
            pipe.hgetall(keys.run(session_id, run_id))
        expired = []
        for (run_id, _), fields in zip(batch, pipe.execute(), strict=True):
            if not fields:
                expired.append(run_id)
                continue
            found.append(RunRecord.from_hash(fields, run_id=run_id, session_id=session_id))
            if len(found) == limit + 1:
                break
        if expired:
            store.redis.zrem(index, *expired)
        if len(found) == limit + 1:
            return _page(found, lambda r: (r.accepted_at, r.id))
    return Page(found, None)


def _page(found: list[T], position: Callable[[T], tuple[float, str]]) -> Page[T]:
    """``found`` holds one item more than the page: there is a next page."""
    items = found[:-1]
    score, member = position(items[-1])
    return Page(items, f"{score!r}/{member}")


def _walk(store: RunStore, key: str, cursor: str | None) -> Iterator[list[tuple[str, float]]]:
    """The set's members after ``cursor``, highest score first, in batches."""
    score, after = _read_cursor(cursor)
    offset = 0
    while True:
        batch = store.redis.zrevrangebyscore(
            key, score, "-inf", start=offset, num=BATCH, withscores=True
        )
        if not batch:
            return
        offset += len(batch)
        if after is not None:  # ties with the cursor's score: past its member only
            batch = [(m, s) for m, s in batch if s < score or m < after]
        if batch:
            yield batch


def _read_cursor(cursor: str | None) -> tuple[float | str, str | None]:
    if cursor is None:
        return "+inf", None
    match = CURSOR.fullmatch(cursor)
    if match is None:
        raise InvalidInput.at("cursor", "must be a next_cursor this API returned")
    return float(match[1]), match[2]


def _summaries(store: RunStore, batch: list[tuple[str, float]]) -> list[SessionSummary]:
    pipe = store.redis.pipeline(transaction=False)
    for session_id, _ in batch:
        pipe.hget(keys.session(session_id), SessionField.ACTIVE)
        pipe.llen(keys.mailbox(session_id))
    replies = pipe.execute()
    actives = replies[::2]
    pipe = store.redis.pipeline(transaction=False)
    for (session_id, _), active in zip(batch, actives, strict=True):
        if active:
            pipe.hget(keys.run(session_id, active), "state")
    states = iter(pipe.execute())
    summaries = []
    for (session_id, score), active, queued in zip(batch, actives, replies[1::2], strict=True):
        state = SessionState.IDLE
        if active:
            waiting = next(states) == RunState.WAITING
            state = SessionState.WAITING if waiting else SessionState.BUSY
        summaries.append(SessionSummary(session_id, state, active, queued, score))
    return summaries
