"""``fence stack``, the README's run command, as a subprocess: it brings up
redis-server, workers, beat, Flower and the gateway, runs the demo, and on
Ctrl-C (or after the demo) takes everything down, leaving no process behind."""

from __future__ import annotations

import base64
import fcntl
import os
import re
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from fence.memory.sqlite import SQLiteMemory
from fence.runs import RunState, RunStore
from fence.settings import Settings
from producer import Producer
from producer.stack.launch import gateway_missing, start_redis
from producer.stack.processes import ManagedProcess
from tests.support import REPO, new_key

from .conftest import Proc, descendants, fence_script, kill_groups, still_running

UP = r"fence stack is up"
STOPPED = r"\[stack\] stopped in [\d.]+ s; no process left behind"


@pytest.fixture
def launched() -> Iterator[list[tuple[ManagedProcess, list[Proc]]]]:
    """Stacks a test started; on teardown anything left is killed (and the test has
    already failed if that was needed)."""
    stacks: list[tuple[ManagedProcess, list[Proc]]] = []
    yield stacks
    for stack, tree in stacks:
        kill_groups(tree + descendants(stack.process.pid))
        stack.stop(timeout=5)


def start_stack(
    launched: list, tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[ManagedProcess, list[Proc], Path]:
    directory = tmp_path / "stack"
    argv = [
        *fence_script(),
        "stack",
        "--dir",
        str(directory),
        "--flower-port",
        "0",
        "--gateway-port",
        "0",
        *args,
    ]
    stack = ManagedProcess("stack", argv, env=env, cwd=tmp_path, log_path=tmp_path / "stack.out")
    entry: tuple[ManagedProcess, list[Proc]] = (stack, [])
    launched.append(entry)
    stack.wait_for(UP, timeout=120)
    entry[1].extend(descendants(stack.process.pid))
    return stack, entry[1], directory


def programs(tree: list[Proc]) -> str:
    return "\n".join(proc.cmdline for proc in tree)


def env_file(directory: Path) -> dict[str, str]:
    pairs = re.findall(r"^export (\w+)=(\S+)$", (directory / "env").read_text(), re.MULTILINE)
    return {name: value.strip("'") for name, value in pairs}


def http_status(url: str, auth: str | None = None) -> int:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_stack_runs_the_demo_and_exits_leaving_no_process(launched, tmp_path):
    stack, tree, _ = start_stack(
        launched,
        tmp_path,
        "--workers",
        "1",
        "--exit-after-demo",
        "--demo-sessions",
        "4",
        "--demo-turns",
        "3",
    )
    running = programs(tree)
    assert "redis-server" in running
    assert "celery -A workers worker --hostname worker-1@%h" in running
    assert "celery -A workers beat" in running
    assert "celery -A workers flower" in running
    if gateway_missing() is None:
        assert "-m producer.gateway --host 127.0.0.1" in running

    assert stack.process.wait(timeout=120) == 0, stack.output[-3000:]

    output = stack.output
    assert re.search(r"Redis\s+redis://127\.0\.0\.1:\d+/0\s+\(AOF on", output)
    assert re.search(r"Flower\s+http://127\.0\.0\.1:\d+\s+user fence\s+password \S{8,}", output)
    assert re.search(r"Memory\s+sqlite:///.*/memory\.db", output)
    assert "history check: OK - 4/4 sessions hold every turn exactly once" in output
    assert re.search(STOPPED, output)
    assert still_running(tree) == []


def test_ctrl_c_lets_the_running_turn_finish_then_stops_everything(launched, tmp_path):
    """``fence stack --demo`` as the README runs it: demo, then Ctrl-C mid-turn."""
    env = {
        "FENCE_AGENTS": "tests.runtime.agents:registry",
        "FENCE_DEFAULT_AGENT": "controlled",
        "PYTHONPATH": str(REPO),
    }
    stack, tree, directory = start_stack(
        launched,
        tmp_path,
        *("--workers", "1", "--shutdown-timeout", "60"),
        *("--demo", "--demo-sessions", "2", "--demo-turns", "2"),  # the README's command
        env=env,
    )
    stack.wait_for(r"\[stack\] press Ctrl-C to stop everything", timeout=60)
    assert "history check: OK - 2/2 sessions" in stack.output
    urls = env_file(directory)
    control = redis.Redis.from_url(urls["FENCE_REDIS_URL"], decode_responses=True)

    # Flower's auth is on: refused without credentials, served with the printed ones.
    flower, user, password = re.search(
        r"Flower\s+(http://\S+)\s+user (\S+)\s+password (\S+)", stack.output
    ).groups()
    assert http_status(flower + "/") == 401
    assert http_status(flower + "/", f"{user}:{password}") == 200
    assert http_status(flower + "/healthcheck") == 200

    settings = Settings(redis_url=urls["FENCE_REDIS_URL"], memory=urls["FENCE_MEMORY"])
    producer = Producer(settings=settings, agents=["controlled"])
    key = new_key()
    run = producer.submit("warm", f"key={key} block", agent="controlled")
    assert control.blpop([f"test:entered:{key}"], timeout=30)  # the turn is running

    mark = stack.line_count()
    os.kill(stack.process.pid, signal.SIGINT)
    stack.wait_for(r"\[stack\] shutting down: SIGINT received", start=mark, timeout=30)
    stack.wait_for(r"\[worker-1\] worker: Warm shutdown", start=mark, timeout=30)
    control.rpush(f"test:release:{key}", "go")  # only now may the turn finish

    assert stack.process.wait(timeout=60) == 0, stack.output[-3000:]
    assert re.search(STOPPED, stack.output)
    assert still_running(tree) == []

    # Redis kept everything (AOF): the turn finished during the warm shutdown.
    redis_process, url = start_redis(directory / "redis", append_only=True)
    try:
        record = RunStore.from_url(url, settings).get(run.id)
    finally:
        redis_process.stop()
    assert record.state is RunState.SUCCEEDED
    assert record.result == f"answer to: key={key} block"
    assert SQLiteMemory(directory / "memory.db", "warm").has_turn(run.id)


def test_stack_with_local_dynamodb_memory(launched, tmp_path):
    stack, tree, _ = start_stack(
        launched,
        tmp_path,
        "--memory",
        "dynamodb",
        "--workers",
        "1",
        "--no-flower",
        "--no-gateway",
        "--exit-after-demo",
        "--demo-sessions",
        "3",
        "--demo-turns",
        "2",
    )

    assert stack.process.wait(timeout=120) == 0, stack.output[-3000:]
    output = stack.output
    assert re.search(r"Memory\s+dynamodb://agent-memory\?region=us-east-1&endpoint_url=", output)
    assert "history check: OK - 3/3 sessions hold every turn exactly once" in output
    assert still_running(tree) == []


def test_a_second_stack_on_the_same_directory_is_refused(tmp_path):
    """Two stacks on one --dir would share Redis's AOF files; the second one refuses."""
    directory = tmp_path / "stack"
    directory.mkdir()
    with open(directory / "stack.lock", "a+") as lock:  # what a running stack holds
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        second = subprocess.run(
            [*fence_script(), "stack", "--dir", str(directory), "--quiet"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert second.returncode == 1
    assert "fence: error: --dir: another fence stack is running with" in second.stderr
    assert not (directory / "redis").exists()  # nothing was started


def test_a_stack_killed_outright_is_cleaned_up_by_the_next_one(launched, tmp_path):
    """SIGKILL gives a stack no chance to stop its children; the next stack on the same
    directory stops them before starting its own Redis on the same AOF files."""
    quiet = ("--workers", "1", "--no-flower", "--no-gateway", "--quiet")
    first, orphans, _ = start_stack(launched, tmp_path, *quiet)
    first.kill()  # SIGKILL the stack's own process group: its children live on
    assert {p.pid for p in still_running(orphans)} == {p.pid for p in orphans}

    second, tree, _ = start_stack(
        launched, tmp_path, *quiet, "--exit-after-demo", "--demo-sessions", "1", "--demo-turns", "1"
    )

    assert still_running(orphans) == []
    assert "note: stopped processes a previous stack on this directory left running: redis" in (
        second.output
    )
    assert second.process.wait(timeout=120) == 0, second.output[-3000:]
    assert still_running(tree) == []


def test_a_worker_or_beat_that_dies_is_restarted_and_turns_go_on(launched, tmp_path):
    """A worker can exit on its own (kombu's reconnect bugs): the stack starts it again,
    after a backoff, and Ctrl-C still stops everything, the restarted ones included."""
    quiet = ("--workers", "1", "--no-flower", "--no-gateway", "--quiet")
    stack, tree, directory = start_stack(launched, tmp_path, *quiet)
    worker = next(p for p in tree if "worker --hostname worker-1@" in p.cmdline)
    beat = next(p for p in tree if "celery -A workers beat" in p.cmdline)
    pool = [p for p in tree if p.ppid == worker.pid]
    assert pool  # the worker's prefork children, orphaned when it dies

    mark = stack.line_count()
    os.kill(worker.pid, signal.SIGKILL)  # the main process only, as a crash would
    os.kill(beat.pid, signal.SIGKILL)
    stack.wait_for(
        r"\[stack\] worker-1 exited unexpectedly \(code -9\); restarting it in 1 s", start=mark
    )
    stack.wait_for(r"\[stack\] beat exited unexpectedly \(code -9\)", start=mark)
    stack.wait_for(r"\[stack\] worker-1 restarted \(pid \d+\)", start=mark, timeout=90)
    stack.wait_for(r"\[stack\] beat restarted \(pid \d+\)", start=mark, timeout=90)
    assert still_running([worker, beat, *pool]) == []  # nothing of the dead ones is left

    settings = Settings(redis_url=env_file(directory)["FENCE_REDIS_URL"])
    run = Producer(settings=settings).submit("after-restart", "hello", agent="demo")
    assert "hello" in run.result(timeout=60)

    restarted = descendants(stack.process.pid)
    assert "worker --hostname worker-1@" in programs(restarted)
    os.kill(stack.process.pid, signal.SIGINT)
    assert stack.process.wait(timeout=60) == 0, stack.output[-3000:]
    assert re.search(STOPPED, stack.output)
    assert still_running(tree + restarted) == []


def test_the_env_file_makes_a_bare_shell_use_the_stack_and_its_secrets_survive_restarts(
    launched, tmp_path
):
    env = {
        "FENCE_AGENTS": "tests.runtime.agents:registry",
        "FENCE_DEFAULT_AGENT": "controlled",
        "PYTHONPATH": str(REPO),
    }
    stack, tree, directory = start_stack(launched, tmp_path, "--workers", "1", env=env)
    first = env_file(directory)
    for name in ("env", "secrets.json"):
        assert (directory / name).stat().st_mode & 0o777 == 0o600  # they hold secrets

    # A shell with nothing set: no venv on PATH, no FENCE_* variables.
    shell = subprocess.run(
        ["env", "-i", f"HOME={tmp_path}", "PATH=/usr/bin:/bin", "bash", "-c",
         f"source {directory / 'env'} && fence submit bare 'from a bare shell' --wait 30"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert shell.returncode == 0, shell.stderr
    assert "answer to: from a bare shell" in shell.stdout  # the controlled agent answered
    assert first["FENCE_DEFAULT_AGENT"] == "controlled"
    if first.get("FENCE_GATEWAY_URL"):
        request = urllib.request.Request(
            first["FENCE_GATEWAY_URL"] + "/v1/sessions/bare",
            headers={"Authorization": f"Bearer {first['FENCE_API_TOKENS']}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
    assert http_status(first["FENCE_FLOWER_URL"], first["FENCE_FLOWER_BASIC_AUTH"]) == 200

    os.kill(stack.process.pid, signal.SIGINT)
    assert stack.process.wait(timeout=60) == 0
    printed = subprocess.run(
        [*fence_script(), "stack", "--dir", str(directory), "--print-env"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert f"FENCE_FLOWER_BASIC_AUTH={first['FENCE_FLOWER_BASIC_AUTH']}" in printed.stdout

    again, _, _ = start_stack(launched, tmp_path, "--workers", "1", env=env)
    kept = env_file(directory)
    assert kept["FENCE_FLOWER_BASIC_AUTH"] == first["FENCE_FLOWER_BASIC_AUTH"]
    assert kept.get("FENCE_API_TOKENS") == first.get("FENCE_API_TOKENS")
    os.kill(again.process.pid, signal.SIGINT)
    assert again.process.wait(timeout=60) == 0

    rotated, _, _ = start_stack(launched, tmp_path, "--workers", "1", "--rotate-secrets", env=env)
    assert env_file(directory)["FENCE_FLOWER_BASIC_AUTH"] != first["FENCE_FLOWER_BASIC_AUTH"]
    os.kill(rotated.process.pid, signal.SIGINT)
    assert rotated.process.wait(timeout=60) == 0
