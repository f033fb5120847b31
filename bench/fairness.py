"""Does one session with hundreds of queued turns slow everybody else down?

Ordinary sessions talk like users: submit a message, wait for the answer,
think (exponential, seeded), repeat. Their queue wait is read from the run
records (``accepted_at`` -> ``started_at``). Two conditions on the same
workers, in the same run, alternating for ``--rounds`` rounds:

* **baseline**: only the ordinary sessions;
* **flood**: the same ordinary sessions (same seeds) while one extra session
  has 500 turns queued, submitted just before them.

The runtime keeps a session's later turns in its mailbox and publishes only
the one in flight, so the flooding session should hold at most one worker
slot at a time. Target: ordinary p95 wait with the flood <= 2 x baseline p95.
The flood's unfinished turns are cancelled at the end of each flood phase.

    python bench/fairness.py            # 8 slots, 16 sessions x 25 turns, flood 500, 3 rounds
    python bench/fairness.py --smoke
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._runtime import (  # noqa: E402
    BenchRuntime,
    Target,
    WorkerLayout,
    base_parser,
    markdown_table,
    percentile,
    report,
    run_program,
    targets_table,
)
from producer import Run  # noqa: E402

TARGET_FACTOR = 2.0


@dataclass
class Sizes:
    sessions: int
    turns: int
    flood: int
    rounds: int
    think_s: float
    latency_s: float
    layout: WorkerLayout


@dataclass
class Condition:
    """Samples pooled over the rounds of one condition."""

    name: str
    waits_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    turns: int = 0
    flood_ran: int = 0


def converse(rt: BenchRuntime, session_id: str, turns: int, think_s: float, seed: int) -> list[Run]:
    """One user: message, wait for the answer, think, repeat."""
    rng = random.Random(seed)
    time.sleep(rng.uniform(0, think_s))  # users do not all start at the same instant
    runs = []
    for turn in range(turns):
        if rt.stopping.is_set():
            break
        run = rt.submit(session_id, f"message {turn}")
        runs.append(run)
        run.result(timeout=300)
        time.sleep(rng.expovariate(1 / think_s))
    return runs


def phase(rt: BenchRuntime, sizes: Sizes, condition: Condition, tag: str, seed: int) -> None:
    flood: list[Run] = []
    if sizes.flood:
        flood = rt.submit_all((f"{tag}-flood", f"flood {i}") for i in range(sizes.flood))
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=sizes.sessions) as pool:
        futures = [
            pool.submit(converse, rt, f"{tag}-s{i}", sizes.turns, sizes.think_s, seed + i)
            for i in range(sizes.sessions)
        ]
        try:
            runs = [run for future in futures for run in future.result()]
        except BaseException:
            rt.stopping.set()  # let the users' threads end before the pool is joined
            raise
    condition.seconds += time.monotonic() - started
    records = [r for r in rt.records(runs) if r is not None]
    condition.turns += len(records)
    condition.waits_ms.extend(
        (r.started_at - r.accepted_at) * 1e3 for r in records if r.started_at is not None
    )
    if flood:
        states = rt.states(flood)
        condition.flood_ran += sum(s == "succeeded" for s in states)
        for run, state in zip(flood, states, strict=True):
            if state == "queued":
                run.cancel()
        if not rt.wait_terminal(flood, timeout=60):
            raise TimeoutError("the flood session did not wind down after cancelling")


def main(args: argparse.Namespace) -> list[Target]:
    if args.smoke:
        sizes = Sizes(4, 5, 50, 1, 0.2, 0.05, WorkerLayout(1, 4, args.pool))
    else:
        layout = WorkerLayout(args.processes, args.concurrency, args.pool)
        sizes = Sizes(
            args.sessions, args.turns, args.flood, args.rounds, args.think, args.latency, layout
        )
    baseline, flooded = Condition("baseline"), Condition(f"flood ({sizes.flood} turns queued)")
    with BenchRuntime(latency=sizes.latency_s, keep=args.keep) as rt:
        rt.start_workers(sizes.layout)
        rt.warm_up(sizes.layout.slots)
        for round_no in range(1, sizes.rounds + 1):
            seed = 1000 * round_no
            phase(rt, dataclasses.replace(sizes, flood=0), baseline, f"b{round_no}", seed)
            phase(rt, sizes, flooded, f"f{round_no}", seed)
            print(
                f"round {round_no}: p95 baseline {percentile(baseline.waits_ms, 95):.1f} ms, "
                f"flood {percentile(flooded.waits_ms, 95):.1f} ms",
                flush=True,
            )
    rows = [
        (
            c.name,
            c.turns,
            percentile(c.waits_ms, 50),
            percentile(c.waits_ms, 95),
            percentile(c.waits_ms, 99),
            max(c.waits_ms),
            c.turns / c.seconds,
            c.flood_ran if c is flooded else "-",
        )
        for c in (baseline, flooded)
    ]
    base_p95, flood_p95 = percentile(baseline.waits_ms, 95), percentile(flooded.waits_ms, 95)
    ratio = flood_p95 / base_p95
    p50_ratio = percentile(flooded.waits_ms, 50) / percentile(baseline.waits_ms, 50)
    targets = [
        Target(
            "ordinary p95 wait, flood / baseline",
            f"{ratio:.2f}x",
            f"<= {TARGET_FACTOR:g}x",
            ratio <= TARGET_FACTOR,
        )
    ]
    flood_rate = flooded.flood_ran / flooded.seconds if flooded.seconds else float("nan")
    report(
        "Fairness: queue wait of ordinary sessions with and without a flooding session",
        [
            f"workers: {sizes.layout.describe()}; EchoModel(latency={sizes.latency_s}), "
            "SQLite memory, private redis-server",
            f"{sizes.sessions} ordinary sessions x {sizes.turns} turns each, closed loop "
            f"(send, wait for the answer, think ~Exp(mean {sizes.think_s}s)); "
            f"{sizes.rounds} round(s) of baseline then flood, same seeds",
            f"flood: one session with {sizes.flood} turns submitted just before the ordinary "
            "traffic; what it has not run by the end of the phase is cancelled",
            "queue wait = started_at - accepted_at from the run records",
            "for scale: had the flood's turns been queued in Celery ahead of everyone (no "
            "per-session mailbox), an ordinary turn would wait about "
            f"{sizes.flood} x {sizes.latency_s} s / {sizes.layout.slots} slots = "
            f"{sizes.flood * sizes.latency_s / sizes.layout.slots:.1f} s",
        ],
        [
            (
                "Ordinary sessions' queue wait",
                markdown_table(
                    [
                        "condition",
                        "turns",
                        "p50 ms",
                        "p95 ms",
                        "p99 ms",
                        "max ms",
                        "turns/s",
                        "flood turns run",
                    ],
                    rows,
                ),
            ),
            (
                "Summary",
                markdown_table(
                    ["p50 ratio", "p95 ratio", "flood session's rate (turns/s)", "one slot's max"],
                    [(f"{p50_ratio:.2f}x", f"{ratio:.2f}x", flood_rate, 1 / sizes.latency_s)],
                ),
            ),
            ("Targets", targets_table(targets)),
        ],
    )
    return targets


def parser() -> argparse.ArgumentParser:
    p = base_parser(__doc__)
    p.add_argument("--sessions", type=int, default=16, help="ordinary sessions")
    p.add_argument("--turns", type=int, default=25, help="turns per ordinary session")
    p.add_argument("--flood", type=int, default=500, help="turns queued by the flooding session")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--think", type=float, default=0.3, help="mean think time, seconds")
    p.add_argument("--latency", type=float, default=0.1, help="EchoModel latency, seconds")
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--pool", default="prefork", choices=["prefork", "threads"])
    return p


if __name__ == "__main__":
    sys.exit(run_program(main, parser()))
