"""What the routes share: made once by ``create_app``, held on ``app.state``, and handed
to each route as a FastAPI dependency (``gateway: Gateway``)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Annotated

import anyio
import redis
from fastapi import Depends, Request

from fence.memory.url import MemoryFactory, memory_factory
from fence.runs import RunStore
from fence.settings import Settings
from producer.client import Producer
from producer.gateway.metrics import GatewayMetrics

HEALTH_TIMEOUT_S = 3.0
"""How long a health check or a metrics scrape waits for Redis or the memory backend."""
MAX_CONCURRENT_WAITS = 256
"""Long polls blocked in threads at once; more queue for a thread (their own limiter, so
waiting clients never starve the threads that serve submits)."""


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

    @classmethod
    def build(cls, settings: Settings, producer: Producer) -> GatewayState:
        probe = redis.Redis.from_url(
            settings.redis_url,
            decode_responses=True,
            socket_timeout=HEALTH_TIMEOUT_S,
            socket_connect_timeout=HEALTH_TIMEOUT_S,
        )
        return cls(
            settings=settings,
            producer=producer,
            probe=probe,
            metrics=GatewayMetrics(RunStore(probe, settings)),
            open_memory=memory_factory(settings.memory),
            read_history=memory_factory(settings.memory, missing_ok=False),
        )

    @property
    def store(self) -> RunStore:
        return self.producer.store

    @cached_property
    def wait_limiter(self) -> anyio.CapacityLimiter:
        """The long polls' own thread limit, made on the event loop on first use."""
        return anyio.CapacityLimiter(MAX_CONCURRENT_WAITS)

    def close(self) -> None:
        self.probe.close()
        self.store.redis.close()


async def gateway_state(request: Request) -> GatewayState:
    """Async, so resolving it costs no trip to a worker thread."""
    return request.app.state.gateway


Gateway = Annotated[GatewayState, Depends(gateway_state)]
