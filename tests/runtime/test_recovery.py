"""Crashes, lost dispatches, duplicate deliveries and stale lease holders."""

from __future__ import annotations

from fence.runs import EventType, RunRequest, RunState, keys

from .conftest import Runtime, new_key


def test_a_turn_killed_midway_completes_exactly_once_on_another_worker(runtime: Runtime):
    runtime.start_worker()
    runtime.start_worker()
    runtime.start_beat()
    key = new_key()
    run = runtime.producer.submit("crash-mid", f"key={key} block")
    runtime.wait_entered(key)

    runtime.worker_of(run.id).kill()

    assert run.result(timeout=60)
    assert runtime.calls(key) == 2  # the dead worker's call, then the rerun
    assert runtime.contents("crash-mid") == [f"key={key} block", f"answer to: key={key} block"]
    assert (run.status().deliveries, run.status().attempts) == (2, 1)
    events = list(run.events(timeout=5))  # the log shows the new delivery, and one end
    started = [e.data for e in events if e.type is EventType.STARTED]
    assert [(s["attempt"], s["delivery"]) for s in started] == [(1, 1), (1, 2)]
    assert started[0]["worker"] != started[1]["worker"]
    assert [e.type for e in events].count(EventType.FINISHED) == 1
    assert events[-1].data == {"state": "succeeded"}


def test_a_worker_killed_after_commit_does_not_duplicate_and_the_session_continues(
    runtime: Runtime,
):
    runtime.start_worker()
    runtime.start_worker()
    runtime.start_beat()
    key = new_key()
    first = runtime.producer.submit("crash-after", f"key={key} hold-after-commit")
    second = runtime.producer.submit("crash-after", "and then?")
    runtime.wait_committed(key)

    runtime.worker_of(first.id).kill()

    assert first.result(timeout=60) == f"answer to: key={key} hold-after-commit"
    assert second.result(timeout=60)
    assert runtime.calls(key) == 1, "the model was called again for a committed turn"
    assert runtime.contents("crash-after") == [
        f"key={key} hold-after-commit",
        f"answer to: key={key} hold-after-commit",
        "and then?",
        "answer to: and then?",
    ]


def test_the_sweeper_recovers_a_run_whose_dispatch_was_lost(runtime: Runtime):
    runtime.start_worker()
    runtime.start_beat()
    request = RunRequest(session_id="lost-dispatch", message="never published", agent="controlled")

    submission = runtime.producer.store.submit(request)  # accepted, but no task published

    assert submission.dispatch
    assert runtime.producer.run(submission.run_id).result(timeout=30)
    assert runtime.contents("lost-dispatch") == ["never published", "answer to: never published"]


def test_a_task_delivered_twice_runs_once(runtime: Runtime):
    runtime.start_worker(concurrency=2)
    key = new_key()
    run = runtime.producer.submit("twice", f"key={key} block")
    runtime.wait_entered(key)
    dispatch = runtime.producer.store.publish

    dispatch("twice", run.id)  # the duplicate finds the lease taken and skips
    runtime.worker_of(run.id).wait_for(r"turn skipped: leased", timeout=30)
    runtime.release(key)

    assert run.result(timeout=30)
    dispatch("twice", run.id)  # a late duplicate finds the run no longer active
    runtime.worker_of(run.id).wait_for(r"turn skipped: not_active", timeout=30)
    assert runtime.calls(key) == 1
    assert len(runtime.contents("twice")) == 2


def test_a_stale_lease_holder_cannot_commit(runtime: Runtime):
    first_worker = runtime.start_worker()
    key = new_key()
    run = runtime.producer.submit("stale", f"key={key} block")
    runtime.wait_entered(key)
    runtime.control.delete(keys.lease("stale"))  # the lease expires under the slow worker
    runtime.start_worker()
    runtime.producer.store.publish("stale", run.id)

    assert run.result(timeout=30) == f"answer to: key={key} block"
    runtime.release(key)  # the stale holder wakes up with its answer

    first_worker.wait_for(r"turn abandoned: lease lost", timeout=30)
    assert runtime.calls(key) == 2
    assert runtime.contents("stale") == [f"key={key} block", f"answer to: key={key} block"]
    assert run.status().state is RunState.SUCCEEDED


def test_a_run_whose_worker_keeps_dying_is_failed_instead_of_rerun_forever(runtime: Runtime):
    runtime.env["FENCE_MAX_DELIVERIES"] = "1"
    runtime.start_worker()
    runtime.start_worker()
    runtime.start_beat()
    key = new_key()
    poison = runtime.producer.submit("poison", f"key={key} block")
    after = runtime.producer.submit("poison", "next turn")
    runtime.wait_entered(key)

    runtime.worker_of(poison.id).kill()

    assert runtime.producer.store.wait(poison.id, timeout=60).state is RunState.FAILED
    assert "FENCE_MAX_DELIVERIES" in (poison.status().error or "")
    assert after.result(timeout=60)
    assert runtime.calls(key) == 1
    assert runtime.contents("poison") == ["next turn", "answer to: next turn"]
