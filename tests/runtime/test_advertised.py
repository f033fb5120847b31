"""Workers advertise their agents in Redis; producers check agent names against what live
workers advertise and import no agent code. Real redis-server and celery workers."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fence.runs import RunState, advertised, keys
from fence.settings import Settings
from fence.validation import InvalidInput
from producer import Producer
from tests.runtime.agents import registry
from tests.support import REPO

from .conftest import Runtime


def test_a_live_worker_advertises_its_agents_until_it_stops(runtime: Runtime):
    worker = runtime.start_worker()
    [(host, names)] = advertised.live_agents(runtime.control).items()
    assert host.startswith(worker.name + "@")
    assert names == sorted(registry)

    worker.stop()

    assert advertised.live_agents(runtime.control) == {}


def test_a_name_no_live_worker_advertises_is_refused_naming_the_known_ones(runtime: Runtime):
    runtime.start_worker()

    with pytest.raises(InvalidInput) as refused:
        runtime.producer.submit("adv", "hi", agent="slow")
    assert refused.value.field == "agent"
    assert (
        str(refused.value) == f"agent: unknown agent 'slow'; known: {', '.join(sorted(registry))}"
    )
    assert runtime.producer.submit("adv", "hi", agent="noter").status().state in set(RunState)


def test_with_no_live_worker_a_submit_is_accepted_unless_asked_to_refuse(runtime: Runtime):
    run = runtime.producer.submit("nobody-yet", "hi", agent="anything")
    assert run.status().state is RunState.QUEUED  # durable: it waits for a worker

    strict = Producer(settings=Settings(redis_url=runtime.redis_url, require_live_agent=True))
    with pytest.raises(InvalidInput, match="FENCE_REQUIRE_LIVE_AGENT"):
        strict.submit("nobody-yet", "hi", agent="anything")


def test_a_dead_workers_advertisement_expires(runtime: Runtime):
    advertised.advertise(runtime.control, "ghost@host", ["ghostly"], ttl_s=0.001)
    advertised.advertise(runtime.control, "live@host", ["alive"], ttl_s=60)

    assert advertised.live_agents(runtime.control) == {"live@host": ["alive"]}
    assert runtime.control.hkeys(keys.AGENTS) == ["live@host"]  # the stale one is gone


def test_producers_and_the_gateway_import_no_agent_code():
    script = (
        "import sys; import producer, producer.client, producer.gateway.app, producer.cli.main;"
        "from producer.gateway.app import create_app;"
        "loaded = [m for m in sys.modules if m.startswith(('workers', 'tests.runtime.agents'))];"
        "print(loaded)"
    )
    env = {"FENCE_AGENTS": "tests.runtime.agents:registry", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
