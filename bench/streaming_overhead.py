"""What logging a turn's text as it is generated costs: turns/s with streaming on vs off.

Each round runs the same workload twice on fresh workers, once with
``FENCE_STREAM_EVENTS=true`` (the default: every text delta, tool call and
result goes to the run's event log) and once with it off (only the state
changes are logged), in alternating order. The agent is ``EchoModel(latency=0)``,
whose answer streams word by word (about ten deltas a turn), so this is the
worst case per token: no model time to hide the logging behind.

Target: streamed turns/s >= 0.9 x unstreamed (median over rounds). Also prints
Redis commands and worker CPU per turn, on vs off.

    python bench/streaming_overhead.py            # 2,000 turns / 200 sessions, 5 rounds
    python bench/streaming_overhead.py --smoke
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._runtime import (  # noqa: E402
    HARNESS_COMMANDS,
    BenchRuntime,
    Phase,
    Target,
    WorkerLayout,
    base_parser,
    markdown_table,
    report,
    run_program,
    targets_table,
    throughput,
)

TARGET_RATIO = 0.9
SWITCH = "FENCE_STREAM_EVENTS"


def phase(
    rt: BenchRuntime, layout: WorkerLayout, streamed: bool, turns: int, sessions: int, tag: str
) -> Phase:
    """``turns`` round-robin over ``sessions`` on workers with streaming on or off."""
    rt.env[SWITCH] = "true" if streamed else "false"
    workload = [(f"{tag}-s{i % sessions}", f"turn {i // sessions}") for i in range(turns)]
    records, used = rt.run_workload(layout, workload, timeout=600, prefix="stream")
    finished = [r.finished_at for r in records if r.finished_at]
    name = "streamed" if streamed else "unstreamed"
    return Phase(name, turns, throughput(finished), used.worker_cpu_s, used.redis)


def cost_row(p: Phase) -> tuple[object, ...]:
    top = ", ".join(f"{n} {c / p.items:.1f}" for n, c in p.redis.top(4, HARNESS_COMMANDS))
    cpu = p.per_item(p.worker_cpu_s) * 1e3 if p.worker_cpu_s is not None else float("nan")
    return (p.system, p.per_s, cpu, p.per_item(p.redis.total(HARNESS_COMMANDS)), top)


def main(args: argparse.Namespace) -> list[Target]:
    turns, sessions, rounds = (
        (200, 20, 1) if args.smoke else (args.turns, args.sessions, args.rounds)
    )
    layout = WorkerLayout(1, args.concurrency, "prefork")
    done: list[tuple[Phase, Phase]] = []
    with BenchRuntime(latency=0.0, keep=args.keep) as rt:
        for round_no in range(1, rounds + 1):
            order = [True, False] if round_no % 2 else [False, True]
            measured = {s: phase(rt, layout, s, turns, sessions, f"r{round_no}-{s}") for s in order}
            done.append((measured[True], measured[False]))
            on, off = measured[True], measured[False]
            print(f"round {round_no}: on {on.per_s:.0f}/s, off {off.per_s:.0f}/s", flush=True)
    ratio = statistics.median(on.per_s / off.per_s for on, off in done)
    median_round = sorted(done, key=lambda r: r[0].per_s / r[1].per_s)[len(done) // 2]
    targets = [
        Target(
            "streamed / unstreamed turns/s",
            f"{ratio:.2f}x",
            f">= {TARGET_RATIO}x",
            ratio >= TARGET_RATIO,
        )
    ]
    report(
        "Streaming overhead: turns with their text logged as generated vs without",
        [
            f"per round: {turns:,} turns over {sessions:,} sessions, streaming on and off; "
            f"{rounds} round(s)",
            f"worker: {layout.describe()}; EchoModel(latency=0), about ten text deltas a turn; "
            "SQLite memory (WAL), private redis-server",
            "*Redis commands include those run inside Lua scripts",
        ],
        [
            (
                "Throughput per round (turns/s)",
                markdown_table(
                    ["round", "streamed", "unstreamed", "ratio"],
                    [
                        (i, on.per_s, off.per_s, f"{on.per_s / off.per_s:.2f}x")
                        for i, (on, off) in enumerate(done, 1)
                    ],
                ),
            ),
            (
                "Per turn (the round with the median ratio)",
                markdown_table(
                    ["workers", "turns/s", "worker CPU ms", "Redis cmds*", "top Redis commands*"],
                    [cost_row(p) for p in median_round],
                ),
            ),
            ("Targets", targets_table(targets)),
        ],
    )
    return targets


def parser() -> argparse.ArgumentParser:
    p = base_parser(__doc__)
    p.add_argument("--turns", type=int, default=2_000)
    p.add_argument("--sessions", type=int, default=200)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--concurrency", type=int, default=2, help="worker slots (default: 2 cores)")
    return p


if __name__ == "__main__":
    sys.exit(run_program(main, parser()))
