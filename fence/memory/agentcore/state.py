"""One read of a session's events: Fence's turns, prompts, clears and fence claims,
and the conversational events other tools wrote, in the order readers see them.

Order: Fence's own messages by ``seq`` (ties by event id, then position in
the event); events of other writers by (event timestamp, event id); the two
merged by (event timestamp, event id), so each keeps its own order and a
foreign event lands among Fence's turns where its timestamp puts it. While
Fence's seq order agrees with its events' timestamps (one clock, or the
runtime's per-session lease) that is simply (event timestamp, event id), with
seq breaking ties among Fence's own events.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from fence.memory.agentcore.layout import (
    Decoder,
    event_order,
    event_time,
    fence_blobs,
    foreign_decoders,
    turn_decoders,
)

EventKey = tuple[int, tuple[int, str]]
"""(event timestamp in ms, event id order): where an event stands in the service's order."""


def event_key(event: dict[str, Any]) -> EventKey:
    return (event_time(event), event_order(event["eventId"]))


def event_metadata(event: dict[str, Any]) -> dict[str, str]:
    """The event's metadata as plain strings (``fence_kind`` names Fence's events)."""
    return {k: v.get("stringValue", "") for k, v in (event.get("metadata") or {}).items()}


@dataclass
class TurnEvent:
    """A turn Fence wrote: its seq range, turn id, fencing token and messages."""

    event_id: str
    key: EventKey
    first: int
    last: int
    turn_id: str | None
    fence: int
    """The fencing token the turn was committed with (0: an unfenced write)."""
    payload: list[dict[str, Any]]
    """Empty when the session was read without payloads."""


@dataclass(frozen=True)
class Readable:
    """A message in reading order, decoded only if a reader keeps it."""

    order: tuple[Any, ...]
    key: EventKey
    decode: Decoder


@dataclass
class SessionState:
    """One full read of the session."""

    turns: list[TurnEvent] = field(default_factory=list)
    foreign: list[tuple[EventKey, dict[str, Any]]] = field(default_factory=list)
    """(key, event) of each event another tool wrote."""
    systems: list[tuple[tuple[int, tuple[int, str]], str, str]] = field(default_factory=list)
    """(order key, event id, text) of each system prompt event; the greatest key wins."""
    clears: list[tuple[tuple[int, int, tuple[int, str]], str, EventKey]] = field(
        default_factory=list
    )
    """((cleared seq, at, event order), event id, event key) of each clear event."""
    claims: list[tuple[int, tuple[int, str], str]] = field(default_factory=list)
    """(token, event order, event id) of each fence claim."""

    def __post_init__(self) -> None:
        self._markers: list[tuple[int, tuple[int, str]]] | None = None

    @classmethod
    def of(cls, events: list[dict[str, Any]]) -> SessionState:
        state = cls()
        for event in events:
            state._add(event)
        return state

    def _add(self, event: dict[str, Any]) -> None:
        meta = event_metadata(event)
        kind = meta.get("fence_kind")
        event_id = event["eventId"]
        payload = event.get("payload") or []
        if kind is None:
            self.foreign.append((event_key(event), event))
        elif kind == "turn":
            self.turns.append(
                TurnEvent(
                    event_id,
                    event_key(event),
                    int(meta["fence_seq"]),
                    int(meta["fence_last"]),
                    meta.get("fence_turn"),
                    int(meta.get("fence_token", "0")),
                    payload,
                )
            )
        elif kind == "fence":
            self.claims.append((int(meta["fence_token"]), event_order(event_id), event_id))
        elif kind == "system":
            key = (int(meta["fence_at"]), event_order(event_id))
            text = next((b["text"] for b in fence_blobs(payload) if b["fence"] == "system"), "")
            self.systems.append((key, event_id, text))
        elif kind == "clear":
            key = (int(meta["fence_seq"]), int(meta["fence_at"]), event_order(event_id))
            self.clears.append((key, event_id, event_key(event)))

    @property
    def fence(self) -> int:
        """The largest token any claim or fenced turn holds (0: none)."""
        return max([0, *(token for token, _, _ in self.claims), *(t.fence for t in self.turns)])

    def fenced_out(self, turn: TurnEvent) -> bool:
        """Whether a larger token's claim or fenced turn precedes this fenced turn:
        it was written after a newer holder took over, and does not count."""
        if not turn.fence:
            return False
        if self._markers is None:
            self._markers = [(token, order) for token, order, _ in self.claims]
            self._markers += [(t.fence, event_order(t.event_id)) for t in self.turns if t.fence]
        order = event_order(turn.event_id)
        return any(token > turn.fence and at < order for token, at in self._markers)

    @property
    def live_turns(self) -> list[TurnEvent]:
        return [t for t in self.turns if not self.fenced_out(t)]

    @property
    def system(self) -> str | None:
        return max(self.systems)[2] if self.systems else None

    @property
    def cleared_seq(self) -> int:
        return max(self.clears)[0][0] if self.clears else 0

    @property
    def cleared_key(self) -> EventKey | None:
        """Foreign events at or before the newest clear event are cleared with it."""
        return max(key for _, _, key in self.clears) if self.clears else None

    @property
    def last_seq(self) -> int:
        return max([self.cleared_seq, *(t.last for t in self.turns)])

    def readable(self) -> list[Readable]:
        """Every message after the clear, oldest first (see the module notes on order)."""
        return list(heapq.merge(self._own(), self._foreign(), key=lambda r: r.key))

    def _own(self) -> Iterator[Readable]:
        cleared = self.cleared_seq
        own = [
            Readable((seq, event_order(t.event_id), index), t.key, decode)
            for t in self.live_turns
            for index, (seq, decode) in enumerate(turn_decoders(t.payload, t.first, t.turn_id))
            if seq > cleared
        ]
        return iter(sorted(own, key=lambda r: r.order))

    def _foreign(self) -> Iterator[Readable]:
        cleared = self.cleared_key
        foreign = [
            Readable((key, index), key, decode)
            for key, event in self.foreign
            if cleared is None or key > cleared
            for index, decode in enumerate(foreign_decoders(event))
        ]
        return iter(sorted(foreign, key=lambda r: r.order))
