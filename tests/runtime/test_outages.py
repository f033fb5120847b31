"""Outages of the memory backend and of Redis, with real processes and real faults
(SIGKILL, SIGSTOP/SIGCONT, servers restarted on the same port): every run ends
terminal with the backend's error recorded, no turn lands twice or for a run that
did not succeed, the session moves on, and operators see the outage."""

from __future__ import annotations

import time
import warnings

import httpx

from fence.runs import RunRecord, RunState, RunTimeout
from producer import Run
from producer.stack.launch import start_gateway
from producer.stack.processes import ManagedProcess, free_port
from tests.support import REPO, metric_total, scrape_metrics

from .conftest import OUTAGE_TABLE, MemoryEndpoint, RestartableRedis, Runtime, new_key

FAILS_WITHIN_S = 30.0
"""With FAST_RECOVERY settings a run the backend refuses fails well within this."""

BLIP_LEASE_MS = "4000"
"""A lease comfortably longer than a Redis restart, so the outage is a blip."""


def wait_all(runtime: Runtime, runs: list[Run], timeout: float) -> list[RunRecord]:
    """Each run's terminal record, all within ``timeout`` seconds from now."""
    deadline = time.monotonic() + timeout
    records = []
    for run in runs:
        try:
            remaining = max(0.1, deadline - time.monotonic())
            records.append(runtime.producer.store.wait(run.id, timeout=remaining))
        except RunTimeout:
            raise AssertionError(f"not terminal within {timeout:g}s: {run.status()!r}") from None
    return records


def assert_memory_matches(runtime: Runtime, session_id: str, records: list[RunRecord]) -> None:
    """Memory holds the turn of every succeeded run exactly once, in order, and nothing
    of any other run (each message is unique, so the list says all of that)."""
    expected = []
    for record in records:
        if record.state is RunState.SUCCEEDED:
            expected += [record.message, f"answer to: {record.message}"]
    assert runtime.contents(session_id) == expected, [(r.id, r.state) for r in records]


def test_memory_back_without_its_table_fails_each_run_with_that_error(
    dynamodb_runtime: Runtime, memory_endpoint: MemoryEndpoint
):
    runtime = dynamodb_runtime
    runtime.start_worker()
    runtime.start_beat()
    assert runtime.producer.submit("no-table", "before the outage").result(timeout=30)

    memory_endpoint.kill()
    memory_endpoint.restart()  # same port, no table
    runs = [runtime.producer.submit("no-table", f"during the outage {n}") for n in range(2)]

    for record in wait_all(runtime, runs, FAILS_WITHIN_S):
        assert record.state is RunState.FAILED
        assert f"'{OUTAGE_TABLE}'" in (record.error or "")
        assert "not found" in (record.error or "")
        assert record.deliveries == 1, "no worker died, yet the run was delivered again"
    memory_endpoint.create_table(OUTAGE_TABLE)
    after = runtime.producer.submit("no-table", "after the outage")
    assert after.result(timeout=30) == "answer to: after the outage"
    assert runtime.contents("no-table") == ["after the outage", "answer to: after the outage"]


def test_memory_stalled_past_the_lease_commits_only_succeeded_turns_once_in_order(
    dynamodb_runtime: Runtime, memory_endpoint: MemoryEndpoint
):
    runtime = dynamodb_runtime
    runtime.start_worker()
    runtime.start_worker()
    runtime.start_beat()
    key = new_key()
    sessions = [f"stall-{i}" for i in range(4)]
    runs = {s: [] for s in sessions}
    held = runtime.producer.submit(sessions[0], f"key={key} block")
    runs[sessions[0]].append(held)
    for n in range(3):
        for session_id in sessions:
            runs[session_id].append(
                runtime.producer.submit(session_id, f"turn {n} of {session_id}")
            )
    runtime.wait_entered(key)

    memory_endpoint.pause()
    runtime.release(key)  # its answer is ready while memory cannot take it
    time.sleep(3 * runtime.settings.lease_ms / 1000)  # the fault: a stall past the lease
    memory_endpoint.resume()
    resumed_at = time.time()

    held_record = runtime.producer.store.wait(held.id, timeout=60)
    assert held_record.finished_at >= resumed_at, "the stall did not hold the turn"
    for session_id, session_runs in runs.items():
        records = wait_all(runtime, session_runs, 60)
        assert all(r.state.terminal for r in records)
        assert_memory_matches(runtime, session_id, records)


def test_redis_down_while_a_turn_saves_its_answer_costs_no_second_model_call(
    redis_outage_runtime: Runtime, restartable_redis: RestartableRedis
):
    runtime = redis_outage_runtime
    runtime.env["FENCE_LEASE_MS"] = BLIP_LEASE_MS
    worker = runtime.start_worker()
    runtime.start_beat()
    key = new_key()
    run = runtime.producer.submit("blip", f"key={key} block")
    runtime.wait_entered(key)

    restartable_redis.kill()
    mark = worker.line_count()
    runtime.release(key)  # the model answers; logging its text or saving it meets the outage
    worker.wait_for(r"redis (emit|save_answer) failed", start=mark, timeout=10)
    restartable_redis.restart()

    record = runtime.producer.store.wait(run.id, timeout=30)
    assert record.state is RunState.SUCCEEDED, record.error
    assert runtime.calls(key) == 1, "a Redis blip cost a second model call"
    assert record.deliveries == 1
    assert runtime.contents("blip") == [f"key={key} block", f"answer to: key={key} block"]


def test_runs_survive_three_redis_restarts_in_a_row(
    redis_outage_runtime: Runtime, restartable_redis: RestartableRedis
):
    runtime = redis_outage_runtime
    workers = [runtime.start_worker(), runtime.start_worker()]
    runtime.start_beat()
    accepted: dict[str, list[Run]] = {}

    def submit(session_id: str, message: str) -> Run:
        run = runtime.producer.submit(session_id, message)
        accepted.setdefault(session_id, []).append(run)
        return run

    for restart in range(3):
        key = new_key()
        submit(f"restart-{restart}-0", f"key={key} block")
        for i in range(3):
            for turn in range(2):
                submit(f"restart-{restart}-{i}", f"turn {turn} sleep=0.1")
        runtime.wait_entered(key)  # a turn is in flight

        restartable_redis.kill()
        restartable_redis.restart()
        runtime.release(key)

        after = submit(f"after-restart-{restart}", "are you there?")
        assert after.result(timeout=30) == "answer to: are you there?", f"restart {restart + 1}"

    for session_id, runs in accepted.items():
        records = wait_all(runtime, runs, 60)
        assert all(r.state.terminal for r in records)
        assert_memory_matches(runtime, session_id, records)
    report_exited_workers(workers)


def report_exited_workers(workers: list[ManagedProcess]) -> None:
    """A worker process that exited is not the runtime's promise to keep (its
    supervisor restarts it) but is worth seeing: warn with its last output."""
    for worker in workers:
        if worker.process.poll() is not None:
            warnings.warn(
                f"{worker.name} exited ({worker.process.returncode}) during the Redis "
                f"restarts; its last output:\n{worker.output[-3000:]}",
                stacklevel=2,
            )


def test_healthz_and_worker_metrics_report_a_memory_outage(
    dynamodb_runtime: Runtime, memory_endpoint: MemoryEndpoint
):
    runtime = dynamodb_runtime
    gateway_port = free_port()
    gateway = start_gateway(
        runtime.env, gateway_port, cwd=REPO, log_path=runtime.directory / "gateway.log"
    )
    runtime.processes.append(gateway)
    metrics_port = free_port()
    runtime.env["FENCE_METRICS_PORT"] = str(metrics_port)
    runtime.env["PROMETHEUS_MULTIPROC_DIR"] = str(runtime.directory / "metrics")
    runtime.start_worker()

    def memory_health() -> dict:
        response = httpx.get(f"http://127.0.0.1:{gateway_port}/healthz", timeout=30)
        memory = response.json()["components"]["memory"]
        assert response.status_code == (200 if memory["ok"] else 503)
        return memory

    def memory_errors() -> float:
        text = scrape_metrics(metrics_port)
        return metric_total(text, "fence_backend_errors_total", backend="memory")

    assert memory_health()["ok"]
    memory_endpoint.pause()
    assert not memory_health()["ok"]
    memory_endpoint.resume()
    assert memory_health()["ok"]

    memory_endpoint.kill()
    assert not memory_health()["ok"]
    memory_endpoint.restart()  # back, without the table: still down for fence
    down = memory_health()
    assert not down["ok"] and OUTAGE_TABLE in down["error"]
    before = memory_errors()
    run = runtime.producer.submit("metered", "during the outage")
    assert runtime.producer.store.wait(run.id, timeout=FAILS_WITHIN_S).state is RunState.FAILED
    assert memory_errors() > before

    memory_endpoint.create_table(OUTAGE_TABLE)
    assert memory_health()["ok"]
