"""What operators see: Prometheus metrics from all pool processes, and log lines
that carry the session and run ids."""

from __future__ import annotations

import urllib.request

from producer.stack.processes import free_port

from .conftest import Runtime


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


def sample(text: str, name: str) -> float:
    """The value of the sample ``name`` (with its labels, as printed), 0 if absent."""
    for line in text.splitlines():
        metric, _, value = line.rpartition(" ")
        if metric == name:
            return float(value)
    return 0.0


def test_worker_metrics_count_turns_across_pool_processes(runtime: Runtime):
    port = free_port()
    runtime.env["FENCE_METRICS_PORT"] = str(port)
    metrics_dir = runtime.directory / "metrics"
    metrics_dir.mkdir()
    runtime.env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    worker = runtime.start_worker(concurrency=2)
    runs = [runtime.producer.submit(f"metrics-{i}", "hello") for i in range(6)]
    runs.append(runtime.producer.submit("metrics-fail", "key=m fail=always"))
    for run in runs:  # the task returns after its metrics are recorded
        worker.wait_for(rf"fence\.run_turn\[{run.id}\] (succeeded|raised expected)", timeout=30)

    text = scrape(port)

    assert sample(text, 'fence_turns_total{state="succeeded"}') == 6
    assert sample(text, 'fence_turns_total{state="failed"}') == 1
    assert sample(text, "fence_turn_seconds_count") == 7
    assert sample(text, "fence_queue_wait_seconds_count") == 7
    assert sample(text, 'fence_model_seconds_count{model="controlled"}') == 6


def test_log_lines_carry_session_and_run_ids_but_not_message_bodies(runtime: Runtime):
    worker = runtime.start_worker()
    run = runtime.producer.submit("logged", "my secret plan")
    run.result(timeout=30)

    worker.wait_for(rf"session=logged run={run.id}: turn succeeded", timeout=30)
    assert "my secret plan" not in worker.output
