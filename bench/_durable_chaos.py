"""The durable-turn chaos run: SIGKILL workers inside chosen steps of turns, then count
what ran again. ``tests/runtime/test_durable_chaos.py`` asserts on it and
``bench/durable_turns.py`` reports what a kill costs.

Turns of the ``durable`` agent (``tests/runtime/durable_agents.py``: four tool calls one
after another, then the answer) are submitted round-robin over the sessions. A killer
thread listens to the steps as they start and, every ``turns / (kills + 2)`` started
runs, aims at the next step of a shuffled cycle over all of them (model call 1, tool
call 1, ..., model call 5): when a worker starts that step, it waits a random part of a
step (so the kill lands inside the step, or just after it: at the journal write, at
the commit), SIGKILLs the worker's process group and starts a replacement. For each
kill it notes the step in flight (the agent's ``IN_FLIGHT`` marker) and the runs the
worker held (``running`` with that worker in the run record). A run is killed at most
``MAX_KILLS_PER_RUN`` times, under ``FENCE_MAX_DELIVERIES``.
"""

from __future__ import annotations

import collections
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from fence.memory.base import BaseMemory
from fence.messages import Message, Role
from fence.runs import RunState, keys
from producer import Producer, Run
from producer.stack.processes import ManagedProcess
from tests.runtime import durable_agents as agent
from tests.runtime.durable_agents import ANSWER, STEP_S, STEPS, TOOL_CALLS

AGENT = "durable"
MAX_KILLS_PER_RUN = 2
KILL_WINDOW_S = 1.25 * STEP_S
"""A kill lands U(0, this) after its step started: inside it, or just after."""
FRESH_S = STEP_S / 4
"""A step heard of later than this after it started is not aimed at: it may be over."""
LABELS = tuple(
    label
    for step in range(1, STEPS + 1)
    for label in ((f"model {step}", f"tool {step}") if step <= TOOL_CALLS else (f"model {step}",))
)
"""Every step of a turn, as the killer aims at them."""


@dataclass(frozen=True)
class Size:
    sessions: int
    turns: int
    """Turns per session."""
    workers: int
    kills: int

    @property
    def runs(self) -> int:
        return self.sessions * self.turns


@dataclass(frozen=True)
class Kill:
    worker: str
    aimed_at: str
    """The step (``LABELS``) the kill was aimed at."""
    in_flight: str | None
    """The step the worker was in when it died (``<run> model <step>`` or ``<run> tool
    <key>``), None between steps."""
    held: tuple[str, ...]
    """The runs the worker held the lease of."""


@dataclass
class Outcome:
    """What a chaos run did, and what the control Redis and memory say about it."""

    runs: list[Run]
    prompts: dict[str, str]
    """Run id -> its message."""
    states: dict[str, str]
    """Run id -> its final state."""
    kills: list[Kill]
    model_calls: collections.Counter[tuple[str, int]]
    executions: collections.Counter[str]
    effects: dict[str, list[str]]
    memory: dict[str, list[Message]]
    """Each session's messages, in memory order."""
    drain_s: float
    journaled: bool
    kills_at: collections.Counter[str] = field(init=False)

    def __post_init__(self) -> None:
        self.kills_at = collections.Counter(k.in_flight for k in self.kills if k.in_flight)

    def hits(self, run_id: str) -> int:
        """Kills that hit the run: its worker died holding it."""
        return sum(run_id in k.held for k in self.kills)

    def tool_kills(self, key: str) -> int:
        """Kills that landed in the tool call with idempotency ``key``."""
        return self.kills_at[f"{key.split(':')[0]} tool {key}"]

    def not_succeeded(self) -> dict[str, str]:
        return {run_id: s for run_id, s in self.states.items() if s != RunState.SUCCEEDED}

    def misordered_sessions(self) -> dict[str, list[str | None]]:
        """Sessions whose memory does not hold their runs' turns once each, in order:
        the turn ids of their user messages."""
        submitted: dict[str, list[str | None]] = collections.defaultdict(list)
        for run in self.runs:
            submitted[run.session_id].append(run.id)
        found = {}
        for session_id, messages in self.memory.items():
            turns = [m.turn_id for m in messages if m.role is Role.USER]
            if turns != submitted[session_id]:
                found[session_id] = turns
        return found

    def malformed_turns(self) -> dict[str, list[tuple[str, str]]]:
        """Turns in memory that are not the prompt, then each charge and its receipt, then
        the answer: run id -> (role, content) of its messages."""
        found = {}
        for run in self.runs:
            turn = [
                (m.role.value, m.content)
                for m in self.memory[run.session_id]
                if m.turn_id == run.id
            ]
            expected = [(Role.USER.value, self.prompts[run.id])]
            for n in range(1, TOOL_CALLS + 1):
                expected += [(Role.ASSISTANT.value, ""), (Role.TOOL.value, receipt(run.id, n))]
            expected.append((Role.ASSISTANT.value, ANSWER))
            if turn != expected:
                found[run.id] = turn
        return found

    def wrong_effects(self) -> dict[str, list[str]]:
        """Runs whose charges were not each of their four keys applied once, in order."""
        return {
            run.id: self.effects[run.id]
            for run in self.runs
            if self.effects[run.id] != [key(run.id, n) for n in range(1, TOOL_CALLS + 1)]
        }

    def model_calls_over_bound(self) -> dict[str, tuple[int, int]]:
        """Runs with more model calls than ``STEPS`` + the kills that hit them:
        (calls, bound)."""
        found = {}
        for run in self.runs:
            calls = sum(self.model_calls[run.id, step] for step in range(1, STEPS + 1))
            if calls > STEPS + self.hits(run.id):
                found[run.id] = (calls, STEPS + self.hits(run.id))
        return found

    def model_calls_repeated_unkilled(self) -> dict[tuple[str, int], int]:
        """Model steps asked more than once beyond the kills that landed in them."""
        return {
            (run_id, step): calls
            for (run_id, step), calls in self.model_calls.items()
            if calls - 1 > self.kills_at[f"{run_id} model {step}"]
        }

    def completed_tools_re_executed(self) -> dict[str, int]:
        """Tool calls executed again though no kill landed in them (so their result was
        had, and journaled): key -> executions."""
        return {k: n for k, n in self.executions.items() if n - 1 > self.tool_kills(k)}

    # what a kill costs, over the whole run

    def repeated_model_calls(self) -> int:
        return sum(self.model_calls.values()) - STEPS * len(self.runs)

    def repeated_executions(self) -> int:
        return sum(self.executions.values()) - TOOL_CALLS * len(self.runs)

    def completed_tool_repeats(self) -> int:
        """Executions of tool calls no kill landed in, beyond the first."""
        return sum(max(0, n - 1 - self.tool_kills(k)) for k, n in self.executions.items())

    def kills_in_steps(self) -> collections.Counter[str]:
        """Kills by what they landed in: model, tool, or between steps."""
        return collections.Counter(
            k.in_flight.split()[1] if k.in_flight else "between steps" for k in self.kills
        )


def key(run_id: str, step: int) -> str:
    """The idempotency key of the tool call of ``step`` (the only call of its step)."""
    return f"{run_id}:{step}:0"


def receipt(run_id: str, step: int) -> str:
    return agent.receipt(step, key(run_id, step))


class Killer(threading.Thread):
    """SIGKILLs workers inside the steps it aims at (see the module docstring)."""

    def __init__(
        self,
        fleet: list[ManagedProcess],
        start_worker: Callable[[], ManagedProcess],
        producer: Producer,
        control: redis.Redis,
        runs: list[Run],
        kills: int,
        seed: int,
    ) -> None:
        super().__init__(name="durable-killer", daemon=True)
        self.fleet, self.start_worker = fleet, start_worker
        self.store, self.control = producer.store, control
        self.runs, self.planned = runs, kills
        self.rng = random.Random(seed)
        self.kills: list[Kill] = []
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.replacing: list[threading.Thread] = []
        self.steps = control.pubsub(ignore_subscribe_messages=True)
        self.steps.subscribe(agent.ENTERED)  # before the first turn is submitted
        self.steps.get_message(timeout=1)  # the subscription's confirmation

    def run(self) -> None:
        try:
            self._kill_all()
        except BaseException as error:  # reported by the driver
            self.error = error
        finally:
            self.steps.close()

    def _kill_all(self) -> None:
        started: set[str] = set()
        spacing = len(self.runs) / (self.planned + 2)  # the last is aimed before the end
        aims: list[str] = []
        hits: collections.Counter[str] = collections.Counter()
        while len(self.kills) < self.planned and not self.done.is_set():
            message = self.steps.get_message(timeout=0.2)
            if message is None:
                continue
            group, at, run_id, kind, step = message["data"].split()
            started.add(run_id)
            if len(started) < spacing * (len(self.kills) + 1):
                continue
            if not aims:
                aims = self.rng.sample(LABELS, len(LABELS))
            worker = next((w for w in self.fleet if w.process.pid == int(group)), None)
            if (
                f"{kind} {step}" != aims[0]
                or worker is None
                or time.time() - float(at) > FRESH_S
                or hits[run_id] >= MAX_KILLS_PER_RUN
            ):
                continue
            time.sleep(max(0.0, float(at) + self.rng.uniform(0, KILL_WINDOW_S) - time.time()))
            kill = self._kill(worker, aims.pop(0))
            hits.update(kill.held)
            self.kills.append(kill)
        for thread in self.replacing:
            thread.join()

    def _kill(self, worker: ManagedProcess, aimed_at: str) -> Kill:
        worker.kill()  # SIGKILL to the group, then reaped: nothing more of it runs
        self.fleet.remove(worker)
        replacing = threading.Thread(target=self._replace)
        replacing.start()  # while it boots, the killer goes on
        self.replacing.append(replacing)
        group = str(worker.process.pid)
        in_flight = self.control.hget(agent.IN_FLIGHT, group)
        self.control.hdel(agent.IN_FLIGHT, group)
        pipe = self.store.redis.pipeline(transaction=False)
        for run in self.runs:
            pipe.hmget(keys.run(run.session_id, run.id), "state", "worker")
        held = tuple(
            run.id
            for run, (state, host) in zip(self.runs, pipe.execute(), strict=True)
            if state == RunState.RUNNING and (host or "").split("@")[0] == worker.name
        )
        return Kill(worker.name, aimed_at, in_flight, held)

    def _replace(self) -> None:
        try:
            self.fleet.append(self.start_worker())
        except BaseException as error:  # reported by the driver
            self.error = error


def run_chaos(
    fleet: list[ManagedProcess],
    start_worker: Callable[[], ManagedProcess],
    producer: Producer,
    open_memory: Callable[[str], BaseMemory],
    control: redis.Redis,
    size: Size,
    *,
    seed: int,
    tag: str = "durable",
    journaled: bool = True,
    timeout: float = 120,
) -> Outcome:
    """Submit ``size`` turns, kill ``fleet``'s workers ``size.kills`` times as they run
    (``start_worker`` starts a replacement and returns once it is ready; ``fleet`` is
    kept up to date), wait for every run to end, and read what happened. Needs the
    sweeper (``celery beat``) running, to re-dispatch the killed workers' runs."""
    control.delete(agent.MODEL_CALLS, agent.EXECUTIONS, agent.RECEIPTS, agent.IN_FLIGHT)
    runs: list[Run] = []
    prompts: dict[str, str] = {}
    killer = Killer(fleet, start_worker, producer, control, runs, size.kills, seed)
    suffix = "" if journaled else f" {agent.UNJOURNALED}"
    started = time.monotonic()
    for turn in range(size.turns):
        for session in range(size.sessions):
            session_id = f"{tag}-s{session}"
            prompt = f"{session_id} turn {turn}{suffix}"
            runs.append(producer.submit(session_id, prompt, AGENT))
            prompts[runs[-1].id] = prompt
    killer.start()
    try:
        wait_ended(producer, runs, timeout)
    finally:
        killer.done.set()
        killer.join()
    drain_s = time.monotonic() - started
    if killer.error is not None:
        raise RuntimeError(f"the killer thread failed: {killer.error!r}") from killer.error
    return read_outcome(
        runs, prompts, killer.kills, producer, open_memory, control, drain_s, journaled
    )


def wait_ended(producer: Producer, runs: list[Run], timeout: float) -> None:
    """Until every run ended: each session's last, then each (a session runs in order)."""
    deadline = time.monotonic() + timeout
    last = {run.session_id: run for run in runs}
    for run in [*last.values(), *runs]:
        producer.store.wait(run.id, max(0.0, deadline - time.monotonic()), run.session_id)


def read_outcome(
    runs: list[Run],
    prompts: dict[str, str],
    kills: list[Kill],
    producer: Producer,
    open_memory: Callable[[str], BaseMemory],
    control: redis.Redis,
    drain_s: float,
    journaled: bool,
) -> Outcome:
    states = {run.id: producer.store.get(run.id, run.session_id).state.value for run in runs}
    model_calls: collections.Counter[tuple[str, int]] = collections.Counter()
    for name, calls in control.hgetall(agent.MODEL_CALLS).items():
        run_id, step = name.rsplit(":", 1)
        model_calls[run_id, int(step)] = int(calls)
    executions = collections.Counter(
        {k: int(n) for k, n in control.hgetall(agent.EXECUTIONS).items()}
    )
    pipe = control.pipeline(transaction=False)
    for run in runs:
        pipe.lrange(agent.effects(run.id), 0, -1)
    effects = {run.id: charged for run, charged in zip(runs, pipe.execute(), strict=True)}
    memory = {
        session_id: open_memory(session_id).get_messages()
        for session_id in dict.fromkeys(run.session_id for run in runs)
    }
    return Outcome(
        runs, prompts, states, kills, model_calls, executions, effects, memory, drain_s, journaled
    )
