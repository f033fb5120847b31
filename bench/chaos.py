"""Do turns survive workers being SIGKILLed over and over?

Four workers and ``celery beat`` (the recovery sweeper) run 100 sessions x 20
turns, submitted up front. Every few seconds a random worker's whole process
group is SIGKILLed (``ManagedProcess.kill``: no shutdown code runs, its
reserved and running tasks are never acked) and a replacement is started.
Afterwards it checks memory (the SQLite file the workers share) against the
run records:

* **lost**: a run that never reached a terminal state, or that says
  ``succeeded`` while its message is missing from memory;
* **duplicated**: a user message that appears more than once;
* **reordered**: a session whose user messages are out of submission order;
* also counted: messages in memory for runs that did not succeed.

Targets: 0, 0, 0. It also reports the time to drain against a baseline run
of the same workload on the same fleet without kills, and runs by final state.

Recovery after a kill needs the dead worker's lease to expire and the
sweeper to notice, so the runtime runs with short settings, exported to every
process: ``FENCE_LEASE_MS=3000 FENCE_LEASE_RENEW_MS=500 FENCE_STALL_AFTER_S=2
FENCE_SWEEP_INTERVAL_S=1`` (defaults: 30 s, 10 s, 60 s, 15 s).

    python bench/chaos.py
    python bench/chaos.py --smoke
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._runtime import (  # noqa: E402
    BenchRuntime,
    Target,
    WorkerLayout,
    base_parser,
    markdown_table,
    report,
    run_program,
    targets_table,
)
from fence.runs import RunRecord, RunState  # noqa: E402
from producer import Run  # noqa: E402
from workers.stack import ManagedProcess  # noqa: E402

RECOVERY_ENV = {
    "FENCE_LEASE_MS": "3000",
    "FENCE_LEASE_RENEW_MS": "500",
    "FENCE_STALL_AFTER_S": "2",
    "FENCE_SWEEP_INTERVAL_S": "1",
}


@dataclass
class Outcome:
    """What one phase did and what memory says about it."""

    name: str
    turns: int = 0
    drain_s: float = float("nan")
    kills: int = 0
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    committed_not_succeeded: int = 0
    retried: int = 0
    redispatched: int = 0
    states: collections.Counter[str] = field(default_factory=collections.Counter)


class Chaos(threading.Thread):
    """Kills a random worker every ``period`` seconds and starts a replacement
    (one more process of ``layout``)."""

    def __init__(
        self,
        rt: BenchRuntime,
        workers: list[ManagedProcess],
        layout: WorkerLayout,
        period: tuple[float, float],
        seed: int,
    ) -> None:
        super().__init__(name="chaos", daemon=True)
        self.rt, self.workers, self.layout, self.period = rt, workers, layout, period
        self.rng = random.Random(seed)
        self.done = threading.Event()
        self.kills = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.done.wait(self.rng.uniform(*self.period)):
                victim = self.rng.choice(self.workers)
                self.rt.kill(victim)
                self.workers.remove(victim)
                self.kills += 1
                replacement = self.rt.launch_worker(self.layout)
                self.workers.append(replacement)
                self.rt.wait_ready([replacement])
        except BaseException as error:  # reported by the main thread
            self.error = error


def run_phase(
    rt: BenchRuntime,
    name: str,
    sessions: int,
    turns: int,
    chaos: Chaos | None,
    drain_timeout: float,
) -> Outcome:
    """Submit the workload round-robin, wait for it to drain, verify memory."""
    tag = name.split()[0]
    workload = [
        (f"{tag}-s{s}", f"{tag}-s{s} turn {t}") for t in range(turns) for s in range(sessions)
    ]
    started = time.time()
    runs = rt.submit_all(workload)
    if chaos:
        chaos.start()
    try:
        drained = rt.wait_terminal(runs, drain_timeout, interval=0.1)
    except BaseException:
        rt.stopping.set()  # the chaos thread must not wait for a replacement worker
        raise
    finally:
        if chaos:
            chaos.done.set()
            chaos.join()
    if chaos and chaos.error:
        raise RuntimeError(f"the chaos thread failed: {chaos.error!r}") from chaos.error
    records = rt.records(runs)
    outcome = verify(rt, name, runs, records)
    outcome.kills = chaos.kills if chaos else 0
    outcome.redispatched = sweeper_redispatches(rt, tag)
    finished = [r.finished_at for r in records if r and r.finished_at]
    if drained and finished:
        outcome.drain_s = max(finished) - started
    return outcome


def sweeper_redispatches(rt: BenchRuntime, tag: str) -> int:
    """How often the sweeper re-published an active run of this phase (from the
    workers' WARNING log lines, which name the session)."""
    count = 0
    for log in rt.directory.glob("w*.log"):
        for line in log.read_text(errors="replace").splitlines():
            if "re-dispatching stalled run" in line and f"{tag}-s" in line:
                count += 1
    return count


def verify(
    rt: BenchRuntime, name: str, runs: list[Run], records: list[RunRecord | None]
) -> Outcome:
    outcome = Outcome(name, turns=len(runs))
    by_session: dict[str, list[RunRecord | None]] = collections.defaultdict(list)
    for run, record in zip(runs, records, strict=True):
        by_session[run.session_id].append(record)
    for session_id, submitted in by_session.items():
        memory = [content for content, _turn_id in rt.user_messages(session_id)]
        counts = collections.Counter(memory)
        outcome.duplicated += sum(n - 1 for n in counts.values() if n > 1)
        order = {record.message: i for i, record in enumerate(submitted) if record}
        positions = [order.get(content, -1) for content in dict.fromkeys(memory)]
        if positions != sorted(positions):
            outcome.reordered += 1
        for record in submitted:
            state = record.state if record else None
            outcome.states[state.value if state else "missing record"] += 1
            if record and record.attempts > 1:
                outcome.retried += 1
            message = record.message if record else None
            never_finished = state is None or not state.terminal
            if never_finished or (state is RunState.SUCCEEDED and counts[message] == 0):
                outcome.lost += 1
            elif state is not RunState.SUCCEEDED and counts[message] > 0:
                outcome.committed_not_succeeded += 1
    return outcome


def main(args: argparse.Namespace) -> list[Target]:
    if args.smoke:
        sessions, turns, period, latency = 10, 8, (0.5, 1.0), 0.1
    else:
        sessions, turns = args.sessions, args.turns
        period, latency = (args.min_period, args.max_period), args.latency
    layout = WorkerLayout(args.workers, args.concurrency, args.pool)
    drain_timeout = sessions * turns * (latency + 0.05) + 120
    with BenchRuntime(latency=latency, env=RECOVERY_ENV, keep=args.keep) as rt:
        workers = rt.start_workers(layout)
        rt.start_beat()
        rt.warm_up(layout.slots)
        baseline = run_phase(rt, "baseline (no kills)", sessions, turns, None, drain_timeout)
        print(f"baseline drained in {baseline.drain_s:.1f} s", flush=True)
        chaos = Chaos(rt, workers, layout, period, args.seed)
        chaotic = run_phase(rt, "chaos (SIGKILL + restart)", sessions, turns, chaos, drain_timeout)
        print(f"chaos drained in {chaotic.drain_s:.1f} s, {chaotic.kills} kills", flush=True)

    phases = (baseline, chaotic)
    states = sorted({s for o in phases for s in o.states})
    targets = [
        Target(f"{label} turns (chaos)", str(value), "0", value == 0)
        for label, value in (
            ("lost", chaotic.lost),
            ("duplicated", chaotic.duplicated),
            ("reordered sessions'", chaotic.reordered),
        )
    ]
    targets.append(
        Target(
            "lost/duplicated/reordered (baseline)",
            f"{baseline.lost}/{baseline.duplicated}/{baseline.reordered}",
            "0/0/0",
            baseline.lost == baseline.duplicated == baseline.reordered == 0,
        )
    )
    report(
        f"Chaos: workers SIGKILLed and restarted while {sessions * turns:,} turns run",
        [
            f"{sessions} sessions x {turns} turns = {sessions * turns:,} turns, submitted "
            "round-robin at the start of each phase",
            f"workers: {layout.describe()}; celery beat runs the sweeper; "
            f"EchoModel(latency={latency}), SQLite memory, private redis-server",
            f"chaos: every U({period[0]:g}, {period[1]:g}) s a random worker's process group "
            "is SIGKILLed, then a replacement is started (and waited for)",
            "recovery settings: " + " ".join(f"{k}={v}" for k, v in RECOVERY_ENV.items()),
            "drain = first submit -> last finished_at",
        ],
        [
            (
                "Outcome",
                markdown_table(
                    [
                        "phase",
                        "turns",
                        "kills",
                        "drain s",
                        "turns/s",
                        "lost",
                        "duplicated",
                        "reordered sessions",
                        "committed, not succeeded",
                        "runs started > once",
                        "sweeper re-dispatches",
                    ],
                    [
                        (
                            o.name,
                            o.turns,
                            o.kills,
                            o.drain_s,
                            o.turns / o.drain_s,
                            o.lost,
                            o.duplicated,
                            o.reordered,
                            o.committed_not_succeeded,
                            o.retried,
                            o.redispatched,
                        )
                        for o in phases
                    ],
                ),
            ),
            (
                "Runs by final state",
                markdown_table(
                    ["phase", *states], [(o.name, *(o.states[s] for s in states)) for o in phases]
                ),
            ),
            (
                "Drain time",
                markdown_table(
                    ["baseline s", "chaos s", "ratio"],
                    [
                        (
                            baseline.drain_s,
                            chaotic.drain_s,
                            f"{chaotic.drain_s / baseline.drain_s:.2f}x",
                        )
                    ],
                ),
            ),
            ("Targets", targets_table(targets)),
        ],
    )
    return targets


def parser() -> argparse.ArgumentParser:
    p = base_parser(__doc__)
    p.add_argument("--sessions", type=int, default=100)
    p.add_argument("--turns", type=int, default=20, help="turns per session")
    p.add_argument("--workers", type=int, default=4, help="worker processes")
    p.add_argument("--concurrency", type=int, default=1, help="slots per worker")
    p.add_argument("--pool", default="prefork", choices=["prefork", "threads"])
    p.add_argument("--latency", type=float, default=0.05, help="EchoModel latency, seconds")
    p.add_argument("--min-period", type=float, default=2.0, help="seconds between kills, min")
    p.add_argument("--max-period", type=float, default=4.0, help="seconds between kills, max")
    p.add_argument("--seed", type=int, default=7)
    return p


if __name__ == "__main__":
    sys.exit(run_program(main, parser()))
