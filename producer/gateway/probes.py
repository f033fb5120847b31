"""``/healthz`` and ``/metrics``: what probes and scrapers read, open without a token
because they reveal no session content."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import anyio.to_thread
from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from fence.validation import clip
from producer.api_models import ComponentHealth, HealthResponse
from producer.gateway.state import HEALTH_TIMEOUT_S, Gateway

HEALTH_SESSION = "fence-healthz"
"""The session whose memory ``/healthz`` opens (and never writes)."""

router = APIRouter()


@router.get(
    "/healthz",
    response_model=HealthResponse,
    responses={503: {"model": HealthResponse, "description": "A component is down."}},
    summary="Redis and the memory backend are reachable",
)
async def healthz(response: Response, gateway: Gateway) -> HealthResponse:
    def redis_ok() -> None:
        gateway.probe.ping()

    def memory_ok() -> None:
        gateway.open_memory(HEALTH_SESSION).get_window(0)

    components = {
        "redis": await _probe(redis_ok),
        "memory": await _probe(memory_ok),
    }
    healthy = all(c.ok for c in components.values())
    response.status_code = 200 if healthy else 503
    return HealthResponse(status="ok" if healthy else "unavailable", components=components)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    summary="Prometheus metrics: gateway, runtime queues, and workers (multiprocess dir)",
)
def prometheus_metrics(gateway: Gateway) -> Response:
    return Response(gateway.metrics.render(), media_type=CONTENT_TYPE_LATEST)


async def _probe(check: Callable[[], None]) -> ComponentHealth:
    """Run a blocking check in a thread, bounded in time even if the thread is stuck."""
    error = f"no answer within {HEALTH_TIMEOUT_S:g}s"
    with anyio.move_on_after(HEALTH_TIMEOUT_S):
        try:
            await anyio.to_thread.run_sync(check, abandon_on_cancel=True)
            return ComponentHealth(ok=True)
        except Exception as failure:
            error = f"{type(failure).__name__}: {clip(str(failure), 200)}"
    return ComponentHealth(ok=False, error=error)
