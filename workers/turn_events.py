"""A turn's events on their way to the run's log, without slowing the turn down.

The agent hands each step's event (text as it is generated, tool calls and
results) to ``TurnEvents.add``, which only queues it. One thread per turn sends
what is queued in one ``EMIT`` as soon as the previous one returned: an event
waits at most one round trip, and a fast model's deltas go in batches. Every
``EMIT`` carries how many events this lease logged before it, so a batch sent
again after a lost reply is logged once; a stale worker's ``EMIT`` is refused.

``flush()`` waits until everything queued is logged (before the answer is saved,
so a run's text comes before its ``turn.committed``) and raises what sending met:
``LeaseLost``, or Redis unreachable past the lease's life.
"""

from __future__ import annotations

import threading
from typing import Any

from fence.agents import StepEvent, TextEvent, ToolCallEvent, ToolResultEvent
from fence.runs import EventType, Lease, RunStore
from fence.validation import clip
from workers.backends import BackendCalls

TOOL_RESULT_CHARS = 16_384
"""A tool result in the log is cut to this many characters (the model got all of it)."""

Entry = tuple[EventType, dict[str, Any]]


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
    """Queues a turn's events and logs them under its lease, in order, each once."""

    def __init__(self, store: RunStore, lease: Lease, calls: BackendCalls) -> None:
        self._store = store
        self._lease = lease
        self._calls = calls
        self._queued: list[Entry] = []
        self._logged = 0
        """Events this lease logged (the next batch's ``first``)."""
        self._error: BaseException | None = None
        self._closed = False
        self._changed = threading.Condition()
        self._sender: threading.Thread | None = None

    def add(self, event: StepEvent) -> None:
        self.put(*entry(event))

    def put(self, kind: EventType, data: dict[str, Any]) -> None:
        """Queue one event; raises what sending met, so a lost lease stops the turn."""
        with self._changed:
            if self._error is not None:
                raise self._error
            self._queued.append((kind, data))
            if self._sender is None:  # one thread per turn, only for a turn that logs
                self._sender = threading.Thread(target=self._send, daemon=True)
                self._sender.start()
            self._changed.notify_all()

    def flush(self) -> None:
        """Wait until everything queued is logged; raise what sending met."""
        with self._changed:
            self._changed.wait_for(lambda: not self._queued or self._error is not None)
            if self._error is not None:
                raise self._error

    def close(self) -> None:
        """Stop the sender; what is still queued is dropped (the turn is over)."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        if self._sender is not None:
            self._sender.join()

    def _send(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._queued or self._closed)
                if self._closed:
                    return
                batch, first = list(self._queued), self._logged
            try:
                self._log(batch, first)
            except BaseException as error:  # LeaseLost, or Redis down past the lease
                with self._changed:
                    self._error = error
                    self._changed.notify_all()
                return
            with self._changed:
                del self._queued[: len(batch)]
                self._logged += len(batch)
                self._changed.notify_all()

    def _log(self, batch: list[Entry], first: int) -> None:
        self._calls.redis("emit", lambda: self._store.emit(self._lease, batch, first=first))
