"""A window read that stops paging once it has the window (see the package notes, Reads).

``ListEvents`` lists newest first, so a window reads pages until the events
it has read settle the window: the newest messages that fit the budget, the
first one that does not, and then events older than all of them by more than
``ORDER_SLACK_MS`` (so a writer's clock that is behind, or a millisecond
tie, cannot put an unread message among them). A window that takes every
message it read settles once the read reaches that far past the newest
``clear`` (everything older is hidden). Before it stops, it reads what lies
outside the events it read but still decides the window: every prompt,
clear and fence claim (one filtered listing), and, if it read no turn of
Fence's, the newest turns, for ``last_seq``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fence.memory.agentcore.layout import event_time
from fence.memory.agentcore.listing import NOT_TURNS, TURNS, EventPages
from fence.memory.agentcore.state import SessionState, event_metadata
from fence.memory.base import Window, take_window
from fence.messages import Message

ORDER_SLACK_MS = 1_000
"""How far the clock of a turn's writer may be behind that of the turn before it (a
millisecond tie included) for a window to be exact. A session's
turns are a model call apart, and the ``CreateEvent`` quota allows one per 4 s
sustained, so reading this far past a window costs real sessions about nothing."""


def read_window(events: EventPages, max_tokens: int | None, at_least_one: bool) -> Window:
    """The window of ``max_tokens`` (None: every visible message), newest pages first."""
    settle = _Settle(max_tokens, at_least_one)
    read: list[dict[str, Any]] = []
    known: list[dict[str, Any]] | None = None
    oldest: int | None = None  # ms of the oldest event read
    cleared = False
    for page, more in events.pages(payloads=True):
        read += page
        if not more:  # the whole session: nothing else to know
            return settle(SessionState.of(_unique(read + (known or []))), None)[0]
        stamps = [event_time(event) for event in page] + ([] if oldest is None else [oldest])
        oldest = min(stamps, default=None)
        cleared = cleared or any(event_metadata(e).get("fence_kind") == "clear" for e in page)
        if oldest is None or (max_tokens is None and not cleared):
            continue  # nothing read yet, or every message wanted and no clear to stop at
        window, settled = settle(SessionState.of(_unique(read + (known or []))), oldest)
        if settled and known is None:
            known = _outside(events, read)
            window, settled = settle(SessionState.of(_unique(read + known)), oldest)
        if settled:
            return window
    raise AssertionError("EventPages.pages ended without a last page")


class _Settle:
    """Takes the window from the events read so far, and says whether older events
    could still change it; a message is decoded once, however many pages follow."""

    def __init__(self, max_tokens: int | None, at_least_one: bool) -> None:
        self.max_tokens = max_tokens
        self.at_least_one = at_least_one
        self._decoded: dict[tuple[Any, ...], Message] = {}

    def __call__(self, state: SessionState, oldest: int | None) -> tuple[Window, bool]:
        """``oldest``: the ms of the oldest event read (None: there are no others)."""
        seen: list[int] = []  # the ms of what take_window consumes: what it keeps, the misfit

        def newest_first() -> Iterator[Message]:
            for readable in reversed(state.readable()):
                seen.append(readable.key[0])
                mark = (readable.key, readable.order)
                if mark not in self._decoded:
                    self._decoded[mark] = readable.decode()
                yield self._decoded[mark]

        window = take_window(
            newest_first(), self.max_tokens, self.at_least_one, state.last_seq, system=state.system
        )
        if oldest is None:
            return window, True
        cleared = state.cleared_key
        if window.truncated:
            edge: int | None = min(seen)
        else:
            edge = cleared[0] if cleared else None
        return window, edge is not None and edge > oldest + ORDER_SLACK_MS


def _outside(events: EventPages, read: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What decides a window beyond the events read: prompts, clears, fence claims,
    and the newest turns when none was read."""
    known = events.all(payloads=True, only=NOT_TURNS)
    if not any("fence_last" in event_metadata(event) for event in read):
        known += next(events.pages(payloads=False, only=TURNS))[0]
    return known


def _unique(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events by id, each once (a filtered listing repeats some that were read)."""
    return list({event["eventId"]: event for event in reversed(events)}.values())
