"""Shared harness of the runtime benchmarks (overhead, scaling, fairness, chaos, gateway).

Each benchmark runs the real programs a user runs: a private ``redis-server``
on a free loopback port, ``celery worker`` / ``celery beat`` processes and
SQLite memory in a temporary directory. ``BenchRuntime`` owns every one of
them and stops them all on exit, on exceptions and on Ctrl-C / SIGTERM, so a
benchmark never leaves processes behind. The table helpers print Markdown,
so the output pastes straight into an issue.

The programs insert the repository root into ``sys.path`` themselves (they
are run as ``python bench/<name>.py``) before importing this module.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import math
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

import redis
from celery import Celery
from kombu.exceptions import OperationalError

from bench.agents import LATENCY_ENV
from fence.memory.url import memory_factory
from fence.messages import Role
from fence.runs import RunRecord, RunState, RunStore, RunTimeout, keys
from fence.settings import Settings
from producer import Producer, Run
from producer.stack.launch import launch_worker, start_beat, start_redis
from producer.stack.processes import ManagedProcess
from workers.app import create_app

REPO = Path(__file__).resolve().parent.parent
AGENT = "bench"
HOST = "bench"
"""Worker hostnames are ``<name>@bench``: unique per runtime, easy to ping."""

BROKER_DOWN = (redis.ConnectionError, redis.TimeoutError, OperationalError)
"""What remote control raises while Redis is down or just after it restarted."""

BATCH = 500
"""Records read per Redis pipeline round trip."""


# -- workers ----------------------------------------------------------------


@dataclass(frozen=True)
class WorkerLayout:
    """How worker slots are made: ``processes`` x ``celery worker --pool P --concurrency C``."""

    processes: int
    concurrency: int
    pool: str = "prefork"

    @property
    def slots(self) -> int:
        return self.processes * self.concurrency

    def describe(self) -> str:
        return (
            f"{self.processes} x `celery worker --pool {self.pool} "
            f"--concurrency {self.concurrency}` = {self.slots} slots"
        )


# -- the runtime --------------------------------------------------------------


class BenchRuntime:
    """A private Fence runtime for one benchmark run; a context manager.

    ``latency`` is the simulated model latency of the ``bench`` agent
    (``bench/agents.py``); ``env`` adds or overrides ``FENCE_*`` settings for
    every process started (workers, beat) and for the producer here.
    ``append_only`` runs Redis with AOF, fsynced before each reply
    (``appendfsync always``), so ``kill_redis`` + ``restart_redis`` loses nothing.
    """

    def __init__(
        self,
        *,
        latency: float = 0.0,
        env: Mapping[str, str] | None = None,
        keep: bool = False,
        loglevel: str = "WARNING",
        append_only: bool = False,
    ) -> None:
        self.latency = latency
        self.append_only = append_only
        self.keep = keep
        self.loglevel = loglevel
        self._extra_env = dict(env or {})
        self._names = itertools.count(1)
        self._stack = contextlib.ExitStack()
        self.processes: list[ManagedProcess] = []
        self.stopping = threading.Event()
        """Set when the benchmark is being torn down: helper threads should end."""
        self.directory = Path()
        self.env: dict[str, str] = {}

    # lifecycle

    def __enter__(self) -> BenchRuntime:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="fence-bench-"))
        self.redis_process, self.redis_url = start_redis(
            self.directory / "redis", append_only=self.append_only
        )
        self._stack.callback(lambda: self.redis_process.stop())
        self.db_path = self.directory / "memory.db"
        self.env = {
            "FENCE_REDIS_URL": self.redis_url,
            "FENCE_MEMORY": f"sqlite:///{self.db_path}",
            "FENCE_AGENTS": "bench.agents:registry",
            "FENCE_DEFAULT_AGENT": AGENT,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            LATENCY_ENV: repr(self.latency),
            **self._extra_env,
        }
        self.settings = settings_for(self.env)
        self.redis = redis.Redis.from_url(self.redis_url, decode_responses=True)
        self._stack.callback(self.redis.close)
        self.app: Celery = create_app(self.settings)
        """Used here only for remote control (ping) and by the producer to publish."""
        self.producer = Producer(settings=self.settings, agents=[AGENT])
        self.store = RunStore(self.redis, self.settings)
        self.memory = memory_factory(self.settings.memory)
        """``session_id -> memory``, the backend the workers write to."""

    def close(self) -> None:
        """Stop every process this runtime started (newest first), then its Redis."""
        self.stopping.set()
        with _signals_deferred():
            for process in reversed(self.processes):
                with contextlib.suppress(Exception):
                    process.stop(timeout=15)
            self.processes.clear()
            with contextlib.suppress(Exception):
                self.app.close()
            self._stack.close()
            if self.directory == Path():  # never started
                return
            if self.keep:
                print(f"(kept logs and database in {self.directory})", file=sys.stderr)
            else:
                shutil.rmtree(self.directory, ignore_errors=True)

    # processes

    def start_workers(
        self, layout: WorkerLayout, *, app: str = "workers", prefix: str = "w"
    ) -> list[ManagedProcess]:
        """Launch ``layout.processes`` workers at once; return when all answer a ping."""
        workers = [
            self.launch_worker(layout, app=app, prefix=prefix) for _ in range(layout.processes)
        ]
        self.wait_ready(workers)
        return workers

    def launch_worker(
        self, layout: WorkerLayout, *, app: str = "workers", prefix: str = "w"
    ) -> ManagedProcess:
        """Start one ``celery -A <app> worker`` with ``layout``'s pool and concurrency
        (one process: ``layout.processes`` is for ``start_workers``) without waiting for it."""
        name = f"{prefix}{next(self._names)}"
        worker = launch_worker(
            name,
            self.env,
            concurrency=layout.concurrency,
            loglevel=self.loglevel,
            pool=layout.pool,
            host=HOST,
            app=app,
            cwd=REPO,
            log_path=self.directory / f"{name}.log",
        )
        self.processes.append(worker)
        return worker

    def wait_ready(self, workers: Sequence[ManagedProcess], timeout: float = 120) -> None:
        """Block until each worker answers a remote-control ping.

        A ping, not a log line: workers run at Celery's default log level
        (WARNING), as ``celery -A workers worker`` does, and print no "ready".
        """
        pending = {f"{w.name}@{HOST}": w for w in workers}
        deadline = time.monotonic() + timeout
        while pending:
            for worker in pending.values():
                if worker.process.poll() is not None:
                    raise RuntimeError(
                        f"worker {worker.name} exited ({worker.process.returncode}) while "
                        f"starting; output:\n{worker.output[-3000:]}"
                    )
            if time.monotonic() > deadline:
                raise TimeoutError(f"workers not ready after {timeout}s: {sorted(pending)}")
            if self.stopping.is_set():
                raise RuntimeError("the benchmark is stopping")
            for reply in self.app.control.ping(destination=list(pending), timeout=0.5) or []:
                for hostname in reply:
                    pending.pop(hostname, None)

    def pause(self, workers: Sequence[ManagedProcess], queue: str = "celery") -> None:
        """Stop ``workers`` taking tasks from ``queue`` (Celery remote control), so a
        benchmark can queue a whole workload first and time only its execution."""
        self._control("cancel_consumer", workers, queue)

    def resume(self, workers: Sequence[ManagedProcess], queue: str = "celery") -> None:
        self._control("add_consumer", workers, queue)

    def _control(self, command: str, workers: Sequence[ManagedProcess], queue: str) -> None:
        hosts = [f"{w.name}@{HOST}" for w in workers]
        replies = getattr(self.app.control, command)(
            queue, destination=hosts, reply=True, timeout=10
        )
        answered = {host for reply in replies or [] for host in reply}
        if answered != set(hosts):
            raise RuntimeError(f"{command} {queue!r}: no reply from {set(hosts) - answered}")

    def stop(self, process: ManagedProcess) -> None:
        """Warm shutdown (SIGTERM), as an operator scaling down would."""
        process.stop(timeout=30)
        self.processes.remove(process)

    def kill(self, process: ManagedProcess) -> None:
        """SIGKILL the worker's whole process group, as a crashed machine would."""
        process.kill()
        process.stop(timeout=5)  # reaps leftovers, closes its log
        self.processes.remove(process)

    def adopt(self, process: ManagedProcess) -> ManagedProcess:
        """Stop ``process`` (started elsewhere, e.g. the HTTP gateway) with the runtime."""
        self.processes.append(process)
        return process

    def kill_redis(self) -> None:
        """SIGKILL redis-server, as a crash would: it writes nothing more."""
        self.redis_process.kill()
        self.redis_process.stop(timeout=5)

    def restart_redis(self) -> None:
        """Start redis-server again on the same port and data directory (its AOF)."""
        port = urlsplit(self.redis_url).port
        self.redis_process, _ = start_redis(
            self.directory / "redis", port, append_only=self.append_only
        )

    def start_beat(self) -> ManagedProcess:
        beat = start_beat(
            self.env,
            self.directory / "beat-schedule",
            cwd=REPO,
            log_path=self.directory / "beat.log",
        )
        self.processes.append(beat)
        return beat

    def worker_cpu_s(self, workers: Iterable[ManagedProcess]) -> float | None:
        """CPU seconds used so far by the workers' process groups (Linux /proc)."""
        total = 0.0
        for worker in workers:
            used = group_cpu_s(worker.process.pid)
            if used is None:
                return None
            total += used
        return total

    def usage(self, workers: Iterable[ManagedProcess]) -> Usage:
        """Redis and worker CPU counters now; subtract two to get a phase's cost."""
        return Usage(self.redis_stats(), self.worker_cpu_s(workers))

    def run_workload(
        self,
        layout: WorkerLayout,
        workload: Iterable[tuple[str, str]],
        *,
        timeout: float,
        app: str = "workers",
        prefix: str = "w",
    ) -> tuple[list[RunRecord], Usage]:
        """Time ``workload`` (session_id, message pairs) on fresh workers of ``layout``.

        Starts and warms up the workers, submits the whole workload while they are
        paused, releases them and waits for every turn; the workers are stopped
        afterwards. Returns the run records (every turn succeeded, or this raises)
        and what the execution cost.
        """
        workers = self.start_workers(layout, app=app, prefix=prefix)
        try:
            self.warm_up(layout.slots)
            self.pause(workers)
            runs = self.submit_all(workload)
            before = self.usage(workers)
            self.resume(workers)
            if not self.wait_drained(runs, timeout):
                raise TimeoutError(f"{len(runs)} turns did not finish in {timeout:g} s")
            used = self.usage(workers) - before
        finally:
            for worker in workers:
                self.stop(worker)
        records = [r for r in self.records(runs) if r is not None]
        failed = [r for r in records if r.state is not RunState.SUCCEEDED]
        if failed or len(records) != len(runs):
            raise RuntimeError(
                f"{len(runs) - len(records) + len(failed)} of {len(runs)} turns did not "
                f"succeed, e.g. {failed[:1]}"
            )
        return records, used

    def time_celery_tasks(
        self, layout: WorkerLayout, count: int, *, chains: int = 0, sleep_s: float = 0.0
    ) -> Phase:
        """The Celery-only baseline: ``count`` tasks of ``bench/noop_tasks.py`` (or
        ``chains`` chains of them, each task publishing the next) on a worker with the
        runtime's Celery settings. Queued while the worker is paused; timed by the
        finish times the tasks record."""
        from bench import noop_tasks  # builds a Celery app: only when a benchmark needs it

        workers = self.start_workers(layout, app="bench.noop_tasks", prefix="noop")
        try:
            self.pause(workers, noop_tasks.QUEUE)
            self.redis.delete(noop_tasks.DONE_KEY)
            if chains:
                count = count // chains * chains
                for _ in range(chains):
                    self.app.send_task(
                        noop_tasks.CHAIN_TASK, args=[count // chains - 1], queue=noop_tasks.QUEUE
                    )
            else:
                for index in range(count):
                    self.app.send_task(
                        noop_tasks.TASK, args=[index, sleep_s], queue=noop_tasks.QUEUE
                    )
            before = self.usage(workers)
            self.resume(workers, noop_tasks.QUEUE)
            deadline = time.monotonic() + 60 + 2 * count * (sleep_s + 0.01) / layout.slots
            while self.redis.llen(noop_tasks.DONE_KEY) < count:
                if time.monotonic() > deadline:
                    raise TimeoutError("the Celery baseline tasks did not finish")
                time.sleep(0.1)
            used = self.usage(workers) - before
        finally:
            for worker in workers:
                self.stop(worker)
        finished = [float(t) for t in self.redis.lrange(noop_tasks.DONE_KEY, 0, -1)]
        name = "chained no-op task" if chains else "no-op Celery task"
        if sleep_s:
            name = f"Celery task sleeping {sleep_s:g} s"
        return Phase(
            name,
            count,
            throughput(finished),
            used.worker_cpu_s,
            used.redis,
            first_finish=min(finished),
            last_finish=max(finished),
        )

    # runs

    def submit(self, session_id: str, message: str) -> Run:
        return self.producer.submit(session_id, message, agent=AGENT)

    def submit_all(self, turns: Iterable[tuple[str, str]]) -> list[Run]:
        """Submit (session_id, message) pairs in order through the real producer."""
        return [self.submit(session_id, message) for session_id, message in turns]

    def warm_up(self, slots: int, timeout: float = 120) -> None:
        """Run a few turns per slot so every pool process has done its first-turn set-up
        (imports, connections, token encoder) before anything is timed."""
        runs = self.submit_all((f"warm-up-{i}", "hello") for i in range(4 * slots))
        if not self.wait_terminal(runs, timeout, interval=0.05):
            raise TimeoutError(f"warm-up turns did not finish in {timeout}s")

    def records(self, runs: Sequence[Run]) -> list[RunRecord | None]:
        """The run records of ``runs`` (None: record missing), pipelined."""
        hashes = self._read_runs(runs, lambda pipe, key: pipe.hgetall(key))
        return [RunRecord.from_hash(h) if h else None for h in hashes]

    def states(self, runs: Sequence[Run]) -> list[str | None]:
        """Just the states, with ``HMGET`` so benchmarks can tell these reads from
        the workers' ``HGET``s in Redis command statistics."""
        return [values[0] for values in self._read_runs(runs, lambda p, k: p.hmget(k, "state"))]

    def _read_runs(self, runs: Sequence[Run], read: Callable[[Any, str], object]) -> list[Any]:
        """``read(pipeline, run key)`` for each run, ``BATCH`` runs per round trip."""
        replies: list[Any] = []
        for start in range(0, len(runs), BATCH):
            pipe = self.redis.pipeline(transaction=False)
            for run in runs[start : start + BATCH]:
                read(pipe, keys.run(run.session_id, run.id))
            replies.extend(pipe.execute())
        return replies

    def wait_drained(self, runs: Sequence[Run], timeout: float) -> bool:
        """Wait until every run is terminal, without polling: a session runs its turns
        in order, so waiting (pub/sub) for each session's last run waits for them all.

        While a workload is timed, this costs the machine next to nothing, as the
        Celery baseline's wait does; ``wait_terminal`` confirms, and covers any run
        that ended out of order."""
        last: dict[str, Run] = {run.session_id: run for run in runs}
        deadline = time.monotonic() + timeout
        for run in last.values():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                self.store.wait(run.id, remaining, run.session_id)
            except RunTimeout:
                return False
        return self.wait_terminal(runs, max(0.0, deadline - time.monotonic()))

    def wait_terminal(
        self,
        runs: Sequence[Run],
        timeout: float,
        *,
        interval: float = 0.25,
        stop_if: Callable[[], bool] | None = None,
    ) -> bool:
        """Wait until every run is terminal; False on timeout (or when ``stop_if``).

        The harness samples states every ``interval`` (a few pipelined reads);
        the benchmarks time runs by the timestamps in their records, never by
        when this loop noticed.
        """
        pending = list(runs)
        deadline = time.monotonic() + timeout
        while True:
            states = self.states(pending)
            pending = [
                run
                for run, state in zip(pending, states, strict=True)
                if state is None or not RunState(state).terminal
            ]
            if not pending:
                return True
            if time.monotonic() > deadline or (stop_if is not None and stop_if()):
                return False
            time.sleep(interval)

    def user_messages(self, session_id: str) -> list[tuple[str, str | None]]:
        """(content, turn id) of the session's user messages, in memory order."""
        messages = self.memory(session_id).get_messages()
        return [(m.content, m.turn_id) for m in messages if m.role is Role.USER]

    def wait_idle(self, workers: Sequence[ManagedProcess], timeout: float) -> bool:
        """Wait until no worker of ``workers`` runs a task (Celery remote control);
        False on timeout. After a fault, a worker that was stopped mid-turn may
        still be finishing it: memory is checked once all are idle."""
        hosts = {f"{w.name}@{HOST}" for w in workers}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                active = self.app.control.inspect(destination=list(hosts), timeout=1).active()
            except BROKER_DOWN:  # a connection from before a Redis restart: the next is new
                continue
            if active is not None and set(active) == hosts and not any(active.values()):
                return True
        return False

    # Redis statistics

    def redis_stats(self) -> RedisStats:
        info = self.redis.info("commandstats")
        calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in info.items()}
        cpu = self.redis.info("cpu")
        return RedisStats(calls, float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]))


@dataclass(frozen=True)
class RedisStats:
    """Cumulative Redis command counts and CPU seconds; subtract two to get a phase."""

    calls: dict[str, int]
    cpu_s: float

    def __sub__(self, earlier: RedisStats) -> RedisStats:
        names = self.calls.keys() | earlier.calls.keys()
        calls = {n: self.calls.get(n, 0) - earlier.calls.get(n, 0) for n in names}
        return RedisStats({n: c for n, c in calls.items() if c}, self.cpu_s - earlier.cpu_s)

    def total(self, exclude: Iterable[str] = ()) -> int:
        skip = set(exclude)
        return sum(count for name, count in self.calls.items() if name not in skip)

    def top(self, n: int, exclude: Iterable[str] = ()) -> list[tuple[str, int]]:
        skip = set(exclude)
        ranked = sorted(
            ((name, c) for name, c in self.calls.items() if name not in skip),
            key=lambda item: -item[1],
        )
        return ranked[:n]


@dataclass(frozen=True)
class Usage:
    """Redis statistics and worker CPU seconds (None off Linux) at one moment, or
    between two (``later - earlier``)."""

    redis: RedisStats
    worker_cpu_s: float | None

    def __sub__(self, earlier: Usage) -> Usage:
        cpu = None
        if self.worker_cpu_s is not None and earlier.worker_cpu_s is not None:
            cpu = self.worker_cpu_s - earlier.worker_cpu_s
        return Usage(self.redis - earlier.redis, cpu)


@dataclass(frozen=True)
class Phase:
    """One timed workload: what ran, how many, how fast, at what cost."""

    system: str
    items: int
    per_s: float
    worker_cpu_s: float | None
    redis: RedisStats
    turn_ms_p50: float = math.nan
    first_finish: float = math.nan
    last_finish: float = math.nan

    def per_item(self, value: float) -> float:
        return value / self.items


HARNESS_COMMANDS = ("hmget", "llen", "info", "ping", "client|setinfo", "client|setname", "select")
"""Commands the harness itself sends while it waits; left out of per-turn counts."""


def group_cpu_s(pgid: int) -> float | None:
    """User + system CPU seconds of all live processes in process group ``pgid``."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid:  # fields[2] is pgrp
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def settings_for(env: Mapping[str, str]) -> Settings:
    """The ``Settings`` that processes started with ``env`` read from its ``FENCE_*`` entries."""
    return Settings(
        **{k.removeprefix("FENCE_").lower(): v for k, v in env.items() if k.startswith("FENCE_")}
    )


# -- statistics and output ----------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linearly interpolated; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def throughput(finish_times: Sequence[float]) -> float:
    """Completions per second between the first and the last completion."""
    if len(finish_times) < 2:
        return math.nan
    span = max(finish_times) - min(finish_times)
    return (len(finish_times) - 1) / span if span > 0 else math.inf


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table; numbers right-aligned."""
    text_rows = [[_cell(v) for v in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in text_rows)) if text_rows else len(h)
        for i, h in enumerate(headers)
    ]
    numeric = [
        bool(text_rows) and all(_is_number(r[i]) for r in text_rows) for i in range(len(headers))
    ]

    def line(cells: Sequence[str]) -> str:
        padded = [
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(cells, widths, numeric, strict=True)
        ]
        return "| " + " | ".join(padded) + " |"

    rule = [
        ("-" * (w - 1) + ":") if num else "-" * w for w, num in zip(widths, numeric, strict=True)
    ]
    return "\n".join([line(headers), line(rule), *(line(r) for r in text_rows)])


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}" if abs(value) >= 0.1 else f"{value:.3f}"
    return str(value)


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", "").rstrip("x%"))
    except ValueError:
        return text == "n/a"
    return True


@dataclass(frozen=True)
class Target:
    """One acceptance target of a benchmark and whether this run met it."""

    name: str
    measured: str
    target: str
    passed: bool


def report(title: str, setup: Sequence[str], sections: Sequence[tuple[str, str]]) -> None:
    """Print the benchmark's title, its set-up lines and titled tables."""
    print(f"\n## {title}\n")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    for line in [
        *setup,
        f"host: {os.cpu_count()} CPUs, load average {load} (1/5/15 min) at the end",
    ]:
        print(f"- {line}")
    for heading, table in sections:
        print(f"\n{heading}\n\n{table}")
    print(flush=True)


def targets_table(targets: Sequence[Target]) -> str:
    return markdown_table(
        ["target", "measured", "required", "verdict"],
        [(t.name, t.measured, t.target, "PASS" if t.passed else "FAIL") for t in targets],
    )


# -- program entry --------------------------------------------------------------


def base_parser(description: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, well under a minute")
    parser.add_argument(
        "--keep", action="store_true", help="keep the temp dir (worker logs, database)"
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when a target is missed (default: 0)"
    )
    return parser


def run_program(
    main: Callable[[argparse.Namespace], Sequence[Target]], parser: argparse.ArgumentParser
) -> int:
    """Parse arguments, run ``main``, turn SIGTERM into Ctrl-C so cleanup always runs.

    Exit status: 0 when the benchmark ran (its verdicts are in the output;
    ``--strict`` makes a missed target exit 1), 130 when interrupted.
    """
    args = parser.parse_args()
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in background
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        targets = main(args)
    except KeyboardInterrupt:
        print("\ninterrupted: every process the benchmark started was stopped", file=sys.stderr)
        return 130
    missed = [t.name for t in targets if not t.passed]
    if missed and args.strict:
        return 1
    return 0


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Let cleanup finish: a second Ctrl-C must not leave workers running."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
