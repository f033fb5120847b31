"""A tool that needs approval pauses its run (``waiting``) with the worker's slot free
and the session's later runs queued behind it; approving (as asked, or with edited
arguments), denying, a timeout, a cancel and an interrupt each end the wait as the
README says. Real redis-server, celery worker and beat; the Python client."""

from __future__ import annotations

import pytest

from fence.runs import EventType, NotWaiting, RunState, Strategy, keys
from fence.settings import Settings
from fence.validation import InvalidInput
from producer import Run

from .conftest import Runtime

AGENT = "approver"


def waiting(run: Run) -> Run:
    """Block (following the run's events, no polling) until the run asks for approval."""
    for event in run.events(timeout=60):
        if event.type is EventType.APPROVAL_REQUESTED:
            assert run.status().state is RunState.WAITING
            return run
        assert not event.terminal, event
    raise AssertionError(f"{run} never asked for approval")


def refunds(runtime: Runtime, run: Run) -> list[str]:
    return runtime.control.lrange(f"test:refunds:{run.id}", 0, -1)


@pytest.fixture
def one_slot(runtime: Runtime) -> Runtime:
    """One worker with one slot, and the sweeper."""
    runtime.start_worker(concurrency=1)
    runtime.start_beat()
    return runtime


def test_an_approved_call_runs_once_and_the_session_then_moves_on(one_slot: Runtime):
    producer = one_slot.producer
    run = waiting(producer.submit("refunds", "refund my order", agent=AGENT))
    later = producer.submit("refunds", "and thanks", agent="controlled")
    elsewhere = producer.submit("other", "meanwhile", agent="controlled")

    # the slot is free: another session's turn runs while this one waits
    assert elsewhere.result(timeout=60) == "answer to: meanwhile"
    record = run.status()
    assert record.approval.name == "refund" and record.approval.arguments == {
        "order_id": "A1",
        "cents": 500,
    }
    assert later.status().state is RunState.QUEUED  # order holds
    assert refunds(one_slot, run) == []

    run.approve()

    assert run.result(timeout=60) == "done: refunded 500 on A1"
    assert later.result(timeout=60) == "answer to: and thanks"
    assert refunds(one_slot, run) == ["A1:500"]
    contents = one_slot.contents("refunds")
    assert contents[0] == "refund my order" and contents[-1] == "answer to: and thanks"
    assert "refunded 500 on A1" in contents
    assert not one_slot.control.exists(keys.journal("refunds", run.id))
    types = [event.type for event in run.events()]
    assert types.count(EventType.APPROVAL_DECIDED) == 1 and types[-1] is EventType.FINISHED


def test_an_approval_with_edited_arguments_runs_those(one_slot: Runtime):
    run = waiting(one_slot.producer.submit("edited", "refund", agent=AGENT))

    run.approve({"order_id": "A1", "cents": 200})

    assert run.result(timeout=60) == "done: refunded 200 on A1"
    assert refunds(one_slot, run) == ["A1:200"]


def test_a_denial_reaches_the_model_as_the_tools_result(one_slot: Runtime):
    run = waiting(one_slot.producer.submit("denied", "refund", agent=AGENT))

    run.deny("over the limit")

    assert run.result(timeout=60) == "done: denied: over the limit"
    assert refunds(one_slot, run) == []


def test_bad_decisions_change_nothing(one_slot: Runtime):
    run = waiting(one_slot.producer.submit("bad", "refund", agent=AGENT))

    with pytest.raises(InvalidInput) as wrong_type:
        run.approve({"order_id": "A1", "cents": "lots"})
    assert wrong_type.value.field == "arguments.cents"
    with pytest.raises(InvalidInput) as unknown:
        run.approve({"order_id": "A1", "cents": 5, "card": "x"})
    assert unknown.value.field == "arguments.card"
    with pytest.raises(InvalidInput) as missing:
        run.approve({"order_id": "A1"})
    assert missing.value.field == "arguments.cents"
    assert run.status().state is RunState.WAITING

    run.approve()
    run.result(timeout=60)
    with pytest.raises(NotWaiting, match="is succeeded, not waiting"):
        run.deny()


def test_cancelling_a_waiting_run_ends_it_and_the_session_moves_on(one_slot: Runtime):
    producer = one_slot.producer
    run = waiting(producer.submit("cancel-wait", "refund", agent=AGENT))
    later = producer.submit("cancel-wait", "next", agent="controlled")

    assert run.cancel().cancel_requested  # a worker takes it next, to end it

    assert later.result(timeout=60) == "answer to: next"
    record = run.status()
    assert record.state is RunState.CANCELLED
    assert record.error == "cancelled while waiting for approval"
    assert refunds(one_slot, run) == []
    assert one_slot.contents("cancel-wait") == ["next", "answer to: next"]


def test_an_interrupt_ends_a_waiting_run(one_slot: Runtime):
    producer = one_slot.producer
    run = waiting(producer.submit("interrupt-wait", "refund", agent=AGENT))

    newer = producer.submit(
        "interrupt-wait", "never mind", agent="controlled", strategy=Strategy.INTERRUPT
    )

    assert newer.result(timeout=60) == "answer to: never mind"
    assert run.status().state is RunState.CANCELLED
    assert refunds(one_slot, run) == []


def test_a_run_waiting_past_the_timeout_fails_and_the_session_moves_on(runtime: Runtime):
    runtime.env["FENCE_APPROVAL_TIMEOUT_S"] = "1"
    runtime.start_worker(concurrency=1)
    runtime.start_beat()
    run = waiting(runtime.producer.submit("timeout", "refund", agent=AGENT))
    later = runtime.producer.submit("timeout", "next", agent="controlled")

    assert later.result(timeout=60) == "answer to: next"
    record = run.status()
    assert record.state is RunState.FAILED
    assert "FENCE_APPROVAL_TIMEOUT_S" in record.error
    with pytest.raises(NotWaiting):
        run.approve()


def test_an_approval_timeout_past_the_run_records_life_is_refused_by_name():
    with pytest.raises(ValueError, match="FENCE_APPROVAL_TIMEOUT_S: must be shorter than"):
        Settings(approval_timeout_s=100, run_ttl_s=100, webhook_retry_for_s=10)
