"""The liveness heartbeat (``workers.liveness``) against a real worker: the file is
fresh only while the worker's consumer loop runs connected, and the probe the
deploy files use (``python -m workers.liveness --max-age S``) says so."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from producer.stack.launch import launch_worker
from producer.stack.processes import free_port
from tests.support import REPO, Runtime
from workers.liveness import EXIT_ALIVE, EXIT_STALE, EXIT_UNSET, HEARTBEAT_INTERVAL_S, main

MAX_AGE_S = 1.5 * HEARTBEAT_INTERVAL_S  # short, so the tests are quick
WAIT_S = 20.0


def probe(runtime: Runtime, *options: str) -> subprocess.CompletedProcess[str]:
    """The probe as Kubernetes and Compose run it: a process of its own, same environment."""
    return subprocess.run(
        [sys.executable, "-m", "workers.liveness", "--max-age", str(MAX_AGE_S), *options],
        env={**os.environ, **runtime.env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )


def until(condition: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    """Wait for a condition that no event announces (a file getting old or new)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.2)


def mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return None


def with_liveness(runtime: Runtime) -> Path:
    path = runtime.directory / "worker-alive"
    runtime.env["FENCE_LIVENESS_FILE"] = str(path)
    return path


def test_the_heartbeat_stops_while_the_worker_is_stopped_and_resumes_after(runtime):
    path = with_liveness(runtime)
    worker = runtime.start_worker()
    until(lambda: mtime(path) is not None, "the first heartbeat")
    first = mtime(path)
    until(lambda: mtime(path) != first, "the file is rewritten while the worker runs")
    assert path.read_text() == str(worker.process.pid)  # the main process, not a pool child
    alive = probe(runtime)
    assert alive.returncode == EXIT_ALIVE, alive.stderr
    assert f"alive: worker pid {worker.process.pid}" in alive.stdout

    os.kill(worker.process.pid, signal.SIGSTOP)  # alive, but its consumer loop is not
    try:
        stopped_at = mtime(path)
        until(lambda: probe(runtime).returncode == EXIT_STALE, "the probe fails")
        assert mtime(path) == stopped_at
        assert "sent no heartbeat for" in probe(runtime).stderr
    finally:
        os.kill(worker.process.pid, signal.SIGCONT)
    until(lambda: probe(runtime).returncode == EXIT_ALIVE, "the probe passes again")

    key = "after-sigcont"
    run = runtime.producer.submit("liveness", f"key={key}")
    assert run.result(timeout=30) == f"answer to: key={key}"


def test_a_worker_cut_off_from_redis_sends_no_heartbeat_until_it_reconnects(
    redis_outage_runtime, restartable_redis
):
    runtime = redis_outage_runtime
    path = with_liveness(runtime)
    runtime.start_worker()
    until(lambda: probe(runtime).returncode == EXIT_ALIVE, "the worker is alive")

    restartable_redis.kill()
    until(lambda: probe(runtime).returncode == EXIT_STALE, "the probe fails without Redis")
    restartable_redis.restart()
    until(
        lambda: probe(runtime).returncode == EXIT_ALIVE,
        "the probe passes once the worker reconnected",
        timeout=60,  # Celery retries the broker every 2, 4, 6 ... s
    )
    assert path.exists()

    run = runtime.producer.submit("liveness", "after the restart")
    assert run.result(timeout=30) == "answer to: after the restart"


def test_kill_ends_a_stale_worker_so_its_container_exits(runtime):
    """Compose restarts a container only when it exits: ``--kill`` makes a stale one exit."""
    path = with_liveness(runtime)
    worker = runtime.start_worker()
    until(lambda: mtime(path) is not None, "the first heartbeat")
    fresh = probe(runtime, "--kill")
    assert fresh.returncode == EXIT_ALIVE and worker.process.poll() is None

    os.kill(worker.process.pid, signal.SIGSTOP)
    until(lambda: probe(runtime, "--kill").returncode == EXIT_STALE, "the probe fails")
    assert worker.process.wait(timeout=10) == -signal.SIGKILL


def test_a_starting_worker_removes_the_file_a_previous_run_left(runtime, tmp_path):
    """A restarted container keeps /tmp: the old file, and its pid, must not count.
    Against a Redis that is not there, the worker starts but never connects."""
    path = with_liveness(runtime)
    path.write_text("1")  # what a previous run left, fresh enough to pass
    env = {**runtime.env, "FENCE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    worker = launch_worker("cut-off", env, cwd=REPO, log_path=tmp_path / "cut-off.log")
    try:
        worker.wait_for(r"Cannot connect to redis://")  # past worker_init
        assert not path.exists()
        assert probe(runtime).returncode == EXIT_STALE
    finally:
        worker.stop()


def test_the_probe_without_a_file_or_a_setting(tmp_path, monkeypatch, capsys):
    assert main(["--max-age", "5", "--file", str(tmp_path / "none")]) == EXIT_STALE
    assert "stale: no heartbeat in" in capsys.readouterr().err

    monkeypatch.delenv("FENCE_LIVENESS_FILE", raising=False)
    from fence.settings import get_settings

    get_settings.cache_clear()
    try:
        assert main(["--max-age", "5"]) == EXIT_UNSET
    finally:
        get_settings.cache_clear()
    assert "FENCE_LIVENESS_FILE: not set" in capsys.readouterr().err


def test_the_probe_reports_a_bad_setting_in_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "workers.liveness", "--max-age", "5"],
        env={**os.environ, "FENCE_LEASE_MS": "soon"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("stale: FENCE_LEASE_MS: ") and done.stderr.count("\n") == 1
