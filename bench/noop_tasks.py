"""The baseline of ``bench/runtime_overhead.py``: plain Celery no-op tasks.

``celery -A bench.noop_tasks worker`` runs them with the runtime's own Celery
configuration (``workers.app.create_app``: JSON, acks late, reject on worker
loss, prefetch 1, task events, same broker options), so the only difference
from ``fence.run_turn`` is the work a Fence turn does. The tasks use their own
queue and do not load ``workers.tasks``.
"""

from __future__ import annotations

import time
from functools import lru_cache

import redis

from fence.settings import get_settings
from workers.app import create_app

QUEUE = "bench-noop"
TASK = "bench.noop"
CHAIN_TASK = "bench.noop_chain"
DONE_KEY = "bench:noop:done"
"""List of the no-op tasks' finish times (epoch seconds), one entry per task."""

app = create_app()
app.conf.include = []
app.conf.task_default_queue = QUEUE
app.conf.beat_schedule = {}


@lru_cache(maxsize=1)
def _redis() -> redis.Redis:
    return redis.Redis.from_url(get_settings().redis_url)


@app.task(name=TASK, acks_late=True, reject_on_worker_lost=True)
def noop(index: int, sleep_s: float = 0.0) -> None:
    """Do nothing (or sleep, to stand in for a model call) and record the finish time:
    one RPUSH, the least that can be timed."""
    if sleep_s:
        time.sleep(sleep_s)
    _redis().rpush(DONE_KEY, repr(time.time()))


@app.task(name=CHAIN_TASK, acks_late=True, reject_on_worker_lost=True)
def noop_chain(remaining: int) -> None:
    """A no-op that first publishes its successor (``remaining`` more to go), as a Fence
    turn publishes its session's next turn: the cost of chaining, without Fence."""
    if remaining > 0:
        app.send_task(CHAIN_TASK, args=[remaining - 1], queue=QUEUE)
    _redis().rpush(DONE_KEY, repr(time.time()))
