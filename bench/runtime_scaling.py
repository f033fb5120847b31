"""Does throughput grow with worker slots when the model is slow?

With ``EchoModel(latency=0.2)`` a slot can do at most 5 turns/s, so N slots
ideally do N / 0.2 s. For each N it starts N slots the way ops/README
deploys workers: processes of ``--concurrency 4`` (fewer for N < 4) on
Celery's default prefork pool, whose hard time limit enforces
``FENCE_TURN_TIMEOUT_S`` (``--pool threads`` is the lighter alternative for
I/O-bound turns). It queues one turn for each of 1,000 sessions while the
workers are paused, resumes them and measures

    throughput = turns / (last finished_at - first started_at)

against the ideal. Target: >= 90% of ideal. The model sleeps, so slots may
exceed cores.

    python bench/runtime_scaling.py                  # N = 2, 8, 16; 1,000 sessions
    python bench/runtime_scaling.py --slots 4 32 --pool threads
    python bench/runtime_scaling.py --smoke
"""

from __future__ import annotations

import argparse
import sys
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

LATENCY_S = 0.2
TARGET_EFFICIENCY = 0.9


def layout_for(slots: int, per_process: int, pool: str) -> WorkerLayout:
    """``slots`` as the fewest worker processes of at most ``per_process`` slots each."""
    processes = -(-slots // per_process)
    while slots % processes:
        processes += 1
    return WorkerLayout(processes, slots // processes, pool)


def measure(
    rt: BenchRuntime, layout: WorkerLayout, sessions: int, turns_per_session: int, tag: str
) -> dict[str, float]:
    workload = [
        (f"{tag}-s{s}", f"turn {t}") for t in range(turns_per_session) for s in range(sessions)
    ]
    records, used = rt.run_workload(
        layout,
        workload,
        timeout=len(workload) * LATENCY_S + 300,
        prefix=f"n{layout.slots}-",
    )
    started = [r.started_at for r in records if r.started_at is not None]
    finished = [r.finished_at for r in records if r.finished_at is not None]
    makespan = max(finished) - min(started)
    per_s = len(records) / makespan
    ideal = layout.slots / LATENCY_S
    in_lease = [(f - s) * 1e3 for f, s in zip(finished, started, strict=True)]
    cpu = used.worker_cpu_s
    return {
        "turns": len(records),
        "seconds": makespan,
        "per_s": per_s,
        "ideal": ideal,
        "efficiency": per_s / ideal,
        "slot_ms": layout.slots / per_s * 1e3,
        "lease_ms_p50": percentile(in_lease, 50),
        "lease_ms_p95": percentile(in_lease, 95),
        "cpu_pct": float("nan") if cpu is None else 100 * cpu / makespan,
    }


def main(args: argparse.Namespace) -> list[Target]:
    slots, sessions = ([2, 4], 40) if args.smoke else (args.slots, args.sessions)
    rows, targets, layouts = [], [], []
    with BenchRuntime(latency=LATENCY_S, keep=args.keep) as rt:
        for n in slots:
            layout = layout_for(n, args.per_process, args.pool)
            layouts.append(f"N={n}: {layout.describe()}")
            result = measure(rt, layout, sessions, args.turns_per_session, f"n{n}")
            print(f"N={n}: {result['per_s']:.1f} turns/s of {result['ideal']:.0f}", flush=True)
            celery_share = "-"
            if args.celery_reference:
                plain = rt.time_celery_tasks(layout, sessions, sleep_s=LATENCY_S)
                makespan = plain.last_finish - plain.first_finish + LATENCY_S
                celery_share = f"{100 * plain.items / makespan / result['ideal']:.1f}%"
                print(f"N={n}: Celery-only {celery_share} of ideal", flush=True)
            rows.append(
                (
                    n,
                    f"{layout.processes}x{layout.concurrency}",
                    result["turns"],
                    result["seconds"],
                    result["per_s"],
                    result["ideal"],
                    f"{100 * result['efficiency']:.1f}%",
                    result["slot_ms"],
                    result["lease_ms_p50"],
                    result["cpu_pct"],
                    celery_share,
                )
            )
            targets.append(
                Target(
                    f"N={n}: throughput / ideal",
                    f"{100 * result['efficiency']:.1f}%",
                    f">= {TARGET_EFFICIENCY:.0%}",
                    result["efficiency"] >= TARGET_EFFICIENCY,
                )
            )
    report(
        "Scaling with model latency: throughput vs the ideal N / 0.2 s",
        [
            f"EchoModel(latency={LATENCY_S}), SQLite memory, private redis-server; "
            f"{sessions:,} sessions x {args.turns_per_session} turn(s), queued while the "
            "workers were paused, then released at once",
            *layouts,
            "throughput = turns / (last finished_at - first started_at); "
            "slot-ms per turn = N / throughput (ideal: 200)",
            "worker CPU is of all worker processes together, in % of one core",
            "Celery-only (--celery-reference): the same number of plain Celery tasks that "
            f"sleep {LATENCY_S} s, same layout and settings: the ceiling Celery itself allows",
        ],
        [
            (
                "Throughput",
                markdown_table(
                    [
                        "N slots",
                        "procs x conc",
                        "turns",
                        "seconds",
                        "turns/s",
                        "ideal/s",
                        "of ideal",
                        "slot-ms/turn",
                        "in-lease ms p50",
                        "worker CPU %",
                        "Celery-only of ideal",
                    ],
                    rows,
                ),
            ),
            ("Targets", targets_table(targets)),
        ],
    )
    return targets


def parser() -> argparse.ArgumentParser:
    p = base_parser(__doc__)
    p.add_argument("--slots", type=int, nargs="+", default=[2, 8, 16], help="values of N")
    p.add_argument("--sessions", type=int, default=1_000)
    p.add_argument("--turns-per-session", type=int, default=1)
    p.add_argument(
        "--per-process",
        type=int,
        default=4,
        help="slots per worker process (default 4: ops/README's `--concurrency=4`, "
        "as `fence stack --workers 4 --concurrency 4` runs 16 slots on one machine)",
    )
    p.add_argument("--pool", default="prefork", choices=["prefork", "threads"])
    p.add_argument(
        "--celery-reference",
        action="store_true",
        help="also time plain Celery tasks sleeping 0.2 s on the same layout (doubles the time)",
    )
    return p


if __name__ == "__main__":
    sys.exit(run_program(main, parser()))
