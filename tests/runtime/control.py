"""The test agents' control Redis: where tests steer and count model and tool calls.

It is the runtime's Redis, or ``TEST_CONTROL_REDIS_URL`` when set, so a test can kill
the runtime's Redis and still steer the agents.
"""

from __future__ import annotations

import os
from functools import cache

import redis


@cache
def control() -> redis.Redis:
    url = os.environ.get("TEST_CONTROL_REDIS_URL") or os.environ["FENCE_REDIS_URL"]
    # no socket timeout (redis-py 8 defaults to 5 s): a blocked turn waits for its release
    return redis.Redis.from_url(url, decode_responses=True, socket_timeout=None)
