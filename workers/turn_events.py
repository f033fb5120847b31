"""A turn's events on their way to the run's log, without slowing the turn down.

The agent hands each step's event (text as it is generated, tool calls and
results) to ``TurnEvents.add``. An event is sent at once, in the model's thread,
unless one was sent less than ``FENCE_STREAM_COALESCE_MS`` ago: then it waits for
the next send, at most that long (one thread per worker process sends what
waited, if no event or flush came first), and text deltas that wait together
become one ``text.delta``. So a model that streams slowly has each delta logged
within a round trip, and one that streams fast costs one ``EMIT``, and one event,
per window, not one per token, with no thread of its own. Every ``EMIT`` carries how many
events this lease logged before it, so a batch sent again after a lost reply is
logged once; a stale worker's ``EMIT`` is refused.

``flush()`` logs what waits; ``flush_into`` hands it to the answer's save, which logs
it first in the same round trip (so a run's text comes before its ``turn.committed``).
Sending raises what it meets, ``LeaseLost`` or Redis unreachable past the lease's
life, from ``add``/``put``/``flush``, so the turn stops.
"""

from __future__ import annotations

import heapq
import itertools
import math
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from fence.agents import StepEvent, TextEvent, ToolCallEvent, ToolResultEvent
from fence.runs import EventType, Lease, RunStore
from fence.validation import clip
from workers.backends import BackendCalls

TOOL_RESULT_CHARS = 16_384
"""A tool result in the log is cut to this many characters (the model got all of it)."""

Entry = tuple[EventType, dict[str, Any]]
T = TypeVar("T")


def entry(event: StepEvent) -> Entry:
    """The log's type and data for one of the agent's step events."""
    if isinstance(event, TextEvent):
        return EventType.TEXT, {"text": event.text, "step": event.step}
    if isinstance(event, ToolCallEvent):
        data = {"id": event.id, "name": event.name, "arguments": event.arguments}
        return EventType.TOOL_CALL, {**data, "step": event.step}
    if isinstance(event, ToolResultEvent):
        content = clip(event.content, TOOL_RESULT_CHARS)
        data = {"id": event.id, "name": event.name, "content": content, "error": event.failed}
        return EventType.TOOL_RESULT, {**data, "step": event.step}
    raise TypeError(f"not a step event: {event!r}")


class TurnEvents:
    """Logs a turn's events under its lease, in order, each once, in batches."""

    def __init__(self, store: RunStore, lease: Lease, calls: BackendCalls, window_s: float) -> None:
        self._store = store
        self._lease = lease
        self._calls = calls
        self._window_s = window_s
        """The longest an event waits to be sent, and the shortest time between sends."""
        self._queued: list[Entry] = []
        self._logged = 0
        """Events this lease logged (the next batch's ``first``)."""
        self._sent_at = -math.inf
        self._error: BaseException | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._late = False
        """A late send is scheduled (``LATE_SENDS``)."""

    def add(self, event: StepEvent) -> None:
        self.put(*entry(event))

    def put(self, kind: EventType, data: dict[str, Any]) -> None:
        """Queue one event, and send what is queued unless a send was just made."""
        with self._lock:
            self._raise_failure()
            self._queue(kind, data)
            if time.monotonic() - self._sent_at >= self._window_s:
                self._send()
            elif not self._late:
                self._late = True
                LATE_SENDS.schedule(self, self._sent_at + self._window_s)

    def _queue(self, kind: EventType, data: dict[str, Any]) -> None:
        """Queue one event; text that follows text of the same step joins it."""
        if kind is EventType.TEXT and self._queued:
            last_kind, last = self._queued[-1]
            if last_kind is EventType.TEXT and last["step"] == data["step"]:
                self._queued[-1] = (kind, {**last, "text": last["text"] + data["text"]})
                return
        self._queued.append((kind, data))

    def flush(self) -> None:
        """Send what is queued now."""
        with self._lock:
            self._raise_failure()
            if self._queued:
                self._send()

    def flush_into(self, send: Callable[[list[Entry], int], T]) -> T:
        """Send what is queued with ``send(batch, first)``, a round trip the turn makes
        anyway (the answer's save), rather than in one of its own; returns its result."""
        with self._lock:
            self._raise_failure()
            batch, first = list(self._queued), self._logged
            result = send(batch, first)
            del self._queued[: len(batch)]
            self._logged += len(batch)
            self._sent_at = time.monotonic()
            return result

    def close(self) -> None:
        """The turn is over: what is still queued is dropped."""
        with self._lock:
            self._closed = True

    def send_late(self) -> None:
        """``LATE_SENDS``: send what waited its interval (nothing if a send came first)."""
        with self._lock:
            self._late = False
            if self._queued and not self._closed and self._error is None:
                try:
                    self._send()
                except BaseException as error:  # raised from the turn's next put or flush
                    self._error = error

    def _raise_failure(self) -> None:
        if self._error is not None:
            raise self._error

    def _send(self) -> None:
        """Log what is queued (the lock is held)."""
        batch, first = list(self._queued), self._logged
        self._calls.redis("emit", lambda: self._store.emit(self._lease, batch, first=first))
        del self._queued[: len(batch)]
        self._logged += len(batch)
        self._sent_at = time.monotonic()


class LateSends:
    """One thread per process that sends what turns left waiting past their interval:
    a fast-streaming turn starts no thread of its own, and an idle worker runs none."""

    def __init__(self) -> None:
        self._due: list[tuple[float, int, TurnEvents]] = []
        self._order = itertools.count()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def schedule(self, events: TurnEvents, at: float) -> None:
        """Call ``events.send_late()`` at ``at`` (``time.monotonic()``)."""
        with self._changed:
            if self._thread is None:  # started in the process that runs turns (after fork)
                self._thread = threading.Thread(target=self._run, daemon=True)
                self._thread.start()
            heapq.heappush(self._due, (at, next(self._order), events))
            if self._due[0][2] is events:
                self._changed.notify()

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._due:
                    self._changed.wait()
                at, _, events = self._due[0]
                wait = at - time.monotonic()
                if wait > 0:
                    self._changed.wait(wait)
                    continue
                heapq.heappop(self._due)
            events.send_late()


LATE_SENDS = LateSends()
