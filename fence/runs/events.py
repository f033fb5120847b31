"""What happens to a run, as it happens: an ordered, resumable log of its events.

Each session has an event log in Redis (a stream), and each run a log of its
own holding the same entries with the same ids: the run's slice of its
session's. The scripts that change a run's state write its events in the same
atomic step (accepted with ``SUBMIT``, started with ``ACQUIRE``, committed and
finished with ``FINISH``, or finished with ``CANCEL``),
so a run has exactly one terminal event and no event says what did not happen.
A worker adds the events of a turn in progress with ``EventLog.append``, which
checks its lease token in the same step: a stale worker cannot append.

Event ids are the stream ids (``<ms>-<n>``): strictly increasing within a
session, so a reader resumes after the last id it saw with nothing lost and
nothing repeated. Both logs keep at most ``FENCE_EVENTS_MAX`` entries (the
oldest are trimmed) and expire ``FENCE_RUN_TTL_S`` after their last event.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import redis

from fence.runs import keys
from fence.validation import InvalidInput, Problem

if TYPE_CHECKING:
    import redis.asyncio


class EventType(StrEnum):
    ACCEPTED = "run.accepted"
    """Recorded by ``SUBMIT``; ``data.position``: runs ahead of it (0: runs next)."""
    STARTED = "turn.started"
    """A worker began an attempt; ``data``: ``attempt`` (the run's, counting every
    delivery's), ``delivery``, ``worker``. Written by ``ACQUIRE`` for a delivery's
    first attempt, by the worker (``RunStore.emit``) for its retries."""
    TEXT = "text.delta"
    """Model text as it is generated; ``data``: ``text``, ``step`` (the model call within
    the attempt, from 1). The answer is the last step's text of the last attempt: a
    client that shows text starts over at each ``turn.started``."""
    TOOL_CALL = "tool.call"
    """The model asked for a tool; ``data``: ``id``, ``name``, ``arguments`` (an object)."""
    TOOL_RESULT = "tool.result"
    """A tool's result; ``data``: ``id``, ``name``, ``content``, ``error`` (bool)."""
    APPROVAL_REQUESTED = "approval.requested"
    """The model called a tool that needs approval: the run is ``waiting`` and its worker
    is free; ``data``: ``id``, ``name``, ``arguments`` (the call), ``step``,
    ``deadline`` (epoch s: the run fails if no decision comes by then)."""
    APPROVAL_DECIDED = "approval.decided"
    """A person or service decided; ``data``: ``id``, ``approved``, and ``arguments``
    (edited) or ``reason`` (a denial's) when given. A new ``turn.started`` follows."""
    COMMITTED = "turn.committed"
    """The turn is in memory (written by ``FINISH`` with a run that succeeded)."""
    FINISHED = "run.finished"
    """Terminal, exactly once; ``data``: ``state`` and, unless it succeeded, ``error``."""


EVENT_ID = re.compile(r"[0-9]{1,19}-[0-9]{1,19}")
"""What a stream id looks like; ``after`` must be one (ASCII digits, each part below
2**64, as Redis takes them: ``\\d`` would let other scripts' digits through)."""


@dataclass(frozen=True)
class RunEvent:
    id: str
    run_id: str
    session_id: str
    type: EventType
    at: float
    """When it happened, epoch s."""
    data: dict[str, Any]

    @property
    def terminal(self) -> bool:
        return self.type is EventType.FINISHED

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "run_id": self.run_id,
            "session_id": self.session_id,
            "type": self.type.value,
            "at": self.at,
            "data": self.data,
        }


def event_id(after: str | None, field: str = "after") -> str:
    """The stream id to read after (``0-0``: from the start); ``InvalidInput`` naming
    ``field`` unless it is an event id."""
    if after is None:
        return "0-0"
    if not EVENT_ID.fullmatch(after):
        raise InvalidInput([Problem(field, f"{field}: must be an event id like 1700000000000-0")])
    return after


def read_request(
    session_id: str, run_id: str | None, after: str, block_s: float | None, longest_s: float
) -> dict[str, Any]:
    """``XREAD``'s arguments for the events after the id ``after``: a run's log, or
    (``run_id`` None) the session's; with ``block_s``, waiting up to that long (at most
    ``longest_s``) for one. Shared by ``EventLog`` and its async twin."""
    log = keys.session_events(session_id) if run_id is None else keys.run_events(session_id, run_id)
    block = None if block_s is None else max(1, int(min(block_s, longest_s) * 1000))
    return {"streams": {log: after}, "count": EventLog.READ_BATCH, "block": block}


def parse_read(session_id: str, answer: list[Any] | None) -> list[RunEvent]:
    """The events of an ``XREAD`` answer on one of the session's logs."""
    if not answer:
        return []
    [(_, entries)] = answer
    return [_parse(session_id, entry_id, fields) for entry_id, fields in entries]


def longest_block_s(client: redis.Redis | redis.asyncio.Redis) -> float:
    """``EventLog.QUIET_S``, below the client's socket timeout, so a quiet log is not a
    timeout error."""
    timeout = client.connection_pool.connection_kwargs.get("socket_timeout")
    return EventLog.QUIET_S if timeout is None else min(EventLog.QUIET_S, timeout / 2)


def _parse(session_id: str, entry_id: str, fields: dict[str, str]) -> RunEvent:
    return RunEvent(
        id=entry_id,
        run_id=fields["run"],
        session_id=session_id,
        type=EventType(fields["type"]),
        at=float(fields["at"]),
        data=json.loads(fields["data"]),
    )


class EventLog:
    """Reads a session's or a run's log, waiting on Redis for what comes next."""

    READ_BATCH = 200
    QUIET_S = 2.0
    """Longest single blocking read: how often a follower hears of a quiet log."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self.block_s = longest_block_s(client)

    def read(
        self, session_id: str, run_id: str | None, after: str, *, block_s: float | None = None
    ) -> list[RunEvent]:
        """The events after the id ``after``: a run's, or (``run_id`` None) the session's.
        With ``block_s``, waits up to that long (at most ``self.block_s``) for one."""
        answer = self.redis.xread(**read_request(session_id, run_id, after, block_s, self.block_s))
        return parse_read(session_id, answer)

    def follow(
        self,
        session_id: str,
        run_id: str | None,
        after: str,
        *,
        timeout: float | None = None,
        finished: Callable[[], bool] | None = None,
    ) -> Iterator[RunEvent | None]:
        """The events after the id ``after``, waiting on Redis (no polling) for each
        next one, with ``None`` after each quiet ``block_s`` (a caller's heartbeat).

        A run's log ends after its terminal event, or, when a quiet spell finds the run
        ``finished()`` (its log expired, or it ended before logs were kept), after what
        is left in it. A session's log ends only when ``timeout`` (s) passes.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while deadline is None or time.monotonic() < deadline:
            left = self.block_s if deadline is None else deadline - time.monotonic()
            events = self.read(session_id, run_id, after, block_s=max(left, 0.001))
            if not events:
                if finished is not None and finished():
                    yield from self.read(session_id, run_id, after)  # what it logged as it ended
                    return
                yield None
                continue
            for event in events:
                yield event
                if run_id is not None and event.terminal:
                    return
            after = events[-1].id
