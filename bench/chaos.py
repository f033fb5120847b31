"""Does every turn survive every fault the runtime promises to survive?

Four workers and ``celery beat`` (the recovery sweeper) run sessions x turns,
submitted up front: first without faults (the baseline), then once per fault
mode (``--mode``, default all):

* ``kill``: every few seconds a random worker's whole process group is
  SIGKILLed (no shutdown code runs, its tasks are never acked) and a
  replacement is started.
* ``stop``: a worker's process group is SIGSTOPped past its lease, so another
  worker takes its session over, then SIGCONTed: at random moments for 1.2-2 x
  ``FENCE_LEASE_MS``, and on purpose between a turn's answer being saved and
  its memory commit. For that, a few turns are marked and their commit waits
  briefly so the driver can stop the worker right there
  (``bench/chaos_agents.py``); the driver then cancels that run, makes its
  model fail on the takeover, or leaves the takeover to commit it, and resumes
  the stopped worker the moment the run ends. A takeover resumes from the run's
  step journal, so it replays the stopped worker's model reply rather than call
  the model: the turns whose model is to fail are marked to run without the
  journal, as every turn did before turns were journaled. A stale worker that
  commits after the takeover ended the run ``failed`` or ``cancelled`` shows
  under "non-succeeded runs in memory"; a held run that did not end as the
  driver meant is noted. At most half the workers are stopped at once.
* ``redis``: redis-server is SIGKILLed and restarted on the same port and data
  directory (AOF, ``appendfsync always``) after a moment down.
* ``memory-stall``: memory is DynamoDB on a moto server in a process of its
  own (``bench/local_dynamodb.py``), SIGSTOPped for 1.2-2 x the lease, then
  SIGCONTed.

Redis crashes and memory stalls come three times less often than worker
faults: each hits every worker at once.

In every mode a worker or beat that exits on its own is started again, as
compose's ``restart:`` or a Kubernetes Deployment would ("exits"). After each
phase, once the workers are idle, memory is checked against the run records:

* **lost**: a run that says ``succeeded`` while its turn is not in memory, or
  whose record is gone;
* **duplicated**: a turn id that appears more than once in memory;
* **reordered**: a session whose turns are in memory out of submission order;
* **non-succeeded runs in memory**: a run that ended ``failed``, ``cancelled``
  or ``rejected`` whose turn (its run id) is in memory;
* **not terminal**: a run still queued or running when the drain timed out.

Targets: 0 in each, in every mode. Drain time (first submit -> last
``finished_at``) is compared with the baseline of the same runtime: ``kill``,
``stop`` and ``redis`` share one (SQLite memory, Redis with AOF ``always``);
``memory-stall`` has its own, on DynamoDB. Every phase ends by itself (a drain
timeout), and every process is stopped at the end. With ``redis`` it also
measures what ``appendfsync always`` costs: submits/s through the producer
against Redis with ``everysec`` and with ``always``.

Recovery needs a stopped or dead worker's lease to expire and the sweeper to
notice, so the runtime runs with short settings, exported to every process:
``FENCE_LEASE_MS=3000 FENCE_LEASE_RENEW_MS=500 FENCE_STALL_AFTER_S=2
FENCE_SWEEP_INTERVAL_S=1 FENCE_TURN_RETRY_BACKOFF_S=0.2`` (defaults: 30 s,
10 s, 60 s, 15 s, 1 s).

    python bench/chaos.py
    python bench/chaos.py --smoke
    python bench/chaos.py --mode stop --mode redis
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import chaos_agents  # noqa: E402
from bench._runtime import (  # noqa: E402
    AGENT,
    BenchRuntime,
    Target,
    WorkerLayout,
    base_parser,
    markdown_table,
    report,
    run_program,
    targets_table,
)
from bench.local_dynamodb import local_dynamodb  # noqa: E402
from fence.runs import RunRecord, RunState, keys  # noqa: E402
from fence.settings import Settings  # noqa: E402
from producer import Producer, Run  # noqa: E402
from producer.stack.launch import start_redis  # noqa: E402
from producer.stack.processes import ManagedProcess  # noqa: E402

RECOVERY_ENV = {
    "FENCE_LEASE_MS": "3000",
    "FENCE_LEASE_RENEW_MS": "500",
    "FENCE_STALL_AFTER_S": "2",
    "FENCE_SWEEP_INTERVAL_S": "1",
    "FENCE_TURN_RETRY_BACKOFF_S": "0.2",
    "FENCE_AGENTS": "bench.chaos_agents:registry",
}
LEASE_S = int(RECOVERY_ENV["FENCE_LEASE_MS"]) / 1000
STOPPED_S = (1.2 * LEASE_S, 2.0 * LEASE_S)
"""How long a stopped worker or memory server stays stopped: past the lease."""
REDIS_DOWN_S = (0.2, 1.5)
SHARED_FAULT_SCALE = 3
"""Faults of what every worker shares (Redis, memory) come this many times less often."""
HELD_MAX_S = 30.0
"""A worker stopped at its commit is resumed once its run ended, at the latest after this."""
TICK_S = 0.1
SETTLE_S = 30.0
"""After a phase, how long the workers get to finish what they were doing when resumed."""
MODES = ("kill", "stop", "redis", "memory-stall")
ENDINGS = {
    "cancelled": RunState.CANCELLED,
    "failed": RunState.FAILED,
    "taken over": RunState.SUCCEEDED,
}
"""What the driver makes of a run whose worker it stopped at the commit, and the
state that leaves the run in. ``failed`` is for the unjournaled marked turns only:
a journaled takeover does not call the model."""
REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


@dataclass(frozen=True)
class Size:
    sessions: int
    turns: int
    period: tuple[float, float]
    latency: float
    hold_fraction: float
    drain_timeout: float


@dataclass
class Outcome:
    """What one phase did and what memory says about it."""

    mode: str
    memory: str
    turns: int = 0
    faults: int = 0
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    non_succeeded_in_memory: int = 0
    not_terminal: int = 0
    drain_s: float = float("nan")
    baseline_s: float = float("nan")
    exits: int = 0
    taken_over: int = 0
    redispatched: int = 0
    settled: bool = True
    detail: str = ""
    states: collections.Counter[str] = field(default_factory=collections.Counter)

    @property
    def violations(self) -> tuple[int, ...]:
        return (
            self.lost,
            self.duplicated,
            self.reordered,
            self.non_succeeded_in_memory,
            self.not_terminal,
        )


# -- the fleet and its supervisor ---------------------------------------------------


class Fleet:
    """The workers and beat of one runtime, and the memory server if it has one.
    ``supervise`` starts again a worker or beat that exited on its own, as a
    process supervisor would; ``kill`` is the exception."""

    def __init__(
        self,
        rt: BenchRuntime,
        layout: WorkerLayout,
        memory_server: ManagedProcess | None = None,
    ) -> None:
        self.rt, self.layout, self.memory_server = rt, layout, memory_server
        self.workers = rt.start_workers(layout)
        self.beat = rt.start_beat()
        self.exits = 0

    def kill(self, worker: ManagedProcess) -> None:
        """SIGKILL ``worker`` and start a replacement (waited for)."""
        self.workers.remove(worker)
        self.rt.kill(worker)
        replacement = self.rt.launch_worker(self.layout)
        self.workers.append(replacement)
        self.rt.wait_ready([replacement])

    def supervise(self) -> None:
        for worker in [w for w in self.workers if w.process.poll() is not None]:
            self.exits += 1
            self.workers.remove(worker)
            self.rt.stop(worker)  # reaps what is left of its process group
            self.workers.append(self.rt.launch_worker(self.layout))
        if self.beat.process.poll() is not None:
            self.exits += 1
            self.rt.stop(self.beat)
            self.beat = self.rt.start_beat()

    def find(self, pgid: int) -> ManagedProcess | None:
        return next((w for w in self.workers if w.process.pid == pgid), None)

    def kill_all(self) -> None:
        """End of the benchmark: SIGKILL it all (a warm shutdown waits on every worker
        in turn, and nothing of theirs is checked after this)."""
        for process in [*self.workers, self.beat]:
            self.rt.kill(process)
        self.workers.clear()


# -- fault injectors ----------------------------------------------------------------


class Chaos(threading.Thread):
    """Injects one kind of fault every U(``period``) x ``period_scale`` seconds until
    ``done``, and supervises the fleet meanwhile. ``end`` undoes whatever is still in
    force. ``runs`` are the phase's runs."""

    period_scale = 1

    def __init__(
        self,
        rt: BenchRuntime,
        fleet: Fleet,
        period: tuple[float, float],
        seed: int,
        runs: Sequence[Run],
    ) -> None:
        super().__init__(name="chaos", daemon=True)
        self.rt, self.fleet = rt, fleet
        self.period = (period[0] * self.period_scale, period[1] * self.period_scale)
        self.runs = {run.id: run for run in runs}
        self.rng = random.Random(seed)
        self.done = threading.Event()
        self.injected = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            due = time.monotonic() + self.rng.uniform(0, 1)  # the first within 1 s: short phases
            while not self.done.is_set():
                self.wait(min(TICK_S, max(0.0, due - time.monotonic())))
                self.fleet.supervise()
                if time.monotonic() >= due and not self.done.is_set():
                    if self.inject():
                        self.injected += 1
                    due = time.monotonic() + self.rng.uniform(*self.period)
        except BaseException as error:  # reported by the main thread
            self.error = error
        finally:
            self.end()

    def wait(self, timeout: float) -> None:
        self.done.wait(timeout)

    def inject(self) -> bool:
        """Inject one fault; False if none could be injected right now."""
        raise NotImplementedError

    def end(self) -> None:
        pass

    def detail(self) -> str:
        return ""


class KillChaos(Chaos):
    def inject(self) -> bool:
        self.fleet.kill(self.rng.choice(self.fleet.workers))
        return True


class RedisChaos(Chaos):
    """SIGKILLs redis-server and restarts it. Less often than a worker fault: every
    worker and beat must reconnect after each (kombu backs off)."""

    period_scale = SHARED_FAULT_SCALE

    def inject(self) -> bool:
        self.rt.kill_redis()
        try:
            time.sleep(self.rng.uniform(*REDIS_DOWN_S))  # the outage itself
        finally:
            self.rt.restart_redis()
        return True


@dataclass
class Paused:
    """A process group under SIGSTOP, to SIGCONT at ``until`` (monotonic seconds);
    for a worker stopped at the commit of ``run_id``, as soon as that run ended."""

    process: ManagedProcess
    until: float
    run_id: str | None = None


class PauseChaos(Chaos):
    """Faults that SIGSTOP a process group and SIGCONT it later."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.paused: list[Paused] = []

    def pause(self, process: ManagedProcess, for_s: float, run_id: str | None = None) -> None:
        process.freeze()
        self.paused.append(Paused(process, time.monotonic() + for_s, run_id))

    def wait(self, timeout: float) -> None:
        super().wait(timeout)
        self.resume_due()

    def resume_due(self) -> None:
        now = time.monotonic()
        for paused in [p for p in self.paused if now >= p.until]:
            self.resume(paused)

    def resume(self, paused: Paused) -> None:
        self.paused.remove(paused)
        paused.process.thaw()

    def end(self) -> None:
        for paused in list(self.paused):
            self.resume(paused)


class StopChaos(PauseChaos):
    """SIGSTOPs workers past their lease: at random moments, and right before the
    commit of marked turns (``bench/chaos_agents.py``). A worker stopped at a
    commit is resumed the moment its run ends (its done channel), so its late
    commit races the session's next turn, as a real stale worker's would."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.held: dict[str, str] = {}
        """Runs whose worker was stopped at the commit (each once), and their ending."""
        self.random_stops = 0
        self.events = self.rt.redis.pubsub(ignore_subscribe_messages=True)
        self.events.subscribe(chaos_agents.HOLDS_CHANNEL)

    def wait(self, timeout: float) -> None:
        """Wait for a marked commit or a held run's end (the tick); resume what is due."""
        message = self.events.get_message(timeout=max(timeout, 0.01))
        if message and message["channel"] == chaos_agents.HOLDS_CHANNEL:
            pgid, run_id = message["data"].split()
            self.on_commit(self.fleet.find(int(pgid)), run_id)
        elif message:  # a held run's done channel
            channel = message["channel"]
            self.events.unsubscribe(channel)
            for paused in self.paused:
                if paused.run_id and keys.done_channel(paused.run_id) == channel:
                    self.resume(paused)
                    break
        self.resume_due()

    def on_commit(self, worker: ManagedProcess | None, run_id: str) -> None:
        """A worker is about to commit ``run_id``: stop it there (once per run), then
        make its model fail on the takeover if the turn runs unjournaled, else cancel
        the run or leave it to the takeover."""
        run = self.runs.get(run_id)
        if (
            run is not None
            and worker is not None
            and run_id not in self.held
            and self.has_room(worker)
            and not self.done.is_set()
        ):
            self.events.subscribe(keys.done_channel(run_id))
            self.pause(worker, HELD_MAX_S, run_id)
            self.injected += 1
            message = self.rt.store.get(run.id, run.session_id).message
            if chaos_agents.UNJOURNALED_MARK in message:
                ending = "failed"
                self.rt.redis.sadd(chaos_agents.FAILING_KEY, message)
            else:
                ending = self.rng.choice(["cancelled", "taken over"])
                if ending == "cancelled":
                    self.rt.store.cancel(run.id, run.session_id)
            self.held[run_id] = ending
        release = chaos_agents.release_key(run_id)
        self.rt.redis.pipeline().rpush(release, "go").expire(release, 60).execute()

    def has_room(self, worker: ManagedProcess) -> bool:
        """At most half the workers are stopped: the others take their sessions over."""
        stopped = {p.process for p in self.paused}
        return worker not in stopped and len(stopped) < max(1, len(self.fleet.workers) // 2)

    def inject(self) -> bool:
        """Stop a random worker, unless one stopped at random still is (so stops at a
        commit find room too)."""
        candidates = [w for w in self.fleet.workers if self.has_room(w)]
        if not candidates or any(p.run_id is None for p in self.paused):
            return False
        self.pause(self.rng.choice(candidates), self.rng.uniform(*STOPPED_S))
        self.random_stops += 1
        return True

    def end(self) -> None:
        super().end()
        self.events.close()

    def detail(self) -> str:
        counts = collections.Counter(self.held.values())
        endings = ", ".join(f"{counts[e]} {e}" for e in ENDINGS)
        held = [self.runs[run_id] for run_id in self.held]
        states = [record.state if record else None for record in self.rt.records(held)]
        otherwise = sum(
            state is not ENDINGS[self.held[run.id]] for run, state in zip(held, states, strict=True)
        )
        return (
            f"{self.random_stops} at random moments; {len(held)} between answer and "
            f"commit ({endings}; {otherwise} ended otherwise)"
        )


class MemoryStallChaos(PauseChaos):
    """SIGSTOPs the DynamoDB server past the lease, one stall at a time. Less often
    than a worker fault: a stall holds up every worker's turn at once."""

    period_scale = SHARED_FAULT_SCALE

    def inject(self) -> bool:
        if self.paused or self.fleet.memory_server is None:
            return False
        self.pause(self.fleet.memory_server, self.rng.uniform(*STOPPED_S))
        return True


SQLITE_CHAOS: dict[str, type[Chaos]] = {
    "kill": KillChaos,
    "stop": StopChaos,
    "redis": RedisChaos,
}


# -- a phase ------------------------------------------------------------------------


def run_phase(
    rt: BenchRuntime,
    fleet: Fleet,
    mode: str,
    memory: str,
    size: Size,
    chaos_type: type[Chaos] | None,
    seed: int,
) -> Outcome:
    """Submit the workload round-robin, inject faults until it drains (or the drain
    times out), wait for the workers to go idle, verify memory."""
    rng = random.Random(seed)
    workload = []
    for t in range(size.turns):
        for s in range(size.sessions):
            mark = ""
            if mode == "stop" and rng.random() < size.hold_fraction:
                mark = f" {chaos_agents.HOLD_MARK}"
                if rng.random() < 1 / len(ENDINGS):  # its model is to fail on the takeover
                    mark += f" {chaos_agents.UNJOURNALED_MARK}"
            workload.append((f"{mode}-s{s}", f"{mode}-s{s} turn {t}{mark}"))
    exits_before = fleet.exits
    started = time.time()
    runs = rt.submit_all(workload)
    chaos = chaos_type(rt, fleet, size.period, seed, runs) if chaos_type else None
    if chaos:
        chaos.start()
    try:
        drained = drain(rt, runs, size.drain_timeout)
    except BaseException:
        rt.stopping.set()  # the chaos thread must not wait for a replacement worker
        raise
    finally:
        if chaos:
            chaos.done.set()
            chaos.join()
    if chaos and chaos.error:
        raise RuntimeError(f"the chaos thread failed: {chaos.error!r}") from chaos.error
    fleet.supervise()
    settled = rt.wait_idle(fleet.workers, SETTLE_S)
    records = rt.records(runs)
    outcome = verify(rt, mode, memory, runs, records)
    outcome.settled = settled
    outcome.faults = chaos.injected if chaos else 0
    outcome.detail = chaos.detail() if chaos else ""
    outcome.exits = fleet.exits - exits_before
    outcome.redispatched = sweeper_redispatches(rt, mode)
    finished = [r.finished_at for r in records if r and r.finished_at]
    if drained and finished:
        outcome.drain_s = max(finished) - started
    return outcome


def drain(rt: BenchRuntime, runs: Sequence[Run], timeout: float) -> bool:
    """Wait until every run is terminal (False on timeout), riding out Redis outages."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        try:
            return rt.wait_terminal(runs, max(0.0, remaining), interval=0.1)
        except REDIS_DOWN:
            if remaining <= 0:
                return False
            time.sleep(0.2)  # Redis is being restarted


def sweeper_redispatches(rt: BenchRuntime, mode: str) -> int:
    """How often the sweeper re-published an active run of this phase (from the
    workers' WARNING log lines, which name the session)."""
    count = 0
    for log in rt.directory.glob("w*.log"):
        for line in log.read_text(errors="replace").splitlines():
            if "re-dispatching stalled run" in line and f"{mode}-s" in line:
                count += 1
    return count


def verify(
    rt: BenchRuntime, mode: str, memory: str, runs: list[Run], records: list[RunRecord | None]
) -> Outcome:
    outcome = Outcome(mode, memory, turns=len(runs))
    by_session: dict[str, list[tuple[Run, RunRecord | None]]] = collections.defaultdict(list)
    for run, record in zip(runs, records, strict=True):
        by_session[run.session_id].append((run, record))
    for session_id, submitted in by_session.items():
        turn_ids = [turn_id for _content, turn_id in rt.user_messages(session_id)]
        counts = collections.Counter(turn_ids)
        outcome.duplicated += sum(n - 1 for n in counts.values() if n > 1)
        order = {run.id: i for i, (run, _record) in enumerate(submitted)}
        positions = [order.get(turn_id, -1) for turn_id in dict.fromkeys(turn_ids)]
        if positions != sorted(positions):
            outcome.reordered += 1
        for run, record in submitted:
            state = record.state if record else None
            outcome.states[state.value if state else "record missing"] += 1
            if record and record.deliveries > 1:
                outcome.taken_over += 1
            if state is None or (state is RunState.SUCCEEDED and not counts[run.id]):
                outcome.lost += 1
            elif not state.terminal:
                outcome.not_terminal += 1
            elif state is not RunState.SUCCEEDED and counts[run.id]:
                outcome.non_succeeded_in_memory += 1
    return outcome


# -- Redis durability cost --------------------------------------------------------


def submits_per_s(directory: Path, appendfsync: str, count: int, clients: int) -> float:
    """Producer submits/s against a fresh Redis with AOF and ``appendfsync``, from
    ``clients`` processes at once, each submitting ``count // clients`` runs."""
    process, url = start_redis(directory / appendfsync, append_only=True, appendfsync=appendfsync)
    each = count // clients
    start_at = time.time() + 1.0  # every client is set up by then
    try:
        with concurrent.futures.ProcessPoolExecutor(clients) as pool:
            done = [pool.submit(submit_runs, url, c, each, start_at) for c in range(clients)]
            return each * clients / (max(f.result() for f in done) - start_at)
    finally:
        process.stop()


def submit_runs(redis_url: str, client: int, count: int, start_at: float) -> float:
    """Submit ``count`` runs over 20 sessions from ``start_at`` on; return when done."""
    producer = Producer(settings=Settings(redis_url=redis_url), agents=[AGENT])
    producer.submit(f"fsync-{client}-warm-up", "hello", agent=AGENT)
    time.sleep(max(0.0, start_at - time.time()))
    for i in range(count):
        producer.submit(f"fsync-{client}-{i % 20}", f"turn {i}", agent=AGENT)
    return time.time()


def fsync_cost(count: int, client_counts: Sequence[int], rounds: int) -> list[tuple[object, ...]]:
    """Median submits/s of ``rounds`` rounds per policy, the order alternating by
    round, so load from elsewhere on the host hits both policies alike."""
    policies = ("everysec", "always")
    rows = []
    with tempfile.TemporaryDirectory(prefix="fence-bench-fsync-") as tmp:
        for clients in client_counts:
            samples: dict[str, list[float]] = {policy: [] for policy in policies}
            for round_ in range(rounds):
                for policy in policies[:: 1 if round_ % 2 == 0 else -1]:
                    directory = Path(tmp) / f"c{clients}-r{round_}"
                    samples[policy].append(submits_per_s(directory, policy, count, clients))
            everysec, always = (statistics.median(samples[p]) for p in policies)
            rows.append((clients, everysec, always, f"{always / everysec:.2f}x"))
    return rows


# -- the program ----------------------------------------------------------------------


def sqlite_phases(args: argparse.Namespace, size: Size, modes: list[str]) -> list[Outcome]:
    """Baseline, then ``kill`` / ``stop`` / ``redis``, on SQLite memory."""
    layout = WorkerLayout(args.workers, args.concurrency, args.pool)
    with BenchRuntime(
        latency=size.latency, env=RECOVERY_ENV, keep=args.keep, append_only=True
    ) as rt:
        fleet = Fleet(rt, layout)
        rt.warm_up(layout.slots)
        baseline = run_phase(rt, fleet, "baseline", "SQLite", size, None, args.seed)
        print(f"baseline (SQLite) drained in {baseline.drain_s:.1f} s", flush=True)
        outcomes = [baseline]
        for mode in modes:
            seed = args.seed + MODES.index(mode)
            outcome = run_phase(rt, fleet, mode, "SQLite", size, SQLITE_CHAOS[mode], seed)
            outcome.baseline_s = baseline.drain_s
            print(f"{mode}: {progress(outcome)}", flush=True)
            outcomes.append(outcome)
        fleet.kill_all()
    return outcomes


def dynamodb_phases(args: argparse.Namespace, size: Size) -> list[Outcome]:
    """Baseline, then ``memory-stall``, on DynamoDB memory (moto, its own process)."""
    layout = WorkerLayout(args.workers, args.concurrency, args.pool)
    with (
        tempfile.TemporaryDirectory(prefix="fence-bench-dynamodb-") as tmp,
        local_dynamodb(Path(tmp)) as dynamodb,
    ):
        env = {**RECOVERY_ENV, **dynamodb.env, "FENCE_MEMORY": dynamodb.memory_url}
        with BenchRuntime(latency=size.latency, env=env, keep=args.keep) as rt:
            fleet = Fleet(rt, layout, memory_server=dynamodb.process)
            rt.warm_up(layout.slots)
            baseline = run_phase(rt, fleet, "baseline", "DynamoDB", size, None, args.seed)
            print(f"baseline (DynamoDB) drained in {baseline.drain_s:.1f} s", flush=True)
            seed = args.seed + MODES.index("memory-stall")
            outcome = run_phase(rt, fleet, "memory-stall", "DynamoDB", size, MemoryStallChaos, seed)
            outcome.baseline_s = baseline.drain_s
            print(f"memory-stall: {progress(outcome)}", flush=True)
            fleet.kill_all()
    return [baseline, outcome]


def progress(o: Outcome) -> str:
    return (
        f"drained in {o.drain_s:.1f} s, {o.faults} faults, lost/duplicated/reordered/"
        f"non-succeeded in memory/not terminal = {'/'.join(map(str, o.violations))}"
    )


def main(args: argparse.Namespace) -> list[Target]:
    modes = [m for m in MODES if m in (args.mode or MODES)]
    if args.smoke:
        size = Size(8, 5, (0.5, 1.0), 0.1, 0.2, 120)
    else:
        turns = args.sessions * args.turns
        drain_timeout = args.drain_timeout or turns * (args.latency + 0.05) + 120
        size = Size(
            args.sessions,
            args.turns,
            (args.min_period, args.max_period),
            args.latency,
            args.hold_fraction,
            drain_timeout,
        )
    outcomes: list[Outcome] = []
    sqlite_modes = [m for m in modes if m != "memory-stall"]
    if sqlite_modes:
        outcomes += sqlite_phases(args, size, sqlite_modes)
    if "memory-stall" in modes:
        outcomes += dynamodb_phases(args, size)
    count, clients, rounds = (200, [1], 1) if args.smoke else (2000, [1, 4], 3)
    fsync_rows = fsync_cost(count, clients, rounds) if "redis" in modes else []
    print_report(args, size, outcomes, fsync_rows, rounds)
    return targets(outcomes)


def targets(outcomes: list[Outcome]) -> list[Target]:
    found = []
    for o in outcomes:
        measured = "/".join(map(str, o.violations))
        found.append(
            Target(
                f"{o.mode} ({o.memory}): lost/duplicated/reordered/non-succeeded in "
                "memory/not terminal",
                measured,
                "0/0/0/0/0",
                not any(o.violations),
            )
        )
    return found


def print_report(
    args: argparse.Namespace,
    size: Size,
    outcomes: list[Outcome],
    fsync_rows: list[tuple[object, ...]],
    fsync_rounds: int,
) -> None:
    layout = WorkerLayout(args.workers, args.concurrency, args.pool)
    states = sorted({s for o in outcomes for s in o.states})
    notes = [f"{o.mode}: {o.detail}" for o in outcomes if o.detail]
    notes += [
        f"{o.mode}: workers still busy {SETTLE_S:g} s after the phase"
        for o in outcomes
        if not o.settled
    ]
    sections = [
        (
            "Faults",
            markdown_table(
                [
                    "mode",
                    "memory",
                    "turns",
                    "faults",
                    "lost",
                    "duplicated",
                    "reordered sessions",
                    "non-succeeded runs in memory",
                    "not terminal",
                    "drain s",
                    "vs baseline",
                    "exits restarted",
                    "runs taken over",
                    "sweeper re-dispatches",
                ],
                [
                    (
                        o.mode,
                        o.memory,
                        o.turns,
                        o.faults,
                        o.lost,
                        o.duplicated,
                        o.reordered,
                        o.non_succeeded_in_memory,
                        o.not_terminal,
                        o.drain_s,
                        "1.00x" if o.mode == "baseline" else f"{o.drain_s / o.baseline_s:.2f}x",
                        o.exits,
                        o.taken_over,
                        o.redispatched,
                    )
                    for o in outcomes
                ],
            ),
        ),
        (
            "Runs by final state",
            markdown_table(
                ["mode", "memory", *states],
                [(o.mode, o.memory, *(o.states[s] for s in states)) for o in outcomes],
            ),
        ),
    ]
    if fsync_rows:
        sections.append(
            (
                "Redis AOF fsync policy: producer submits/s (same host, same disk; median of "
                f"{fsync_rounds} rounds)",
                markdown_table(
                    ["client processes", "everysec", "always", "always / everysec"], fsync_rows
                ),
            )
        )
    sections.append(("Targets", targets_table(targets(outcomes))))
    turns = size.sessions * size.turns
    report(
        f"Chaos: {turns:,} turns per phase under worker, Redis and memory faults",
        [
            f"{size.sessions} sessions x {size.turns} turns = {turns:,} turns per phase, "
            "submitted round-robin at its start; drain timeout "
            f"{size.drain_timeout:g} s",
            f"workers: {layout.describe()}; celery beat runs the sweeper; "
            f"EchoModel(latency={size.latency}), private redis-server (AOF, appendfsync "
            "always, for the SQLite phases)",
            f"faults every U({size.period[0]:g}, {size.period[1]:g}) s (Redis crashes and "
            f"memory stalls {SHARED_FAULT_SCALE}x less often); SIGSTOPs last "
            f"U({STOPPED_S[0]:g}, {STOPPED_S[1]:g}) s; Redis stays down "
            f"U({REDIS_DOWN_S[0]:g}, {REDIS_DOWN_S[1]:g}) s; "
            f"{size.hold_fraction:.0%} of the stop phase's turns offer a stop at their commit",
            "recovery settings: " + " ".join(f"{k}={v}" for k, v in RECOVERY_ENV.items()),
            "drain = first submit -> last finished_at; vs baseline = drain / the "
            "fault-free drain on the same memory; runs taken over = deliveries > 1",
            *notes,
        ],
        sections,
    )


def parser() -> argparse.ArgumentParser:
    p = base_parser(__doc__)
    p.add_argument(
        "--mode", action="append", choices=MODES, help="fault mode to run (repeat; default all)"
    )
    p.add_argument("--sessions", type=int, default=40)
    p.add_argument("--turns", type=int, default=15, help="turns per session")
    p.add_argument("--workers", type=int, default=4, help="worker processes")
    p.add_argument("--concurrency", type=int, default=1, help="slots per worker")
    p.add_argument("--pool", default="prefork", choices=["prefork", "threads"])
    p.add_argument("--latency", type=float, default=0.05, help="EchoModel latency, seconds")
    p.add_argument("--min-period", type=float, default=2.0, help="seconds between faults, min")
    p.add_argument("--max-period", type=float, default=4.0, help="seconds between faults, max")
    p.add_argument(
        "--hold-fraction",
        type=float,
        default=0.05,
        help="share of the stop phase's turns that offer a stop at their commit",
    )
    p.add_argument("--drain-timeout", type=float, help="seconds a phase may take to drain")
    p.add_argument("--seed", type=int, default=7)
    return p


if __name__ == "__main__":
    sys.exit(run_program(main, parser()))
