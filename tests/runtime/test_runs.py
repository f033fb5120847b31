"""What producers rely on: idempotency, double-texting strategies, cancel,
failures and bad input — against real workers."""

from __future__ import annotations

import pytest

from fence.runs import IdempotencyConflict, RunNotFound, RunState, RunTimeout
from fence.runs.turn_message import TURN_TASK
from producer import RunCancelled, RunFailed, RunRejected
from workers.app import create_app

from .conftest import Runtime, new_key


def test_the_same_idempotency_key_returns_the_same_run(runtime: Runtime):
    runtime.start_worker()
    first = runtime.producer.submit("idem", "charge the card", idempotency_key="order-1")
    again = runtime.producer.submit("idem", "charge the card", idempotency_key="order-1")
    elsewhere = runtime.producer.submit("idem-2", "charge the card", idempotency_key="order-1")

    assert again.id == first.id and elsewhere.id != first.id
    first.result(timeout=30)
    elsewhere.result(timeout=30)
    assert runtime.contents("idem") == ["charge the card", "answer to: charge the card"]
    ttl = runtime.control.ttl("fence:{idem}:idem:order-1")
    assert ttl > 24 * 3600 - 60


def test_an_idempotency_key_reused_for_another_request_raises_naming_it(runtime: Runtime):
    first = runtime.producer.submit("idem-3", "charge 10 EUR", idempotency_key="order-1")

    with pytest.raises(IdempotencyConflict, match="idempotency_key: already used") as conflict:
        runtime.producer.submit(
            "idem-3",
            "charge 10 EUR",
            agent="controlled",
            metadata={"x": 1},
            idempotency_key="order-1",
        )

    assert conflict.value.run_id == first.id and conflict.value.differs == ["metadata"]
    assert runtime.producer.session("idem-3").queued == []


def test_reject_strategy_refuses_a_message_while_the_session_is_busy(runtime: Runtime):
    runtime.start_worker()
    key = new_key()
    busy = runtime.producer.submit("reject", f"key={key} block")
    runtime.wait_entered(key)

    refused = runtime.producer.submit("reject", "me too", strategy="reject")

    with pytest.raises(RunRejected, match="busy"):
        refused.result(timeout=5)
    runtime.release(key)
    busy.result(timeout=30)
    assert runtime.contents("reject") == [f"key={key} block", f"answer to: key={key} block"]


def test_interrupt_cancels_the_running_turn_and_runs_next(runtime: Runtime):
    runtime.start_worker()
    key = new_key()
    running = runtime.producer.submit("interrupt", f"key={key} block")
    queued = runtime.producer.submit("interrupt", "queued before")
    runtime.wait_entered(key)

    urgent = runtime.producer.submit("interrupt", "urgent", strategy="interrupt")
    runtime.release(key)

    with pytest.raises(RunCancelled):
        running.result(timeout=30)
    assert urgent.result(timeout=30) and queued.result(timeout=30)
    assert runtime.contents("interrupt") == [
        "urgent",
        "answer to: urgent",
        "queued before",
        "answer to: queued before",
    ]


def test_cancelling_a_queued_run_removes_it_and_a_running_one_commits_nothing(
    runtime: Runtime,
):
    runtime.start_worker()
    key = new_key()
    running = runtime.producer.submit("cancel", f"key={key} block")
    queued = runtime.producer.submit("cancel", "never runs")
    last = runtime.producer.submit("cancel", "runs after")
    runtime.wait_entered(key)

    assert queued.cancel().state is RunState.CANCELLED
    assert running.cancel().cancel_requested
    runtime.release(key)

    with pytest.raises(RunCancelled):
        running.result(timeout=30)
    assert last.result(timeout=30)
    assert runtime.contents("cancel") == ["runs after", "answer to: runs after"]
    assert queued.status().state is RunState.CANCELLED
    assert runtime.producer.session("cancel").active_run is None


def test_a_failing_model_is_retried_then_the_run_fails_and_the_session_moves_on(
    runtime: Runtime,
):
    runtime.start_worker()
    key, flaky = new_key(), new_key()
    doomed = runtime.producer.submit("failing", f"key={key} fail=always")
    recovers = runtime.producer.submit("failing", f"key={flaky} fail=1")

    with pytest.raises(RunFailed, match="scripted failure") as failure:
        doomed.result(timeout=30)
    assert recovers.result(timeout=30)
    assert runtime.calls(key) == 3  # one attempt and FENCE_TURN_RETRIES=2 retries
    assert runtime.calls(flaky) == 2
    record = failure.value.record
    assert record.error and record.finished_at and record.worker
    assert runtime.contents("failing") == [f"key={flaky} fail=1", f"answer to: key={flaky} fail=1"]


def test_result_times_out_while_the_run_is_still_going(runtime: Runtime):
    runtime.start_worker()
    key = new_key()
    run = runtime.producer.submit("slow", f"key={key} block")
    runtime.wait_entered(key)

    with pytest.raises(RunTimeout, match="running"):
        run.result(timeout=0.2)
    runtime.release(key)
    assert run.result(timeout=30)


@pytest.mark.parametrize(
    ("fields", "rule"),
    [
        ({"message": ""}, "message"),
        ({"message": "lone \ud800 surrogate"}, "surrogate"),
        ({"message": "x" * (256 * 1024 + 1)}, "FENCE_MAX_MESSAGE_BYTES"),
        ({"session_id": "bad session"}, "session_id"),
        ({"session_id": "{slot}"}, "session_id"),
        ({"agent": "nobody"}, "unknown agent"),
        ({"strategy": "shout"}, "strategy"),
        ({"metadata": {"when": object()}}, "metadata"),
        ({"metadata": "not a dict"}, "metadata"),
        ({"idempotency_key": "has spaces"}, "idempotency_key"),
    ],
)
def test_bad_input_is_refused_at_submit_and_nothing_is_written(runtime: Runtime, fields, rule):
    request = {"session_id": "valid", "message": "hello", **fields}
    if "agent" in fields:  # names are checked against what live workers advertise
        runtime.start_worker()
    before = set(runtime.control.keys("*"))

    with pytest.raises(ValueError, match=rule):
        runtime.producer.submit(**request)

    assert set(runtime.control.keys("*")) == before


def test_an_unknown_run_id_is_reported_as_not_found(runtime: Runtime):
    with pytest.raises(RunNotFound, match="not found"):
        runtime.producer.run("no-such-run")


def test_a_worker_never_deserializes_a_pickle_payload(runtime: Runtime):
    worker = runtime.start_worker()
    create_app(runtime.settings).send_task(
        TURN_TASK,
        kwargs={"run_id": "pickled", "session_id": "pickled"},
        task_id="pickled",
        serializer="pickle",
    )

    worker.wait_for(r"Refusing to deserialize untrusted content of type pickle", timeout=30)
    assert "fence.run_turn[pickled] received" not in worker.output
