"""The Celery message a turn is published as: what Flower and the workers read."""

from __future__ import annotations

import base64
import json

import redis

from fence.runs import RunStore
from fence.runs.keys import TURN_QUEUE
from fence.runs.turn_message import TURN_TASK
from fence.settings import Settings
from workers.app import create_app

VOLATILE = {("properties", "delivery_tag"), ("properties", "reply_to"), ("headers", "origin")}


def published(client: redis.Redis) -> dict:
    [raw] = client.lrange(TURN_QUEUE, 0, -1)
    client.delete(TURN_QUEUE)
    return json.loads(raw)


def without_volatile(envelope: dict) -> dict:
    return {
        part: {k: v for k, v in value.items() if (part, k) not in VOLATILE}
        if isinstance(value, dict)
        else value
        for part, value in envelope.items()
    }


def test_a_published_turn_is_the_message_celery_itself_would_send(redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushall()
    settings = Settings(redis_url=redis_url)
    app = create_app(settings)
    kwargs = {"session_id": "support-42", "run_id": "0f3c"}
    app.send_task(TURN_TASK, kwargs=kwargs, task_id="0f3c")
    celerys = published(client)

    RunStore(client, settings).publish("support-42", "0f3c")
    ours = published(client)

    assert without_volatile(ours) == without_volatile(celerys)
    assert ours["headers"]["argsrepr"] == "()"
    assert ours["headers"]["kwargsrepr"] == "{'session_id': 'support-42', 'run_id': '0f3c'}"
    args, body_kwargs, _ = json.loads(base64.b64decode(ours["body"]))
    assert (args, body_kwargs) == ([], kwargs)
    app.close()


def test_each_delivery_of_a_run_has_its_own_tag(redis_url):
    """kombu keys an unacknowledged message by its tag: two deliveries of one run in
    flight at once (a sweeper's and a chained one) must not overwrite each other."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushall()
    store = RunStore(client, Settings(redis_url=redis_url))

    store.publish("s1", "r1")
    store.publish("s1", "r1")

    tags = {
        json.loads(raw)["properties"]["delivery_tag"] for raw in client.lrange(TURN_QUEUE, 0, -1)
    }
    assert len(tags) == 2


def test_workers_consume_the_queue_turns_are_published_to():
    assert create_app(Settings()).conf.task_default_queue == TURN_QUEUE
