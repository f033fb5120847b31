"""The event logs read with ``redis.asyncio``: the async twin of ``EventLog`` and of
``RunStore.events``/``session_events``, for servers that follow many logs at once.

A follower waits in ``XREAD BLOCK`` on an event loop instead of in a thread, so a
gateway holding a thousand open streams holds a thousand sockets, not a thousand
threads. What to read and how an answer becomes events come from
``fence.runs.events``, shared with the sync reader: the two cannot disagree on a log
or an event.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial

import redis.asyncio

from fence.runs import keys
from fence.runs.events import RunEvent, event_id, longest_block_s, parse_read, read_request
from fence.runs.schema import RunState
from fence.runs.store import RunNotFound


class AsyncEventLog:
    """Reads a session's or a run's log, waiting on Redis for what comes next."""

    def __init__(self, client: redis.asyncio.Redis) -> None:
        self.redis = client
        self.block_s = longest_block_s(client)

    async def read(
        self, session_id: str, run_id: str | None, after: str, *, block_s: float | None = None
    ) -> list[RunEvent]:
        """``EventLog.read``: the events after the id ``after``, a run's or (``run_id``
        None) the session's, waiting up to ``block_s`` (at most ``self.block_s``)."""
        request = read_request(session_id, run_id, after, block_s, self.block_s)
        return parse_read(session_id, await self.redis.xread(**request))

    async def follow(
        self,
        session_id: str,
        run_id: str | None,
        after: str,
        *,
        timeout: float | None = None,
        finished: Callable[[], Awaitable[bool]] | None = None,
    ) -> AsyncIterator[RunEvent | None]:
        """``EventLog.follow``: the events after the id ``after`` as they come, ``None``
        after each quiet ``block_s``. A run's log ends after its terminal event, or when a
        quiet spell finds it ``await finished()``, after what is left in it; a session's
        ends only when ``timeout`` (s) passes."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while deadline is None or time.monotonic() < deadline:
            left = self.block_s if deadline is None else deadline - time.monotonic()
            events = await self.read(session_id, run_id, after, block_s=max(left, 0.001))
            if not events:
                if finished is not None and await finished():
                    for event in await self.read(session_id, run_id, after):
                        yield event
                    return
                yield None
                continue
            for event in events:
                yield event
                if run_id is not None and event.terminal:
                    return
            after = events[-1].id


class AsyncRunEvents:
    """``RunStore.events`` and ``RunStore.session_events`` over ``redis.asyncio``."""

    def __init__(self, client: redis.asyncio.Redis) -> None:
        self.redis = client
        self.log = AsyncEventLog(client)

    async def run(
        self,
        run_id: str,
        after: str | None = None,
        *,
        timeout: float | None = None,
        session_id: str | None = None,
    ) -> AsyncIterator[RunEvent | None]:
        """The run's events after the event id ``after``, ending with its terminal event.
        A bad ``after`` or an unknown run raises here, before anything is read."""
        after_id = event_id(after)
        session_id = session_id or await self.redis.get(keys.run_index(run_id))
        if session_id is None or not await self.redis.exists(keys.run(session_id, run_id)):
            raise RunNotFound(run_id)
        finished = partial(self._finished, session_id, run_id)
        return self.log.follow(session_id, run_id, after_id, timeout=timeout, finished=finished)

    def session(
        self, session_id: str, after: str | None = None, *, timeout: float | None = None
    ) -> AsyncIterator[RunEvent | None]:
        """Every run's events in the session after the event id ``after``, as they come;
        it ends only when ``timeout`` (s) passes. A bad ``after`` raises here."""
        return self.log.follow(session_id, None, event_id(after), timeout=timeout)

    async def _finished(self, session_id: str, run_id: str) -> bool:
        """The run is over: its state is terminal, unreadable (a worker fails such a
        run), or its record expired (nothing will be added to its log)."""
        state = await self.redis.hget(keys.run(session_id, run_id), "state")
        try:
            return RunState(state).terminal
        except ValueError:
            return True
