"""``fence demo``: drive traffic at a running stack, then prove every history is right.

Many sessions run at once, each with several turns submitted back to back
(so they queue in the session's mailbox), from ``concurrency`` client
threads. When every run has finished, each session's history is read back
from the shared memory and checked against what was submitted: every turn
present exactly once, in submission order, each run succeeded. The summary
table gives turn latency (accepted to finished, so it includes the wait
behind the session's earlier turns) and throughput.
"""

from __future__ import annotations

import io
import math
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TextIO

import rich.progress
from rich import box
from rich.console import Console
from rich.table import Table

from fence import console
from fence.memory.base import BaseMemory
from fence.messages import Message, Role
from fence.runs import RunRecord, RunState, RunTimeout
from fence.validation import clip
from producer.client import Producer

PHRASES = (
    "Hi, where is my order?",
    "It was order #98765.",
    "Can you change the delivery address?",
    "Thanks, what happens next?",
    "Please summarise what we discussed.",
    "One more question about returns.",
)


@dataclass(frozen=True)
class Submitted:
    """One run the demo submitted, in submission order within its session."""

    session_id: str
    run_id: str
    text: str


@dataclass
class DemoReport:
    """What the demo did and what the history check found."""

    sessions: int
    turns: int
    ok: int = 0
    failed: int = 0
    latencies_s: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    verified_sessions: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems and self.failed == 0 and self.ok == self.turns

    @property
    def throughput(self) -> float:
        """Finished turns per second of wall time (first submit to last result)."""
        return self.ok / self.wall_s if self.wall_s > 0 else 0.0

    def percentile(self, q: float) -> float | None:
        """Nearest-rank percentile of turn latency, in seconds."""
        if not self.latencies_s:
            return None
        ordered = sorted(self.latencies_s)
        rank = max(1, math.ceil(q / 100 * len(ordered)))
        return ordered[min(rank, len(ordered)) - 1]

    def as_dict(self) -> dict[str, Any]:
        return {
            "sessions": self.sessions,
            "turns": self.turns,
            "ok": self.ok,
            "failed": self.failed,
            "p50_latency_s": self.percentile(50),
            "p95_latency_s": self.percentile(95),
            "throughput_per_s": round(self.throughput, 2),
            "wall_s": round(self.wall_s, 3),
            "verified_sessions": self.verified_sessions,
            "problems": self.problems,
            "passed": self.passed,
        }


class Progress:
    """How far the demo is: rich's live bar on a terminal; elsewhere (a log, CI, a pipe)
    a plain line at the first finished turn and at each further tenth. ``shown=False``
    prints nothing. Use it as a context manager: the live bar ends with the block."""

    def __init__(self, total: int, out: TextIO | None = None, *, shown: bool = True) -> None:
        self.total = max(total, 1)
        self.out = out or sys.stdout
        self.shown = shown
        self.ok = 0
        self.failed = 0
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._last_tenth = -1
        terminal = Console(file=self.out)
        self._bar = rich.progress.Progress(
            rich.progress.BarColumn(),
            rich.progress.TextColumn("{task.description}", markup=False),
            console=terminal,
            redirect_stdout=False,  # other threads print too (fence stack's log lines)
            redirect_stderr=False,
            disable=not (shown and terminal.is_terminal and not terminal.is_dumb_terminal),
        )
        self._task = self._bar.add_task(self.line(), total=self.total)

    def __enter__(self) -> Progress:
        self._bar.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._bar.stop()

    def line(self) -> str:
        done = self.ok + self.failed
        rate = done / max(time.monotonic() - self._start, 1e-9)
        return f"{done}/{self.total} turns  ok {self.ok}  failed {self.failed}  {rate:.0f}/s"

    def advance(self, succeeded: bool) -> None:
        with self._lock:
            if succeeded:
                self.ok += 1
            else:
                self.failed += 1
            done = self.ok + self.failed
            if not self._bar.disable:
                self._bar.update(self._task, completed=done, description=self.line())
            elif self.shown and (tenth := 10 * done // self.total) != self._last_tenth:
                self._last_tenth = tenth
                console.say(self.line(), self.out)


def verify_history(messages: Sequence[Message], expected: Sequence[Submitted]) -> list[str]:
    """Problems with one session's history: missing, duplicated, reordered or altered turns.

    A turn is the run of consecutive messages with the same ``turn_id``; each
    must hold exactly one user message, the text that was submitted.
    """
    if not expected:
        return []
    session = expected[0].session_id
    problems: list[str] = []
    order: list[str] = []
    user_texts: dict[str, list[str]] = {}
    last_seq = 0
    for message in messages:
        if message.seq is not None:
            if message.seq <= last_seq:
                problems.append(f"{session}: seq {message.seq} after {last_seq}")
            last_seq = message.seq
        if message.turn_id is None:
            continue
        if not order or order[-1] != message.turn_id:
            if message.turn_id in order:
                problems.append(f"{session}: turn {message.turn_id} appears twice")
            order.append(message.turn_id)
        if message.role is Role.USER:
            user_texts.setdefault(message.turn_id, []).append(message.content)
    wanted = [item.run_id for item in expected]
    missing = [run_id for run_id in wanted if run_id not in order]
    if missing:
        problems.append(f"{session}: {len(missing)} turn(s) missing from memory: {missing[:3]}")
    unexpected = [turn for turn in order if turn not in wanted]
    if unexpected:
        problems.append(f"{session}: unexpected turn(s) in memory: {unexpected[:3]}")
    present = [turn for turn in dict.fromkeys(order) if turn in wanted]
    if present != [run_id for run_id in wanted if run_id in present]:
        problems.append(f"{session}: turns are not in submission order")
    for item in expected:
        texts = user_texts.get(item.run_id)
        if item.run_id in order and texts != [item.text]:
            problems.append(
                f"{session}: turn {item.run_id} holds user message(s) {clip(repr(texts), 120)}, "
                f"expected exactly {item.text!r}"
            )
    return problems


def run_demo(
    producer: Producer,
    open_memory: Callable[[str], BaseMemory],
    *,
    sessions: int = 20,
    turns: int = 5,
    concurrency: int = 8,
    agent: str | None = None,
    timeout: float = 120.0,
    out: TextIO | None = None,
    progress: bool = True,
) -> DemoReport:
    """Submit ``sessions`` x ``turns`` runs from ``concurrency`` threads, wait for all,
    then verify every session's history. Never raises for a failed run: the
    report says what went wrong."""
    for name, value in (("sessions", sessions), ("turns", turns), ("concurrency", concurrency)):
        if value < 1:
            raise ValueError(f"{name}: must be at least 1 (got {value})")
    prefix = f"demo-{uuid.uuid4().hex[:8]}"
    session_ids = [f"{prefix}-{index:03d}" for index in range(1, sessions + 1)]
    report = DemoReport(sessions=sessions, turns=sessions * turns)
    bar = Progress(report.turns, out, shown=progress)
    deadline = time.monotonic() + timeout
    submitted: dict[str, list[Submitted]] = {}
    records: dict[str, RunRecord | str] = {}
    lock = threading.Lock()

    def drive(index: int, session_id: str) -> None:
        runs: list[Submitted] = []
        for turn in range(1, turns + 1):
            text = f"{session_id} turn {turn}: {PHRASES[(index + turn) % len(PHRASES)]}"
            run = producer.submit(session_id, text, agent=agent)
            runs.append(Submitted(session_id, run.id, text))
        with lock:
            submitted[session_id] = runs
        for item in runs:
            try:
                outcome: RunRecord | str = producer.store.wait(
                    item.run_id, max(deadline - time.monotonic(), 0.001)
                )
            except RunTimeout as error:
                outcome = str(error)
            with lock:
                records[item.run_id] = outcome
            bar.advance(_succeeded(outcome))

    started = time.monotonic()
    with bar, ThreadPoolExecutor(concurrency, thread_name_prefix="fence-demo") as pool:
        futures = [pool.submit(drive, i, sid) for i, sid in enumerate(session_ids)]
        for future in futures:
            error = future.exception()
            if error is not None:
                report.problems.append(f"client error: {type(error).__name__}: {error}")
    report.wall_s = time.monotonic() - started
    for session_id in session_ids:
        check_session(report, submitted.get(session_id, []), records, open_memory)
    return report


def _succeeded(outcome: RunRecord | str) -> bool:
    return isinstance(outcome, RunRecord) and outcome.state is RunState.SUCCEEDED


def check_session(
    report: DemoReport,
    expected: Sequence[Submitted],
    outcomes: Mapping[str, RunRecord | str],
    open_memory: Callable[[str], BaseMemory],
) -> None:
    """Count one session's runs into ``report`` and check its history against them;
    ``outcomes`` holds each finished run's record, or why it has none."""
    if not expected:
        return
    session_id = expected[0].session_id
    problems: list[str] = []
    for item in expected:
        outcome = outcomes.get(item.run_id, "never finished")
        if isinstance(outcome, RunRecord) and _succeeded(outcome):
            report.ok += 1
            if outcome.finished_at is not None:
                report.latencies_s.append(outcome.finished_at - outcome.accepted_at)
            continue
        report.failed += 1
        if isinstance(outcome, RunRecord):
            detail = f"{outcome.state.value}: {outcome.error or 'no error recorded'}"
        else:
            detail = outcome
        problems.append(f"{session_id}: run {item.run_id} {detail}")
    problems += verify_history(open_memory(session_id).get_messages(), expected)
    if not problems:
        report.verified_sessions += 1
    report.problems += problems


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


SUMMARY_COLUMNS = ("sessions", "turns", "ok", "failed", "p50 latency", "p95 latency", "throughput")
PROBLEMS_SHOWN = 20


def format_summary(report: DemoReport) -> str:
    """The summary table and the verdict of the history check."""
    table = Table(box=box.ASCII)
    for name in SUMMARY_COLUMNS:
        table.add_column(name, justify="right")
    table.add_row(
        str(report.sessions),
        str(report.turns),
        str(report.ok),
        str(report.failed),
        _ms(report.percentile(50)),
        _ms(report.percentile(95)),
        f"{report.throughput:.1f} turns/s",
    )
    lines = [
        plain_text(table),
        f"latency = accepted -> finished (includes queueing behind the session's earlier "
        f"turns); wall time {report.wall_s:.2f} s",
    ]
    if report.passed:
        lines.append(
            f"history check: OK - {report.verified_sessions}/{report.sessions} sessions hold "
            "every turn exactly once, in submission order"
        )
    else:
        lines.append(
            f"history check: FAILED - {report.verified_sessions}/{report.sessions} sessions "
            f"verified, {len(report.problems)} problem(s):"
        )
        lines += [f"  - {problem}" for problem in report.problems[:PROBLEMS_SHOWN]]
        if len(report.problems) > PROBLEMS_SHOWN:
            lines.append(f"  ... and {len(report.problems) - PROBLEMS_SHOWN} more")
    return "\n".join(lines)


def plain_text(renderable: Any) -> str:
    """A rich renderable as plain text at its natural width: no colour, no wrapping."""
    text = Console(file=io.StringIO(), width=10_000, color_system=None, markup=False)
    with text.capture() as captured:
        text.print(renderable)
    return captured.get().rstrip("\n")
