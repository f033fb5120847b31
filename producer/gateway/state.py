"""What the routes share: made once by ``create_app``, held on ``app.state``, and handed
to each route as a FastAPI dependency (``gateway: Gateway``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import Annotated

import anyio
import redis
import redis.asyncio
from fastapi import Depends, Request

from fence.memory.url import MemoryFactory, memory_factory
from fence.runs import RunStore
from fence.runs.async_events import AsyncRunEvents
from fence.runs.async_store import AsyncRunStore
from fence.runs.store import REDIS_TIMEOUT_S
from fence.settings import Settings
from producer.client import Producer
from producer.gateway.errors import GatewayError
from producer.gateway.metrics import GatewayMetrics

HEALTH_TIMEOUT_S = 3.0
"""How long a health check or a metrics scrape waits for Redis or the memory backend."""
MAX_CONCURRENT_WAITS = 256
"""Long polls blocked in threads at once; more queue for a thread (their own limiter, so
waiting clients never starve the threads that serve submits)."""
QUICK_CONNECTIONS = 64
"""Redis connections beyond the streams', for the quick reads that start a stream."""


@dataclass(eq=False)
class StreamSlots:
    """The event streams open now, at most ``limit`` (``FENCE_API_MAX_STREAMS``); counted
    on the event loop. Each waits on Redis on a connection of its own, so this bounds the
    gateway's Redis connections too (Redis takes 10,000 clients by default, shared by
    every gateway and worker)."""

    limit: int
    metrics: GatewayMetrics
    open: int = field(default=0, init=False)

    def take(self) -> None:
        """One more stream, or the 503 that refuses it before it starts."""
        if self.open >= self.limit:
            raise GatewayError(
                503,
                "unavailable",
                f"{self.limit} event streams are open, the most this gateway serves "
                "(FENCE_API_MAX_STREAMS); retry later",
                headers={"Retry-After": "1"},
            )
        self.open += 1
        self.metrics.open_streams.inc()

    def give_back(self) -> None:
        self.open -= 1
        self.metrics.open_streams.dec()

    @contextmanager
    def reserved(self) -> Iterator[None]:
        """A slot held for a while (a submit that will stream: refused before it queues)."""
        self.take()
        try:
            yield
        finally:
            self.give_back()


@dataclass(eq=False)
class GatewayState:
    """The producer the routes submit through, and the connections they read with."""

    settings: Settings
    producer: Producer
    probe: redis.Redis
    """Redis with short timeouts, for ``/healthz`` and the runtime gauges."""
    metrics: GatewayMetrics
    open_memory: MemoryFactory
    read_history: MemoryFactory
    """Opens a session's memory to read; creates no SQLite database."""
    events: AsyncRunEvents
    """The event logs, read on the event loop (``redis.asyncio``): a stream waiting on
    Redis holds a socket, not a thread."""
    stream_slots: StreamSlots
    submits: AsyncRunStore
    """Submits on the event loop too, on the streams' pool (beside their connections)."""

    @classmethod
    def build(cls, settings: Settings, producer: Producer) -> GatewayState:
        probe = redis.Redis.from_url(
            settings.redis_url,
            decode_responses=True,
            socket_timeout=HEALTH_TIMEOUT_S,
            socket_connect_timeout=HEALTH_TIMEOUT_S,
        )
        streams = redis.asyncio.BlockingConnectionPool.from_url(
            settings.redis_url,
            max_connections=settings.api_max_streams + QUICK_CONNECTIONS,
            timeout=REDIS_TIMEOUT_S,
            decode_responses=True,
            socket_connect_timeout=REDIS_TIMEOUT_S,
            socket_timeout=REDIS_TIMEOUT_S,
            health_check_interval=30,
        )
        metrics = GatewayMetrics(RunStore(probe, settings))
        return cls(
            settings=settings,
            producer=producer,
            probe=probe,
            metrics=metrics,
            open_memory=memory_factory(settings.memory),
            read_history=memory_factory(settings.memory, missing_ok=False),
            events=AsyncRunEvents(redis.asyncio.Redis.from_pool(streams)),
            stream_slots=StreamSlots(settings.api_max_streams, metrics),
            submits=AsyncRunStore(redis.asyncio.Redis.from_pool(streams), settings),
        )

    @property
    def store(self) -> RunStore:
        return self.producer.store

    @cached_property
    def wait_limiter(self) -> anyio.CapacityLimiter:
        """The long polls' own thread limit, made on the event loop on first use."""
        return anyio.CapacityLimiter(MAX_CONCURRENT_WAITS)

    async def aclose(self) -> None:
        self.probe.close()
        self.store.redis.close()
        await self.events.redis.aclose()


async def gateway_state(request: Request) -> GatewayState:
    """Async, so resolving it costs no trip to a worker thread."""
    return request.app.state.gateway


Gateway = Annotated[GatewayState, Depends(gateway_state)]
