"""What does the Fence runtime cost on top of Celery itself?

Through real ``celery worker`` processes on a private Redis, in the same run
and with the same worker settings, it times:

* **no-op**: N plain Celery tasks (``bench/noop_tasks.py``: the runtime's own
  Celery configuration, a task that only records its finish time);
* **chained no-op**: the same N no-ops as M chains, each task publishing the
  next, as a Fence turn publishes its session's next turn (the cost of
  chaining through Celery, with no Fence code);
* **fence**: N turns over M sessions (``EchoModel(latency=0)``, SQLite
  memory): the whole runtime: lease, run record, memory read and commit,
  hand-off to the session's next turn.

Each workload is queued while its worker is paused, then the worker is
resumed, so only execution is timed (by the finish timestamps the tasks
record). Rounds repeat the three, in alternating order. Target: fence throughput >= 0.7 x
no-op (median over rounds). To show where the time goes it also prints CPU
and Redis commands per item, and splits one turn, executed in this process
without Celery's worker, into Redis round trips (publishing the next turn is one),
SQLite and Python.

    python bench/runtime_overhead.py            # 2,000 items / 200 sessions, 7 rounds
    python bench/runtime_overhead.py --smoke
    python bench/runtime_overhead.py --profile  # + cProfile of the in-process turns
    PYTHONPATH=/path/to/patch python bench/runtime_overhead.py --worker-app mypatch
                                                # a patched runtime, same baselines
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import io
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis  # noqa: E402

from bench._runtime import (  # noqa: E402
    AGENT,
    HARNESS_COMMANDS,
    BenchRuntime,
    Phase,
    Target,
    WorkerLayout,
    base_parser,
    markdown_table,
    percentile,
    report,
    run_program,
    targets_table,
    throughput,
)
from fence.memory.sqlite import SQLiteMemory  # noqa: E402
from fence.runs import RunRequest, RunState, RunStore, load_registry  # noqa: E402
from workers.turn import TurnExecutor  # noqa: E402

TARGET_RATIO = 0.7
T = TypeVar("T")


def fence_phase(
    rt: BenchRuntime, layout: WorkerLayout, turns: int, sessions: int, tag: str, app: str
) -> Phase:
    """Submit ``turns`` round-robin over ``sessions`` through the producer, then run them."""
    workload = [(f"{tag}-s{i % sessions}", f"turn {i // sessions}") for i in range(turns)]
    records, used = rt.run_workload(layout, workload, timeout=600, app=app, prefix="fence")
    finished = [r.finished_at for r in records if r.finished_at]
    in_lease = [(r.finished_at - r.started_at) * 1e3 for r in records]  # type: ignore[operator]
    return Phase(
        "fence turn",
        turns,
        throughput(finished),
        used.worker_cpu_s,
        used.redis,
        turn_ms_p50=percentile(in_lease, 50),
    )


class Stopwatch:
    """Accumulates the time spent in wrapped calls."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.seconds = 0.0
        self.calls = 0

    def wrap(self, fn: Callable[..., T]) -> Callable[..., T]:
        def timed(*args: Any, **kwargs: Any) -> T:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started
                self.calls += 1

        return timed


def in_process_turns(rt: BenchRuntime, turns: int, sessions: int, profile: bool) -> dict:
    """Run turns with the workers' ``TurnExecutor`` in this process, without Celery's
    worker, and split a turn's time into Redis round trips (the publish of the session's
    next turn included), SQLite and Python; optionally cProfile it."""
    sends, reads, sqlite_clock = Stopwatch(), Stopwatch(), Stopwatch()

    class TimedConnection(redis.Connection):
        send_packed_command = sends.wrap(redis.Connection.send_packed_command)
        read_response = reads.wrap(redis.Connection.read_response)

    class TimedSQLiteMemory(SQLiteMemory):
        _append = sqlite_clock.wrap(SQLiteMemory._append)
        _read_window = sqlite_clock.wrap(SQLiteMemory._read_window)
        _read_all = sqlite_clock.wrap(SQLiteMemory._read_all)
        _has_turn = sqlite_clock.wrap(SQLiteMemory._has_turn)

    client = redis.Redis.from_url(
        rt.redis_url, decode_responses=True, connection_class=TimedConnection
    )
    ready: collections.deque[tuple[str, str]] = collections.deque()

    class LocalStore(RunStore):
        def publish(self, session_id: str, run_id: str) -> None:
            """Publish as the workers do (no worker is running now), and run it here next."""
            super().publish(session_id, run_id)
            ready.append((session_id, run_id))

    store = LocalStore(client, rt.settings)
    executor = TurnExecutor(
        store=store,
        agents=load_registry(rt.settings.agents),
        open_memory=lambda session_id: TimedSQLiteMemory(rt.db_path, session_id),
        settings=rt.settings,
    )
    warm_up = RunRequest(session_id="inproc-warm-up", message="hello", agent=AGENT)
    executor.execute(warm_up.session_id, store.submit(warm_up).run_id, worker="in-process")
    for i in range(turns):
        request = RunRequest(
            session_id=f"inproc-s{i % sessions}", message=f"turn {i // sessions}", agent=AGENT
        )
        submission = store.submit(request)
        if submission.dispatch:
            ready.append((request.session_id, submission.run_id))
    rtt = []
    for _ in range(200):
        started = time.perf_counter()
        rt.redis.ping()
        rtt.append((time.perf_counter() - started) * 1e6)
    profiler = cProfile.Profile() if profile else None
    for clock in (sends, reads, sqlite_clock):
        clock.reset()
    started, done = time.perf_counter(), 0
    if profiler:
        profiler.enable()
    while ready:
        session_id, run_id = ready.popleft()
        outcome = executor.execute(session_id, run_id, worker="in-process")
        if outcome is None or outcome.state is not RunState.SUCCEEDED:
            raise RuntimeError(f"in-process turn {run_id} ended {outcome!r}")
        done += 1
    if profiler:
        profiler.disable()
    elapsed = time.perf_counter() - started
    rt.redis.delete(rt.app.conf.task_default_queue)  # the tasks published above
    client.close()
    profile_text = ""
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(30)
        profile_text = out.getvalue()
    round_trips = sends.calls / done  # a pipeline or a script call is one send
    redis_ms = (sends.seconds + reads.seconds) / done * 1e3
    sqlite_ms = sqlite_clock.seconds / done * 1e3
    total_ms = elapsed / done * 1e3
    return {
        "turns": done,
        "total_ms": total_ms,
        "redis_ms": redis_ms,
        "round_trips": round_trips,
        "sqlite_ms": sqlite_ms,
        "other_ms": total_ms - redis_ms - sqlite_ms,
        "rtt_us": statistics.median(rtt),
        "profile": profile_text,
    }


def cost_row(phase: Phase, slots: int) -> tuple[object, ...]:
    return (
        phase.system,
        phase.per_s,
        1e3 * slots / phase.per_s,
        phase.per_item(phase.worker_cpu_s or float("nan")) * 1e3,
        phase.per_item(phase.redis.cpu_s) * 1e6,
        phase.per_item(phase.redis.total(HARNESS_COMMANDS)),
        ", ".join(
            f"{name} {count / phase.items:.1f}"
            for name, count in phase.redis.top(5, HARNESS_COMMANDS)
        ),
    )


def main(args: argparse.Namespace) -> list[Target]:
    turns, sessions, rounds = (
        (200, 20, 1) if args.smoke else (args.turns, args.sessions, args.rounds)
    )
    layout = WorkerLayout(1, args.concurrency, args.pool)
    rounds_done: list[tuple[Phase, Phase, Phase]] = []
    with BenchRuntime(latency=0.0, keep=args.keep) as rt:
        for round_no in range(1, rounds + 1):
            workloads: dict[str, Callable[[], Phase]] = {
                "noop": partial(rt.time_celery_tasks, layout, turns),
                "chained": partial(rt.time_celery_tasks, layout, turns, chains=sessions),
                "fence": partial(
                    fence_phase, rt, layout, turns, sessions, f"r{round_no}", args.worker_app
                ),
            }
            # Alternate the order, so that a host slowing or speeding up over a round
            # does not always favour the same workload.
            order = list(workloads) if round_no % 2 else list(reversed(workloads))
            measured = {name: workloads[name]() for name in order}
            noop, chained, fence = measured["noop"], measured["chained"], measured["fence"]
            rounds_done.append((noop, chained, fence))
            print(
                f"round {round_no}: no-op {noop.per_s:.0f}/s, chained no-op "
                f"{chained.per_s:.0f}/s, fence {fence.per_s:.0f}/s",
                flush=True,
            )
        local = in_process_turns(rt, min(turns, 1000), sessions, args.profile)

    rows = [
        (
            i,
            noop.per_s,
            chained.per_s,
            fence.per_s,
            f"{fence.per_s / noop.per_s:.2f}x",
            f"{fence.per_s / chained.per_s:.2f}x",
        )
        for i, (noop, chained, fence) in enumerate(rounds_done, 1)
    ]
    by_ratio = sorted(rounds_done, key=lambda r: r[2].per_s / r[0].per_s)
    median_round = by_ratio[len(by_ratio) // 2]
    ratio = statistics.median(f.per_s / n.per_s for n, _, f in rounds_done)
    chained_ratio = statistics.median(f.per_s / c.per_s for _, c, f in rounds_done)
    fence = median_round[2]
    targets = [
        Target(
            "fence / no-op throughput",
            f"{ratio:.2f}x",
            f">= {TARGET_RATIO}x",
            ratio >= TARGET_RATIO,
        )
    ]
    report(
        "Runtime overhead: Fence turns vs plain Celery no-op tasks",
        [
            f"per round: {turns:,} no-op tasks; {turns:,} chained no-ops ({sessions} chains, each "
            f"task publishes the next, as a turn publishes its session's next turn); {turns:,} "
            f"fence turns over {sessions:,} sessions (round-robin, through the producer); "
            f"{rounds} round(s)",
            f"worker: {layout.describe()}, Celery's default log level (WARNING); "
            "Celery settings from workers.app.create_app for all three",
            "EchoModel(latency=0), SQLite memory (WAL) in a temp dir, private redis-server",
            "each workload is queued while the worker is paused; throughput = completions / "
            "time between the first and the last completion",
            "slot-ms per item = worker slots / throughput; worker CPU = all of the worker's "
            "processes; *Redis commands include those run inside Lua scripts",
        ],
        [
            (
                "Throughput per round (items/s)",
                markdown_table(
                    ["round", "no-op", "chained no-op", "fence", "fence/no-op", "fence/chained"],
                    rows,
                ),
            ),
            (
                "Where the time goes, per item (the round with the median ratio)",
                markdown_table(
                    [
                        "system",
                        "items/s",
                        "slot-ms",
                        "worker CPU ms",
                        "Redis CPU us",
                        "Redis cmds*",
                        "top Redis commands*",
                    ],
                    [cost_row(phase, layout.slots) for phase in median_round],
                ),
            ),
            (
                "One fence turn without Celery's worker (TurnExecutor.execute in this "
                "process, publishing the next turn as workers do), ms per turn",
                markdown_table(
                    [
                        "turns",
                        "total",
                        "Redis (store)",
                        "round trips",
                        "SQLite",
                        "other Python",
                        "PING RTT us",
                        "in-lease p50 in workers",
                    ],
                    [
                        (
                            local["turns"],
                            local["total_ms"],
                            local["redis_ms"],
                            local["round_trips"],
                            local["sqlite_ms"],
                            local["other_ms"],
                            local["rtt_us"],
                            fence.turn_ms_p50,
                        )
                    ],
                ),
            ),
            (
                "Targets",
                targets_table(targets)
                + f"\n\n(for reference: fence / chained no-op = {chained_ratio:.2f}x)",
            ),
        ],
    )
    if local["profile"]:
        print("cProfile of the in-process turns (top 30 by cumulative time):\n")
        print(local["profile"])
    return targets


def parser() -> argparse.ArgumentParser:
    p = base_parser(__doc__)
    p.add_argument("--turns", type=int, default=2_000)
    p.add_argument("--sessions", type=int, default=200)
    p.add_argument(
        "--rounds", type=int, default=7, help="rounds of the three workloads; the median is taken"
    )
    p.add_argument("--concurrency", type=int, default=2, help="worker slots (default: 2 cores)")
    p.add_argument("--pool", default="prefork", choices=["prefork", "threads", "solo"])
    p.add_argument("--profile", action="store_true", help="cProfile the in-process turns")
    p.add_argument(
        "--worker-app",
        default="workers",
        help="Celery app module of the fence workers (default: workers); name another "
        "module on PYTHONPATH to measure a patched runtime against the same baseline",
    )
    return p


if __name__ == "__main__":
    sys.exit(run_program(main, parser()))
