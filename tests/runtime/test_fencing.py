"""Fencing reaches memory and the journal: a worker stalled (SIGSTOP) between saving its
answer and committing, past its lease, can never land the turn once another worker
took the run over, whatever the new holder ended it as; one stalled in a model call
cannot journal that step after the new holder went on.

``unjournaled`` makes the successor call the model again, so it can fail there."""

from __future__ import annotations

from fence.runs import RunState, keys

from .conftest import Runtime, new_key


def stall_before_commit(runtime: Runtime, session: str, message: str):
    """Submit ``message``; freeze its worker once it is about to commit. Returns
    (run, frozen worker)."""
    runtime.start_worker()
    runtime.start_worker()
    runtime.start_beat()
    run = runtime.producer.submit(session, message)
    key = message.split()[0].removeprefix("key=")
    runtime.wait_committing(key)
    stalled = runtime.worker_of(run.id)
    stalled.freeze()
    return run, stalled


def resume_and_expect_refusal(runtime: Runtime, stalled, key: str) -> None:
    stalled.thaw()
    runtime.release(key)  # the stalled commit goes ahead
    stalled.wait_for(r"turn abandoned: lease lost", timeout=30)


def test_a_stalled_holder_cannot_commit_a_run_its_successor_failed(runtime: Runtime):
    key = new_key()
    run, stalled = stall_before_commit(
        runtime, "fenced-failed", f"key={key} hold-before-commit fail-after=1 unjournaled"
    )

    record = runtime.producer.store.wait(run.id, timeout=60)  # taken over, model fails
    assert record.state is RunState.FAILED and record.deliveries == 2
    resume_and_expect_refusal(runtime, stalled, key)

    assert not runtime.memory("fenced-failed").has_turn(run.id)
    assert runtime.contents("fenced-failed") == []
    assert runtime.calls(key) == 1 + 3  # the stalled call, then 3 failing tries


def test_a_stalled_holder_cannot_commit_a_run_cancelled_meanwhile(runtime: Runtime):
    key = new_key()
    run, stalled = stall_before_commit(runtime, "fenced-cancelled", f"key={key} hold-before-commit")

    assert run.cancel().cancel_requested
    record = runtime.producer.store.wait(run.id, timeout=60)
    assert record.state is RunState.CANCELLED and record.deliveries == 2
    resume_and_expect_refusal(runtime, stalled, key)

    assert runtime.contents("fenced-cancelled") == []
    assert runtime.calls(key) == 1


def test_a_stalled_holder_cannot_commit_after_a_later_run_committed(runtime: Runtime):
    key = new_key()
    run, stalled = stall_before_commit(
        runtime, "fenced-later", f"key={key} hold-before-commit fail-after=1 unjournaled"
    )
    later = runtime.producer.submit("fenced-later", "the next question")

    assert later.result(timeout=60) == "answer to: the next question"
    assert run.status().state is RunState.FAILED
    resume_and_expect_refusal(runtime, stalled, key)

    assert runtime.contents("fenced-later") == [
        "the next question",
        "answer to: the next question",
    ]


def test_a_run_taken_over_before_its_commit_resumes_from_the_journal(runtime: Runtime):
    key = new_key()
    run, stalled = stall_before_commit(runtime, "fenced-journal", f"key={key} hold-before-commit")

    record = runtime.producer.store.wait(run.id, timeout=60)
    assert record.state is RunState.SUCCEEDED and record.deliveries == 2
    resume_and_expect_refusal(runtime, stalled, key)

    assert runtime.calls(key) == 1  # the successor replayed the journaled reply
    assert runtime.contents("fenced-journal") == [
        f"key={key} hold-before-commit",
        f"answer to: key={key} hold-before-commit",
    ]


def test_a_stalled_holder_cannot_journal_after_another_took_over(runtime: Runtime):
    runtime.start_worker()
    runtime.start_worker()
    runtime.start_beat()
    key = new_key()
    message = f"key={key} block"
    run = runtime.producer.submit("fenced-step", message)
    runtime.wait_entered(key)  # the model call is in flight, not journaled yet
    stalled = runtime.worker_of(run.id)
    stalled.freeze()

    record = runtime.producer.store.wait(run.id, timeout=60)  # another worker took over
    assert record.state is RunState.SUCCEEDED and record.deliveries == 2
    stalled.thaw()
    runtime.release(key)  # the stalled call returns; journaling its reply is refused
    stalled.wait_for(r"turn abandoned: lease lost", timeout=30)

    assert not runtime.control.exists(keys.journal("fenced-step", run.id))  # none re-made
    assert runtime.calls(key) == 2
    assert runtime.contents("fenced-step") == [message, f"answer to: {message}"]
