"""Which agents live workers can run, so producers need no agent code to check a name.

Each worker writes the names in its registry to ``keys.AGENTS`` under its hostname
with a deadline (``FENCE_AGENTS_TTL_S`` ahead), again while it runs, and removes them
when it stops; a worker that died without saying so drops out once its deadline
passes. Readers ignore, and writers remove, fields past their deadline.
"""

from __future__ import annotations

import json
import time

import redis

from fence.runs import keys


def advertise(client: redis.Redis, hostname: str, agents: list[str], ttl_s: float) -> None:
    now = time.time()
    entry = json.dumps({"agents": sorted(agents), "until": now + ttl_s})
    client.hset(keys.AGENTS, hostname, entry)
    stale = [host for host, until in _deadlines(client).items() if until <= now]
    if stale:
        client.hdel(keys.AGENTS, *stale)


def withdraw(client: redis.Redis, hostname: str) -> None:
    client.hdel(keys.AGENTS, hostname)


def live_agents(client: redis.Redis) -> dict[str, list[str]]:
    """Hostname -> agent names, of the workers whose advertisement is current."""
    now = time.time()
    live = {}
    for host, text in client.hgetall(keys.AGENTS).items():
        entry = _entry(text)
        if entry is not None and entry[1] > now:
            live[host] = entry[0]
    return live


def _deadlines(client: redis.Redis) -> dict[str, float]:
    return {
        host: entry[1] if entry else 0.0
        for host, text in client.hgetall(keys.AGENTS).items()
        for entry in [_entry(text)]
    }


def _entry(text: str) -> tuple[list[str], float] | None:
    """An advertisement's names and deadline; None if it is not one (it is dropped)."""
    try:
        entry = json.loads(text)
        return [str(name) for name in entry["agents"]], float(entry["until"])
    except (ValueError, TypeError, KeyError):
        return None
