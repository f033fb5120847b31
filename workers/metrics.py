"""Worker metrics in Prometheus format, safe across Celery's forked processes.

With ``FENCE_METRICS_PORT`` set, the worker's main process serves
``/metrics`` on that port, aggregating every pool process through
prometheus-client's multiprocess mode. prometheus-client picks its storage
when first imported, and the ``celery`` command imports it before any of our
code runs, so ``PROMETHEUS_MULTIPROC_DIR`` must be in the worker's
environment when it starts: one directory per worker, emptied at start.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from fence.models.base import Model, ModelResponse, observe_model_calls

LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


@dataclass(frozen=True)
class WorkerMetrics:
    turns: Any
    turn_seconds: Any
    queue_wait_seconds: Any
    lease_takeovers: Any
    leases_lost: Any
    sweeper_recoveries: Any
    model_seconds: Any
    model_tokens: Any
    backend_errors: Any
    agentcore_throttles: Any


@cache
def metrics() -> WorkerMetrics:
    """The metric objects of this process (created on first use, after fork)."""
    from prometheus_client import Counter, Histogram

    return WorkerMetrics(
        turns=Counter("fence_turns", "Turns finished, by final state.", ["state"]),
        turn_seconds=Histogram(
            "fence_turn_seconds", "Lease acquired to run finished.", buckets=LATENCY_BUCKETS
        ),
        queue_wait_seconds=Histogram(
            "fence_queue_wait_seconds", "Run accepted to turn started.", buckets=LATENCY_BUCKETS
        ),
        lease_takeovers=Counter(
            "fence_lease_takeovers", "Turns resumed by a worker after another worker's lease."
        ),
        leases_lost=Counter("fence_leases_lost", "Turns abandoned because their lease expired."),
        sweeper_recoveries=Counter(
            "fence_sweeper_recoveries", "Stalled runs re-dispatched by the sweeper."
        ),
        model_seconds=Histogram(
            "fence_model_seconds", "Model call latency.", ["model"], buckets=LATENCY_BUCKETS
        ),
        model_tokens=Counter("fence_model_tokens", "Model tokens.", ["model", "direction"]),
        backend_errors=Counter(
            "fence_backend_errors",
            "Failed memory and Redis calls on the turn path, retries included.",
            ["backend", "operation"],
        ),
        agentcore_throttles=Counter(
            "fence_agentcore_throttled",
            "Throttled AgentCore Memory responses (each retried), by operation.",
            ["operation"],
        ),
    )


def record_model_call(model: Model, response: ModelResponse, latency_s: float) -> None:
    m = metrics()
    m.model_seconds.labels(model.model_id).observe(latency_s)
    m.model_tokens.labels(model.model_id, "input").inc(response.usage.input_tokens)
    m.model_tokens.labels(model.model_id, "output").inc(response.usage.output_tokens)


def serve(host: str, port: int) -> None:
    """In the worker's main process, before the pool forks: serve /metrics on ``port``."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        raise ValueError(
            "FENCE_METRICS_PORT: also set PROMETHEUS_MULTIPROC_DIR (a directory, one per "
            "worker) in the worker's environment"
        )
    Path(directory).mkdir(parents=True, exist_ok=True)
    for kind in ("counter", "gauge", "histogram", "summary"):
        for stale in Path(directory).glob(f"{kind}_*.db"):
            stale.unlink()
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    start_http_server(port, addr=host, registry=registry)


def install_observers(memory_url: str) -> None:
    """Count what the library reports: model calls and, on AgentCore memory (whose
    module loads boto3, so only then), its throttled responses."""
    observe_model_calls(record_model_call)
    if memory_url.startswith("agentcore:"):
        from fence.memory.agentcore import observe_throttles

        observe_throttles(lambda operation: metrics().agentcore_throttles.labels(operation).inc())


def process_exited(pid: int) -> None:
    """Drop a dead pool process's live gauges (counters and histograms stay summed)."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
