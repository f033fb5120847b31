"""Prometheus metrics served by the gateway's ``/metrics``.

Three sources: the gateway's own request counters; runtime gauges computed
from Redis at scrape time (Flower cannot show queue depth for a Redis
broker, so the gateway does); and the workers' metrics, merged from
prometheus-client's multiprocess directory when ``PROMETHEUS_MULTIPROC_DIR``
is set (otherwise this process's default registry is served).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

import redis
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from fence.runs import RunStore

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
SCAN_LIMIT = 10_000
"""Sessions of the active-sessions index read per scrape; beyond this the gauges are partial."""
CELERY_QUEUE = "celery"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class RuntimeCollector:
    """Queue gauges read from Redis on each scrape, bounded by ``scan_limit`` sessions.

    Per-session depth would be a label per session (unbounded cardinality), so
    it is summarised: total queued runs, busy sessions, and the deepest mailbox.
    """

    def __init__(self, store: RunStore, scan_limit: int = SCAN_LIMIT) -> None:
        self.store = store
        self.scan_limit = scan_limit

    def collect(self) -> Iterator[Metric]:
        ok = GaugeMetricFamily(
            "fence_runtime_scrape_ok", "1 when the runtime gauges could be read from Redis."
        )
        try:
            values = self._read()
        except redis.RedisError:
            ok.add_metric([], 0)
            yield ok
            return
        ok.add_metric([], 1)
        yield ok
        for name, help_text, value in values:
            gauge = GaugeMetricFamily(name, help_text)
            gauge.add_metric([], value)
            yield gauge

    def _read(self) -> list[tuple[str, str, float]]:
        gauges = self.store.gauges(self.scan_limit)
        indexed, deepest = gauges.indexed_sessions, gauges.deepest_queue
        busy, queued = gauges.busy_sessions, gauges.queued_runs
        celery_queue = self.store.redis.llen(CELERY_QUEUE)
        return [
            (
                "fence_runtime_indexed_sessions",
                "Sessions in the active-sessions index (a superset of the busy ones).",
                indexed,
            ),
            (
                "fence_runtime_scan_truncated",
                f"1 when more than {self.scan_limit} sessions are indexed and the gauges below "
                "cover only the first ones.",
                int(indexed > gauges.scanned_sessions),
            ),
            ("fence_runtime_busy_sessions", "Sessions with a run in flight.", busy),
            (
                "fence_runtime_queued_runs",
                "Runs waiting in session mailboxes behind the run in flight.",
                queued,
            ),
            (
                "fence_runtime_max_session_queue_depth",
                "Length of the deepest session mailbox.",
                deepest,
            ),
            (
                "fence_runtime_celery_queue_length",
                "Turn tasks published and not yet taken by a worker.",
                celery_queue,
            ),
        ]


class _Chain:
    """Several collectors exposed as one, for ``generate_latest``."""

    def __init__(self, *sources: object) -> None:
        self.sources = sources

    def collect(self) -> Iterable[Metric]:
        for source in self.sources:
            yield from source.collect()


class GatewayMetrics:
    """The gateway's counters (one registry per app, so tests can build several apps)."""

    def __init__(self, store: RunStore) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "fence_gateway_requests",
            "HTTP requests handled by the gateway.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "fence_gateway_request_duration_seconds",
            "Time to answer an HTTP request (long polls included).",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.open_streams = Gauge(
            "fence_gateway_open_streams",
            "Event streams (Server-Sent Events) open now.",
            multiprocess_mode="livesum",
            registry=self.registry,
        )
        self.runtime = RuntimeCollector(store)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def render(self) -> bytes:
        """The exposition text. In multiprocess mode this process's counters live in the
        shared directory too, so they come from there and are not added twice."""
        if os.environ.get(MULTIPROC_ENV):
            merged = CollectorRegistry()
            MultiProcessCollector(merged)
            return generate_latest(_Chain(merged, self.runtime))
        return generate_latest(_Chain(REGISTRY, self.registry, self.runtime))
