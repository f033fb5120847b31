"""The demo's history check catches every way a history can be wrong."""

from __future__ import annotations

import io

from fence.messages import Message
from producer.demo_traffic import DemoReport, Progress, Submitted, format_summary, verify_history

SUBMITTED = [Submitted("s", f"run{i}", f"turn {i}") for i in (1, 2, 3)]


def turn(run_id: str, text: str, seq: int) -> list[Message]:
    return [
        Message(role="user", content=text, seq=seq, turn_id=run_id),
        Message(role="assistant", content=f"re: {text}", seq=seq + 1, turn_id=run_id),
    ]


def history(*turns: tuple[str, str]) -> list[Message]:
    messages: list[Message] = []
    for run_id, text in turns:
        messages += turn(run_id, text, len(messages) + 1)
    return messages


def test_a_correct_history_has_no_problems():
    messages = history(("run1", "turn 1"), ("run2", "turn 2"), ("run3", "turn 3"))
    assert verify_history(messages, SUBMITTED) == []


def test_a_duplicated_turn_is_reported():
    messages = history(
        ("run1", "turn 1"), ("run2", "turn 2"), ("run1", "turn 1"), ("run3", "turn 3")
    )
    assert verify_history(messages, SUBMITTED) == [
        "s: turn run1 appears twice",
        "s: turn run1 holds user message(s) ['turn 1', 'turn 1'], expected exactly 'turn 1'",
    ]


def test_a_reordered_history_is_reported():
    messages = history(("run2", "turn 2"), ("run1", "turn 1"), ("run3", "turn 3"))
    assert verify_history(messages, SUBMITTED) == ["s: turns are not in submission order"]


def test_a_missing_turn_is_reported():
    messages = history(("run1", "turn 1"), ("run3", "turn 3"))
    assert verify_history(messages, SUBMITTED) == ["s: 1 turn(s) missing from memory: ['run2']"]


def test_an_altered_or_doubled_user_message_is_reported():
    messages = history(("run1", "turn 1"), ("run2", "turn two"), ("run3", "turn 3"))
    doubled = history(("run1", "turn 1"), ("run2", "turn 2"), ("run3", "turn 3"))
    doubled.insert(1, Message(role="user", content="turn 1", seq=1, turn_id="run1"))
    assert verify_history(messages, SUBMITTED) == [
        "s: turn run2 holds user message(s) ['turn two'], expected exactly 'turn 2'"
    ]
    problems = verify_history(doubled, SUBMITTED)
    assert "s: seq 1 after 1" in problems
    assert any("turn run1 holds user message(s) ['turn 1', 'turn 1']" in p for p in problems)


def test_summary_reports_percentiles_throughput_and_the_verdict():
    report = DemoReport(sessions=2, turns=4, ok=4, wall_s=2.0, verified_sessions=2)
    report.latencies_s = [0.010, 0.020, 0.030, 0.400]

    summary = format_summary(report)

    assert report.percentile(50) == 0.020 and report.percentile(95) == 0.400
    assert "20.0 ms" in summary and "400.0 ms" in summary and "2.0 turns/s" in summary
    assert "history check: OK - 2/2 sessions" in summary
    report.problems.append("s: turns are not in submission order")
    assert "history check: FAILED - 2/2 sessions verified, 1 problem(s):" in format_summary(report)


def test_progress_prints_a_line_per_tenth_when_not_a_terminal():
    out = io.StringIO()
    progress = Progress(20, out)
    for index in range(20):
        progress.advance(succeeded=index != 5)
    lines = out.getvalue().splitlines()
    assert len(lines) == 11  # the first turn, then every 10%
    assert lines[-1].startswith("20/20 turns  ok 19  failed 1  ")


def test_progress_is_one_live_bar_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Terminal()
    with Progress(20, out) as progress:
        for _ in range(20):
            progress.advance(succeeded=True)
    drawn = out.getvalue()
    assert "20/20 turns  ok 20  failed 0" in drawn
    assert "\n2/20 turns" not in drawn  # redrawn in place, not a line per tenth


def test_progress_not_shown_prints_nothing():
    out = io.StringIO()
    with Progress(3, out, shown=False) as progress:
        for _ in range(3):
            progress.advance(succeeded=True)
    assert out.getvalue() == ""
