"""The ``fence`` CLI against a real runtime: redis-server on a free port and a real
``celery worker`` (the shared ``tests.support.Runtime``), SQLite memory in a temp dir."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from fence.settings import get_settings
from producer.cli.main import main
from producer.stack.launch import start_redis
from tests.support import Runtime, fence_script  # noqa: F401 - the tests import it from here


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


@pytest.fixture(scope="module")
def runtime(tmp_path_factory) -> Iterator[Runtime]:
    """One runtime for the module: the CLI tests use their own session ids."""
    directory = tmp_path_factory.mktemp("cli")
    redis_process, url = start_redis(directory / "redis")
    runtime = Runtime(url, directory)
    try:
        runtime.start_worker(concurrency=2)
        yield runtime
    finally:
        runtime.stop()
        redis_process.stop()


@pytest.fixture
def fence(runtime, monkeypatch, capsys) -> Iterator[Callable[..., Result]]:
    """Run ``fence ARGS`` in this process, with the runtime's FENCE_* environment."""
    for name, value in runtime.env.items():
        if name.startswith("FENCE_"):
            monkeypatch.setenv(name, value)
    get_settings.cache_clear()

    def run(*argv: str) -> Result:
        try:
            code = main(list(argv))
        except SystemExit as exit_:  # argparse usage errors
            code = int(exit_.code or 0)
        out, err = capsys.readouterr()
        return Result(code, out, err)

    yield run
    get_settings.cache_clear()


# -- process trees: prove a stack leaves nothing behind --------------------------------


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    pgid: int
    start: int
    state: str
    cmdline: str


def read_proc(pid: int) -> Proc | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as file:
            stat = file.read()
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            cmdline = file.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return Proc(pid, int(fields[1]), int(fields[2]), int(fields[19]), fields[0], cmdline)


def all_processes() -> list[Proc]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (proc := read_proc(int(entry))) is not None:
            found.append(proc)
    return found


def descendants(root: int) -> list[Proc]:
    """Every live process below ``root`` (children, grandchildren, ...)."""
    procs = all_processes()
    children: dict[int, list[Proc]] = {}
    for proc in procs:
        children.setdefault(proc.ppid, []).append(proc)
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child.pid)
    return found


def still_running(procs: list[Proc]) -> list[Proc]:
    """Those of ``procs`` that still run (same pid and start time, not a zombie)."""
    left = []
    for proc in procs:
        now = read_proc(proc.pid)
        if now is not None and now.start == proc.start and now.state != "Z":
            left.append(now)
    return left


def kill_groups(procs: list[Proc]) -> None:
    """Teardown safety net if a test failed half-way: kill what it started."""
    for pgid in {p.pgid for p in still_running(procs)}:
        if pgid > 1 and pgid != os.getpgid(0):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
