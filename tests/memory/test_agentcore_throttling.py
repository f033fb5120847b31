"""AgentCore's CreateEvent quota: a throttled write is retried, lands once, and is counted."""

from __future__ import annotations

import uuid

import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from fence.errors import MemoryBackendError
from fence.memory import AgentCoreMemory
from fence.memory.agentcore import observe_throttles, throttle_counts, throttling
from tests.memory import aws_server
from tests.memory.agentcore_extras import AGENTCORE_EXTRAS
from tests.memory.test_agentcore import (
    ACTOR,
    MEMORY_ID,
    SESSION,
    created,
    created_params,
    list_params,
    sent_tokens,
    turn_event,
    user,
    without_payload,
)


class FakeClock:
    """Stands in for ``time`` in the throttling module: sleeping moves the clock."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(throttling, "time", fake)
    return fake


@pytest.fixture
def observers(monkeypatch) -> list:
    """This test's throttle observers (the process's are put back afterwards)."""
    mine: list = []
    monkeypatch.setattr(throttling, "_observers", mine)
    return mine


@pytest.fixture
def stubbed(aws_endpoint):
    client = aws_server.client("bedrock-agentcore", aws_endpoint)
    memory = AgentCoreMemory(ACTOR, SESSION, memory_id=MEMORY_ID, client=client)
    with Stubber(client) as stubber:
        yield memory, stubber
        stubber.assert_no_pending_responses()


def test_a_throttled_create_event_is_retried_and_the_turn_lands_once(stubbed, clock):
    memory, stubber = stubbed
    tokens = sent_tokens(memory)
    stubber.add_response("list_events", {"events": []}, list_params(payloads=False))
    stubber.add_client_error(
        "create_event", service_error_code="ThrottlingException", http_status_code=429
    )
    stubber.add_response("create_event", created("5#aa"), created_params(1, ["q"], "run-1"))
    mine = without_payload(turn_event("5#aa", 1, ["q"], "run-1"))
    stubber.add_response("list_events", {"events": [mine]}, list_params(payloads=False))

    assert memory.commit_turn("run-1", [user("q")]) is True

    assert len(clock.slept) == 1 and 0 <= clock.slept[0] <= throttling.THROTTLE_BASE_S
    assert len(tokens) == 2 and tokens[0] == tokens[1]  # the same request, stored once


def test_throttling_past_the_budget_fails_the_write_and_writes_nothing(stubbed, clock):
    memory, stubber = stubbed
    stubber.add_response("list_events", {"events": []}, list_params(payloads=False))
    for _ in range(3):
        stubber.add_client_error(
            "create_event", service_error_code="ThrottledException", http_status_code=429
        )
    clock.now = 0.0

    def slow_sleep(seconds: float) -> None:
        clock.slept.append(seconds)
        clock.now += throttling.THROTTLE_BUDGET_S / 2  # each wait eats half the budget

    clock.sleep = slow_sleep  # type: ignore[method-assign]

    with pytest.raises(MemoryBackendError, match="throttling"):
        memory.commit_turn("run-1", [user("q")])

    assert len(clock.slept) == 2  # three attempts, the third past the budget


def test_backoff_doubles_up_to_its_cap_within_the_budget(clock, monkeypatch):
    monkeypatch.setattr(throttling.random, "uniform", lambda low, high: high)
    attempts = 0

    def always_throttled() -> None:
        nonlocal attempts
        attempts += 1
        raise ClientError({"Error": {"Code": "ThrottledException"}}, "CreateEvent")

    with pytest.raises(ClientError):
        throttling.retry_throttled(always_throttled)

    assert clock.slept == [1, 2, 4, 8, 8, 8, 8, 8, 8]  # the next 8 s would pass 60 s
    assert attempts == 10


def test_other_errors_are_not_retried(clock):
    def denied() -> None:
        raise ClientError({"Error": {"Code": "AccessDeniedException"}}, "CreateEvent")

    with pytest.raises(ClientError):
        throttling.retry_throttled(denied)

    assert clock.slept == []


def test_every_throttled_response_of_the_service_is_counted(agentcore_factory, observers):
    """Over HTTP: the endpoint answers 429 ThrottledException twice; botocore retries."""
    memory = agentcore_factory(f"s-{uuid.uuid4().hex[:8]}")
    seen: list[str] = []
    observe_throttles(seen.append)
    before = throttle_counts().get("CreateEvent", 0)
    AGENTCORE_EXTRAS.throttle("CreateEvent", 2)

    assert memory.commit_turn("run-1", [user("q"), user("r")]) is True

    assert throttle_counts()["CreateEvent"] == before + 2
    assert seen == ["CreateEvent", "CreateEvent"]
    assert [m.content for m in memory.get_messages()] == ["q", "r"]
    assert memory.commit_turn("run-1", [user("q"), user("r")]) is False


def test_a_failing_observer_never_fails_the_write(agentcore_factory, observers):
    memory = agentcore_factory(f"s-{uuid.uuid4().hex[:8]}")

    def broken(operation: str) -> None:
        raise RuntimeError("metrics are down")

    observe_throttles(broken)
    AGENTCORE_EXTRAS.throttle("CreateEvent", 1)

    assert memory.commit_turn("run-1", [user("q")]) is True


def test_the_workers_count_throttled_responses_in_prometheus(
    agentcore_factory, observers, monkeypatch
):
    from prometheus_client import REGISTRY

    from fence.models import base
    from workers.metrics import install_observers

    monkeypatch.setattr(base, "_observers", [])  # the process's model observers stay as they were
    install_observers("agentcore://mem-1")
    counted = {"operation": "CreateEvent"}
    before = REGISTRY.get_sample_value("fence_agentcore_throttled_total", counted) or 0
    AGENTCORE_EXTRAS.throttle("CreateEvent", 2)

    assert agentcore_factory(f"s-{uuid.uuid4().hex[:8]}").commit_turn("run-1", [user("q")])

    assert REGISTRY.get_sample_value("fence_agentcore_throttled_total", counted) == before + 2
