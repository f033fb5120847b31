"""What durable turns cost, and what they save when a worker dies (issue 12).

* **Journal overhead**: a 10-step turn (the model asks for one no-op tool per step,
  nine times, then answers; ``ScriptedModel``, no latency) run as a worker runs it,
  ``Agent.prepare_turn`` then ``RunStore.save_answer``, with
  ``journal=RunJournal(store, lease)`` on a private redis-server, a real lease per
  turn (``RunStore.submit`` + ``acquire``, not timed), against ``journal=None``, the
  two interleaved (order alternating) in one process. Added per step =
  (journaled - unjournaled turn time) / 10, at p50 and p99.
  Target: <= 0.5 ms per step at p50.
* **Crash cost**: the chaos run of ``tests/runtime/test_durable_chaos.py``
  (``bench/_durable_chaos.py``): workers SIGKILLed inside every kind of step of turns
  that make four tool calls in a row, once with the journal and once without it (the
  baseline: a new delivery starts the turn over), same kills aimed the same way.
  Per kill: model calls and tool executions made again, and executions of tool calls
  that had finished (no kill landed in them). Targets, with the journal: <= 1 model
  call and 0 finished tool calls repeated per kill; every turn committed once, in
  order, and every tool call's effect applied once per idempotency key.

    python bench/durable_turns.py
    python bench/durable_turns.py --smoke
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis  # noqa: E402

from bench._durable_chaos import AGENT as CHAOS_AGENT  # noqa: E402
from bench._durable_chaos import Outcome, Size, run_chaos  # noqa: E402
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
from fence.agents import Agent  # noqa: E402
from fence.messages import ToolCall  # noqa: E402
from fence.models.base import ModelResponse  # noqa: E402
from fence.models.local import ScriptedModel  # noqa: E402
from fence.runs import Lease, RunRequest, RunStore  # noqa: E402
from fence.runs.journal import RunJournal  # noqa: E402
from fence.settings import Settings  # noqa: E402
from producer import Producer  # noqa: E402
from producer.stack.launch import WORKER_READY, ready, start_redis  # noqa: E402
from producer.stack.processes import ManagedProcess  # noqa: E402
from tests.runtime.durable_agents import STEPS  # noqa: E402
from tests.support import FAST_RECOVERY  # noqa: E402

TURN_STEPS = 10
OVERHEAD_TARGET_MS = 0.5
WARM_UP_TURNS = 20
CHAOS_ENV = {
    **FAST_RECOVERY,
    "FENCE_AGENTS": "tests.runtime.agents:registry",
    "FENCE_DEFAULT_AGENT": CHAOS_AGENT,
}
"""The test suite's recovery settings and agents, so a killed run is re-dispatched soon."""


# -- journal overhead -------------------------------------------------------------


def noop() -> str:
    """Do nothing."""
    return "ok"


def ten_step_agent() -> Agent:
    calls = [
        ModelResponse(tool_calls=(ToolCall(id=f"noop-{step}", name="noop"),))
        for step in range(1, TURN_STEPS)
    ]
    model = ScriptedModel([*calls, ModelResponse(content="done")])
    return Agent(identifier="ten-steps", model=model, tools=[noop])


def leased(store: RunStore, session_id: str) -> Lease:
    request = RunRequest(session_id=session_id, message="go", agent="ten-steps")
    submission = store.submit(request)
    lease = store.acquire(session_id, submission.run_id, "bench@overhead")
    assert isinstance(lease, Lease), lease
    return lease


def timed_turn(store: RunStore, journaled: bool, index: int) -> float:
    """Seconds one 10-step turn takes as a worker runs it, ``prepare_turn`` then
    ``save_answer`` (which journals the answer's step); set-up not timed."""
    agent = ten_step_agent()
    lease = leased(store, f"overhead-{index}-{journaled}")
    journal = RunJournal(store, lease) if journaled else None
    started = time.perf_counter()
    prepared = agent.prepare_turn("go", journal=journal, turn_id=lease.run_id)
    saved = store.save_answer(lease, prepared.answer)
    elapsed = time.perf_counter() - started
    assert saved == "saved" and prepared.answer == "done"
    assert len(prepared.messages) == 2 * TURN_STEPS
    return elapsed


def journal_overhead(turns: int) -> tuple[dict[bool, list[float]], dict[str, int]]:
    """Turn times with and without the journal, interleaved (order alternating); and the
    Redis commands of one journaled turn."""
    with tempfile.TemporaryDirectory(prefix="fence-bench-journal-") as tmp:
        process, url = start_redis(Path(tmp) / "redis")
        client = redis.Redis.from_url(url, decode_responses=True)
        try:
            store = RunStore(client, Settings(redis_url=url))
            for index in range(WARM_UP_TURNS):
                timed_turn(store, index % 2 == 0, -index - 1)
            times: dict[bool, list[float]] = {True: [], False: []}
            for index in range(turns):
                for journaled in (True, False) if index % 2 == 0 else (False, True):
                    times[journaled].append(timed_turn(store, journaled, index))
            calls = journaled_turn_commands(store)
        finally:
            client.close()
            process.stop()
    return times, calls


def journaled_turn_commands(store: RunStore) -> dict[str, int]:
    """The Redis commands one journaled turn sends (its lease's set-up not counted)."""
    lease = leased(store, "overhead-counted")
    before = commandstats(store.redis)
    journal = RunJournal(store, lease)
    prepared = ten_step_agent().prepare_turn("go", journal=journal, turn_id=lease.run_id)
    store.save_answer(lease, prepared.answer)
    after = commandstats(store.redis)
    return {n: after[n] - before.get(n, 0) for n in after if after[n] != before.get(n, 0)}


def commandstats(client: redis.Redis) -> dict[str, int]:
    info = client.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in info.items()}
    calls.pop("info", None)  # these reads
    return calls


# -- crash cost -------------------------------------------------------------------


def chaos_phases(args: argparse.Namespace, size: Size) -> list[Outcome]:
    """The chaos run with the journal, then without it, on one runtime."""
    layout = WorkerLayout(1, 1)
    with BenchRuntime(env=CHAOS_ENV, keep=args.keep, loglevel="INFO") as rt:

        def start_worker() -> ManagedProcess:
            return ready(rt.launch_worker(layout), WORKER_READY)

        fleet = [rt.launch_worker(layout) for _ in range(size.workers)]  # boot in parallel
        for worker in fleet:
            ready(worker, WORKER_READY)
        rt.start_beat()
        producer = Producer(settings=rt.settings, agents=[CHAOS_AGENT])
        outcomes = []
        for journaled in (True, False):
            tag = "journaled" if journaled else "unjournaled"
            outcome = run_chaos(
                fleet,
                start_worker,
                producer,
                rt.memory,
                rt.redis,
                size,
                seed=args.seed,
                tag=tag,
                journaled=journaled,
                timeout=size.runs * 2 + 120,
            )
            print(f"{tag}: {len(outcome.kills)} kills, drained in {outcome.drain_s:.1f} s")
            outcomes.append(outcome)
        producer.store.redis.close()
    return outcomes


def violations(o: Outcome) -> int:
    """Turns not committed once in order, or whose effects were not once per key."""
    return sum(
        len(found)
        for found in (
            o.not_succeeded(),
            o.misordered_sessions(),
            o.malformed_turns(),
            o.wrong_effects(),
        )
    )


def per_kill(count: int, o: Outcome) -> float:
    return count / len(o.kills) if o.kills else float("nan")


# -- the program ------------------------------------------------------------------


def main(args: argparse.Namespace) -> list[Target]:
    turns = 100 if args.smoke else args.overhead_turns
    size = (
        Size(sessions=4, turns=5, workers=2, kills=4)
        if args.smoke
        else Size(args.sessions, args.turns, args.workers, args.kills)
    )
    times, journal_calls = journal_overhead(turns)
    print(f"journal overhead: {turns} turns each way", flush=True)
    outcomes = chaos_phases(args, size)

    def turn_ms(journaled: bool, q: float) -> float:
        return percentile(times[journaled], q) * 1e3

    added = {q: (turn_ms(True, q) - turn_ms(False, q)) / TURN_STEPS for q in (50, 99)}
    overhead_rows = [
        (
            "RunJournal" if journaled else "None",
            len(times[journaled]),
            turn_ms(journaled, 50),
            turn_ms(journaled, 99),
            turn_ms(journaled, 50) / TURN_STEPS,
            turn_ms(journaled, 99) / TURN_STEPS,
        )
        for journaled in (False, True)
    ]
    overhead_rows.append(
        (
            "added by the journal",
            "",
            added[50] * TURN_STEPS,
            added[99] * TURN_STEPS,
            *added.values(),
        )
    )
    journaled = outcomes[0]
    targets = [
        Target(
            "journal: ms added per step, p50",
            f"{added[50]:.3f}",
            f"<= {OVERHEAD_TARGET_MS}",
            added[50] <= OVERHEAD_TARGET_MS,
        ),
        Target(
            "with the journal: model calls repeated per kill",
            f"{per_kill(journaled.repeated_model_calls(), journaled):.2f}",
            "<= 1",
            per_kill(journaled.repeated_model_calls(), journaled) <= 1,
        ),
        Target(
            "with the journal: finished tool calls repeated per kill",
            f"{per_kill(journaled.completed_tool_repeats(), journaled):.2f}",
            "0",
            journaled.completed_tool_repeats() == 0,
        ),
        Target(
            "with the journal: turns not committed once in order, or effects not once per key",
            str(violations(journaled)),
            "0",
            violations(journaled) == 0,
        ),
    ]
    crash_rows = []
    for o in outcomes:
        landed = o.kills_in_steps()
        crash_rows.append(
            (
                "on" if o.journaled else "off (baseline)",
                len(o.runs),
                len(o.kills),
                sum(bool(kill.held) for kill in o.kills),
                f"{landed['model']} / {landed['tool']} / {landed['between steps']}",
                per_kill(o.repeated_model_calls(), o),
                per_kill(o.repeated_executions(), o),
                per_kill(o.completed_tool_repeats(), o),
                sum(o.model_calls.values()) / len(o.runs),
                violations(o),
                o.drain_s,
            )
        )
    report(
        "Durable turns: the step journal's cost per step, and what a worker's death costs",
        [
            f"journal overhead: {turns:,} turns with the journal and {turns:,} without, "
            f"interleaved, after {WARM_UP_TURNS} warm-up turns; {TURN_STEPS} steps a turn "
            f"(9 no-op tool calls, then the answer), ScriptedModel, FleetingMemory; "
            "RunJournal on a private redis-server (no AOF); a journaled turn sends "
            + ", ".join(f"{n} {c}" for n, c in sorted(journal_calls.items()))
            + " (EVALSHA: JOURNAL, one per model reply and per tool result, and the commands "
            "it runs; LRANGE: the replay read)",
            f"crash cost: {size.sessions} sessions x {size.turns} turns of the `durable` test "
            f"agent ({STEPS} steps: 4 tool calls in a row, then the answer; 5 ms each); "
            f"{size.workers} x `celery worker --concurrency 1` and beat; {size.kills} SIGKILLs "
            "per phase, each aimed at a step (a shuffled cycle over all 9), landing U(0, 6.25 "
            "ms) after it started; a replacement worker is started per kill; recovery "
            "settings: " + " ".join(f"{k}={v}" for k, v in FAST_RECOVERY.items()),
            "finished tool calls repeated: executions of tool calls beyond the first that no "
            "kill landed in; violations: runs not succeeded + sessions misordered + turns "
            "malformed in memory + runs whose effects were not their 4 keys once each",
        ],
        [
            (
                "Journal overhead (ms)",
                markdown_table(
                    ["journal", "turns", "turn p50", "turn p99", "per step p50", "per step p99"],
                    overhead_rows,
                ),
            ),
            (
                "Crash cost, per kill",
                markdown_table(
                    [
                        "journal",
                        "turns",
                        "kills",
                        "kills holding a run",
                        "landed in model / tool / between",
                        "model calls repeated",
                        "tool executions repeated",
                        "finished tool calls repeated",
                        "model calls per turn",
                        "violations",
                        "drain s",
                    ],
                    crash_rows,
                ),
            ),
            ("Targets", targets_table(targets)),
        ],
    )
    return targets


def parser() -> argparse.ArgumentParser:
    p = base_parser(__doc__)
    p.add_argument("--overhead-turns", type=int, default=2_000, help="turns each way")
    p.add_argument("--sessions", type=int, default=20)
    p.add_argument("--turns", type=int, default=10, help="chaos turns per session")
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--kills", type=int, default=36, help="SIGKILLs per chaos phase")
    p.add_argument("--seed", type=int, default=12)
    return p


if __name__ == "__main__":
    sys.exit(run_program(main, parser()))
