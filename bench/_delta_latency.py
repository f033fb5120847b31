"""How late each streamed text delta reaches a reader: the measuring half of
``bench/streaming.py``'s latency section.

Every word the ``timed`` agent (``bench/agents.py``) streams is the
``time.time()`` at which the model emitted it, so a reader subtracts it from
when the word reached it. Each run is read twice in one asyncio loop: through
the gateway (``POST /v1/sessions/{id}/runs/stream``, the submit answered with
the run's Server-Sent Events), and straight from Redis (``XREAD BLOCK`` on the
session's log with ``AsyncRunEvents``, what the gateway itself reads): the
baseline. A run waiting for a worker slot has no deltas yet, so queueing is not
counted: latency is per delta.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import redis.asyncio

from bench._runtime import BenchRuntime, percentile
from fence.messages import Role
from fence.runs import EventType
from fence.runs.async_events import AsyncRunEvents

TIMED_AGENT = "timed"
STREAM_TIMEOUT_S = 900


@dataclass
class Seen:
    """One run's events as one reader got them: when its run.accepted came, its last
    attempt's text deltas as (text, received at, logged at: when the worker sent them),
    and its terminal events."""

    run_id: str = ""
    session_id: str = ""
    accepted: float = math.nan
    deltas: list[tuple[str, float, float]] = field(default_factory=list)
    terminal: int = 0

    def add(self, event: dict[str, Any], received: float) -> None:
        self.run_id, self.session_id = event["run_id"], event["session_id"]
        kind = event["type"]
        if kind == EventType.ACCEPTED:
            self.accepted = received
        elif kind == EventType.STARTED:
            self.deltas.clear()  # a new attempt generates its text again
        elif kind == EventType.TEXT:
            self.deltas.append((event["data"]["text"], received, event["at"]))
        elif kind == EventType.FINISHED:
            self.terminal += 1

    @property
    def text(self) -> str:
        return "".join(text for text, _, _ in self.deltas)


async def through_gateway(http: httpx.AsyncClient, session_id: str) -> Seen:
    """Submit a run and read its events in the same request, as a chat front end does."""
    seen = Seen()
    body = {"message": "stream the time", "agent": TIMED_AGENT}
    async with http.stream("POST", f"/v1/sessions/{session_id}/runs/stream", json=body) as answer:
        answer.raise_for_status()
        async for line in answer.aiter_lines():
            if line.startswith("data:"):
                received = time.time()
                seen.add(json.loads(line[5:]), received)
    return seen


async def from_redis(events: AsyncRunEvents, session_id: str) -> Seen:
    """The session's events read straight from its log in Redis, up to its run's end."""
    seen = Seen()
    async for event in events.session(session_id):
        if event is not None:
            received = time.time()
            seen.add(event.to_dict(), received)
            if event.terminal:
                break
    return seen


async def stream_runs(
    base_url: str, redis_url: str, tag: str, runs: int
) -> list[tuple[Seen, Seen]]:
    """``runs`` runs streamed at once, each on a new session: (through the gateway, from
    Redis) for each. The Redis reader reads the session's log from its start: it misses
    nothing, whenever its first read goes out."""
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        redis_url, max_connections=runs + 4, decode_responses=True
    )
    events = AsyncRunEvents(redis.asyncio.Redis.from_pool(pool))
    limits = httpx.Limits(max_connections=runs, max_keepalive_connections=0)

    async def one(http: httpx.AsyncClient, index: int) -> tuple[Seen, Seen]:
        session_id = f"{tag}-{index}"
        direct = asyncio.create_task(from_redis(events, session_id))
        try:
            return await through_gateway(http, session_id), await direct
        finally:
            direct.cancel()

    try:
        async with (
            asyncio.timeout(STREAM_TIMEOUT_S),
            httpx.AsyncClient(
                base_url=base_url, limits=limits, timeout=httpx.Timeout(60, read=None)
            ) as http,
        ):
            return list(await asyncio.gather(*(one(http, i) for i in range(runs))))
    finally:
        await events.redis.aclose()


def matching(rt: BenchRuntime, streams: list[tuple[Seen, Seen]]) -> int:
    """Runs whose deltas, read either way, join to the answer stored in their run record
    and in memory, each with exactly one terminal event."""
    good = 0
    for gateway, direct in streams:
        stored = rt.store.get(gateway.run_id, gateway.session_id).result
        messages = rt.memory(gateway.session_id).get_messages()
        saved = [m.content for m in messages if m.role is Role.ASSISTANT]
        good += (
            gateway.text == direct.text == stored
            and saved == [stored]
            and gateway.terminal == direct.terminal == 1
        )
    return good


@dataclass(frozen=True)
class Stages:
    """Per delta, in ms: how late it reached each reader, and where the time went."""

    via_gateway: list[float]
    settled: list[float]
    """``via_gateway`` of the deltas emitted after every submit was answered (each
    client had its run.accepted): without the burst of 200 submits at the start."""
    from_redis: list[float]
    queued: list[float]
    """Model emit -> the worker's EMIT of it sent (waiting behind the EMIT in flight)."""
    logged_to_read: list[float]
    """EMIT sent -> read from Redis (the EMIT's round trip, the reader's XREAD wake-up)."""
    gateway_hop: list[float]
    """Read from Redis -> read through the gateway, the same delta."""
    all_accepted: float
    """When the last client had its run.accepted (epoch s)."""
    emits: int
    most_streaming: int
    """Most runs streaming at once (first to last delta)."""

    @classmethod
    def of(cls, streams: list[tuple[Seen, Seen]]) -> Stages:
        via, settled, base, queued, logged, hop = [], [], [], [], [], []
        emits, spans = 0, []
        all_accepted = max(gateway.accepted for gateway, _ in streams)
        for gateway, direct in streams:
            read_at = {text: received for text, received, _ in direct.deltas}
            base.extend((received - float(text)) * 1e3 for text, received, _ in direct.deltas)
            for text, received, sent in gateway.deltas:
                emitted = float(text)
                via.append((received - emitted) * 1e3)
                if emitted > all_accepted:
                    settled.append(via[-1])
                queued.append((sent - emitted) * 1e3)
                if text in read_at:
                    logged.append((read_at[text] - sent) * 1e3)
                    hop.append((received - read_at[text]) * 1e3)
            emits += len({sent for _, _, sent in gateway.deltas})
            if gateway.deltas:
                spans.append((float(gateway.deltas[0][0]), float(gateway.deltas[-1][0])))
        spans_open = most_at_once(spans)
        return cls(via, settled, base, queued, logged, hop, all_accepted, emits, spans_open)


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The most (start, end) spans open at one moment."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    open_now = most = 0
    for _, step in edges:
        open_now += step
        most = max(most, open_now)
    return most


def spread(values: list[float]) -> tuple[float, float, float, float]:
    """p50, p90, p99 and max."""
    top = max(values) if values else math.nan
    return percentile(values, 50), percentile(values, 90), percentile(values, 99), top
