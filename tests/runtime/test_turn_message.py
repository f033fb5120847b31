"""The Celery message a turn is published as: what Flower and the workers read."""

from __future__ import annotations

import base64
import json

import redis

from fence.settings import Settings
from workers.app import RUN_TURN, create_app
from workers.dispatch import dispatcher


def test_a_dispatched_turn_is_a_task_named_by_its_run_with_the_session_visible(redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushall()
    app = create_app(Settings(redis_url=redis_url))

    dispatcher(app)("support-42", "0f3c")

    [raw] = client.lrange(app.conf.task_default_queue, 0, -1)
    envelope = json.loads(raw)
    headers = envelope["headers"]
    assert (headers["task"], headers["id"]) == (RUN_TURN, "0f3c")
    assert headers["argsrepr"] == "()"
    assert headers["kwargsrepr"] == "{'run_id': '0f3c', 'session_id': 'support-42'}"
    args, kwargs, _ = json.loads(base64.b64decode(envelope["body"]))
    assert (args, kwargs) == ([], {"run_id": "0f3c", "session_id": "support-42"})
    app.close()


def test_a_dispatched_turn_follows_the_task_routes(redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushall()
    app = create_app(Settings(redis_url=redis_url))
    app.conf.task_routes = {RUN_TURN: {"queue": "turns"}}

    dispatcher(app)("support-42", "0f3c")

    assert client.llen(app.conf.task_default_queue) == 0
    [raw] = client.lrange("turns", 0, -1)
    assert json.loads(raw)["headers"]["id"] == "0f3c"
    app.close()
