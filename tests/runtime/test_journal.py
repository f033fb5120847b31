"""The runtime's step journal: a retry after a model error resumes from it, a turn that
outgrows it fails saying so, and it is gone when its run ends. Real redis-server and
celery workers."""

from __future__ import annotations

from fence.runs import RunState, keys

from .conftest import Runtime, new_key


def test_a_retry_after_a_model_error_does_not_run_a_finished_tool_again(runtime: Runtime):
    runtime.start_worker()
    key = new_key()

    run = runtime.producer.submit("noted", f"note key={key} text=hi", agent="noter")

    assert run.result(timeout=60) == "note: noted hi"
    record = run.status()
    assert record.attempts == 2  # the model failed reading the note, the turn was retried
    assert runtime.control.get(f"test:notes:{key}") == "1"  # the note was written once
    assert not runtime.control.exists(keys.journal("noted", run.id))


def test_a_turn_that_outgrows_its_journal_fails_and_writes_nothing(runtime: Runtime):
    runtime.env["FENCE_JOURNAL_MAX_BYTES"] = "1024"
    runtime.start_worker()

    run = runtime.producer.submit("outgrown", "x" * 1100)

    record = runtime.producer.store.wait(run.id, timeout=60)
    assert record.state is RunState.FAILED
    assert "FENCE_JOURNAL_MAX_BYTES" in record.error
    assert record.attempts == 1  # not retried: the same step would not fit again
    assert runtime.contents("outgrown") == []
    assert not runtime.control.exists(keys.journal("outgrown", run.id))


def test_a_cancelled_runs_journal_is_discarded(runtime: Runtime):
    runtime.start_worker()
    key = new_key()
    run = runtime.producer.submit("discarded", f"key={key} block")
    runtime.wait_entered(key)

    run.cancel()
    runtime.release(key)

    record = runtime.producer.store.wait(run.id, timeout=60)
    assert record.state is RunState.CANCELLED
    assert not runtime.control.exists(keys.journal("discarded", run.id))
    assert runtime.contents("discarded") == []
