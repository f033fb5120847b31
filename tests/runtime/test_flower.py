"""Flower tells the truth: a real Flower process, fed by real workers' task events, shows
each turn as its run ended (``SUCCESS``, ``FAILURE`` with the run's error, ``REVOKED``
with why, ``RETRY`` while it waits for an approval), finds a session's turns by its id,
and lists no sweeps; the run's own state in Redis and its acks are those of any turn.

Flower is an observer outside the runtime, so the tests poll its HTTP API, with a
deadline, until it shows what they wait for."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from celery.exceptions import Ignore

from fence.runs import EventType, RunState
from producer import Run, RunCancelled, RunFailed
from producer.stack.launch import FLOWER_READY, launch_flower, ready
from producer.stack.processes import free_port
from tests.support import REPO, metric_total
from workers.tasks import Announced, report
from workers.turn import Outcome

from .conftest import Runtime, new_key

USER, PASSWORD = "fence", "flower-test-login"
DEADLINE_S = 30.0
POLL_S = 0.05


class Flower:
    """Flower's HTTP API, as an operator's script would read it."""

    def __init__(self, port: int) -> None:
        self.http = httpx.Client(
            base_url=f"http://127.0.0.1:{port}", auth=(USER, PASSWORD), timeout=10
        )

    def tasks(self, **query: str) -> dict[str, dict[str, Any]]:
        """``GET /api/tasks``: the tasks Flower knows, by task id (the run id for a turn)."""
        response = self.http.get("/api/tasks", params=query)
        response.raise_for_status()
        return response.json()

    def task(self, run: Run, state: str) -> dict[str, Any]:
        """The run's turn as Flower lists it, once Flower shows it in ``state``."""
        return self._await(lambda: _in_state(self.tasks().get(run.id), state), f"{run} {state}")

    def await_events(self) -> None:
        """Until Flower receives the workers' events (it subscribes after it starts
        serving): a worker's heartbeat, every two seconds, marks the worker online."""

        def online() -> float | None:
            metrics = self.http.get("/metrics").text
            return metric_total(metrics, "flower_worker_online") or None

        self._await(online, "a worker online in Flower")

    @staticmethod
    def _await(seen: Any, what: str) -> Any:
        deadline = time.monotonic() + DEADLINE_S
        while not (found := seen()):
            assert time.monotonic() < deadline, f"Flower never showed {what}"
            time.sleep(POLL_S)
        return found


def _in_state(task: dict[str, Any] | None, state: str) -> dict[str, Any] | None:
    return task if task and task["state"] == state else None


@pytest.fixture
def flower(runtime: Runtime) -> Iterator[Flower]:
    """One worker with one slot, and Flower (basic auth on, as it always runs)."""
    runtime.start_worker(concurrency=1)
    port = free_port()
    process = launch_flower(
        runtime.env,
        port,
        f"{USER}:{PASSWORD}",
        cwd=REPO,
        log_path=runtime.directory / "flower.log",
    )
    runtime.processes.append(process)  # stopped with the runtime's other processes
    ready(process, FLOWER_READY)
    flower = Flower(port)
    flower.await_events()
    yield flower
    flower.http.close()


def wait_waiting(run: Run) -> Run:
    """Block on the run's events until it asks for approval."""
    for event in run.events(timeout=60):
        if event.type is EventType.APPROVAL_REQUESTED:
            return run
        assert not event.terminal, event
    raise AssertionError(f"{run} never asked for approval")


def test_flower_shows_a_failed_run_as_failure_and_a_cancelled_one_as_revoked(
    runtime: Runtime, flower: Flower
):
    producer = runtime.producer
    good = producer.submit("flower-good", "hello")
    failing, cancelling = new_key(), new_key()
    doomed = producer.submit("flower-failing", f"key={failing} fail=always")
    after_failure = producer.submit("flower-failing", "after the failure")
    cancelled = producer.submit("flower-cancel", f"key={cancelling} block")
    after_cancel = producer.submit("flower-cancel", "after the cancel")
    runtime.wait_entered(cancelling)
    assert cancelled.cancel().cancel_requested
    runtime.release(cancelling)

    # The runs' own states, in Redis, are what they always were; each session moved on.
    assert good.result(timeout=30) == "answer to: hello"
    with pytest.raises(RunFailed, match="scripted failure on call 3"):
        doomed.result(timeout=30)
    with pytest.raises(RunCancelled):
        cancelled.result(timeout=30)
    assert after_failure.result(timeout=30) and after_cancel.result(timeout=30)
    assert doomed.status().attempts == 3

    succeeded = flower.task(good, "SUCCESS")
    failed = flower.task(doomed, "FAILURE")
    revoked = flower.task(cancelled, "REVOKED")
    assert succeeded["result"] == "'succeeded'" and succeeded["exception"] is None
    assert failed["exception"] == (
        "RunFailed('ModelError: scripted failure on call 3 (3 attempts)')"
    )
    assert revoked["exception"] == "cancelled while running" and revoked["revoked"]
    assert set(flower.tasks(state="FAILURE")) == {doomed.id}  # the Failed tab
    for run in (good, doomed, cancelled):
        assert flower.tasks()[run.id]["name"] == "fence.run_turn"

    # Every turn was acked once and never delivered again, a failed one too.
    assert redis.Redis.from_url(runtime.redis_url).hlen("unacked") == 0
    worker = runtime.processes[0].output
    for run in (good, doomed, after_failure, cancelled, after_cancel):
        assert worker.count(f"fence.run_turn[{run.id}] received") == 1, run

    # A late duplicate delivery of the failed run is skipped and reports nothing over it.
    producer.store.publish("flower-failing", doomed.id)
    runtime.processes[0].wait_for(r"turn skipped: not_active", timeout=30)
    later = producer.submit("flower-good", "after the duplicate")
    flower.task(later, "SUCCESS")  # one worker's events reach Flower in order
    assert flower.tasks()[doomed.id]["state"] == "FAILURE"

    # Flower's search finds a session's turns by its id, exactly.
    for query in ("kwargs:session_id=flower-failing", "flower-failing"):
        assert set(flower.tasks(search=query)) == {doomed.id, after_failure.id}, query
    assert flower.tasks()[doomed.id]["kwargs"].startswith("{'session_id': 'flower-failing'")


def test_a_waiting_run_is_shown_as_retry_until_it_ends(runtime: Runtime, flower: Flower):
    producer = runtime.producer
    approved = wait_waiting(producer.submit("flower-wait", "refund", agent="approver"))
    cancelled = wait_waiting(producer.submit("flower-wait-cancel", "refund", agent="approver"))

    for run in (approved, cancelled):
        assert flower.task(run, "RETRY")["exception"] == "waiting for approval of 'refund'"
        assert run.status().state is RunState.WAITING
    assert not flower.tasks(state="FAILURE")

    approved.approve()
    cancelled.cancel()

    assert approved.result(timeout=60) == "done: refunded 500 on A1"
    assert flower.task(approved, "SUCCESS")["result"] == "'succeeded'"
    revoked = flower.task(cancelled, "REVOKED")
    assert revoked["exception"] == "cancelled while waiting for approval"
    assert cancelled.status().state is RunState.CANCELLED


def test_a_retried_attempt_shows_in_flower_as_the_turn_goes_on(runtime: Runtime, flower: Flower):
    key = new_key()
    run = runtime.producer.submit("flower-retry", f"key={key} fail=1")

    assert run.result(timeout=30) == f"answer to: key={key} fail=1"
    task = flower.task(run, "SUCCESS")
    assert task["retries"] == 1  # from the task-retried event its first failed try sent
    assert run.status().attempts == 2


def test_sweeps_do_not_crowd_turns_out_of_flower(runtime: Runtime, flower: Flower):
    worker = runtime.processes[0]
    start = len(worker.output.splitlines())
    runtime.start_beat()  # a sweep every 0.5 s (FENCE_SWEEP_INTERVAL_S)
    for _ in range(3):  # sweeps run on this worker, after Flower began to listen
        worker.wait_for(r"fence\.sweep\[[^]]+\] succeeded", timeout=30, start=start)
        start = len(worker.output.splitlines())

    run = runtime.producer.submit("flower-after-sweeps", "hello")

    # The worker sends its events in order: had the sweeps sent any, Flower had them now.
    flower.task(run, "SUCCESS")
    assert not flower.tasks(taskname="fence.sweep")
    assert {task["name"] for task in flower.tasks().values()} == {"fence.run_turn"}


def test_a_deferred_turn_is_announced_as_retry_and_a_skipped_one_reports_nothing():
    """Memory unreachable at the commit (the sweeper delivers the run again), or a
    delivery that is not the run's: neither is an outcome of the run."""
    with pytest.raises(Announced) as deferred:
        report(Outcome(RunState.RUNNING, error="deferred: memory commit_turn failed: down"))
    assert (deferred.value.event, deferred.value.reason) == (
        "task-retried",
        "deferred: memory commit_turn failed: down",
    )
    with pytest.raises(Ignore) as skipped:
        report(None)
    assert not isinstance(skipped.value, Announced)
