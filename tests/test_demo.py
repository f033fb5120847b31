"""``python -m fence.demo``, the command ``make run`` runs, as a user would run it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from fence.memory import SQLiteMemory
from fence.messages import Role

REPO = Path(__file__).resolve().parent.parent


def run_demo(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fence.demo", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def sections(output: str) -> dict[str, str]:
    """The printed conversation of each session, by session id."""
    parts = re.split(r"^== session (\S+) .*==$", output, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_the_demo_prints_every_sessions_history_as_stored(tmp_path):
    db = tmp_path / "out" / "demo.db"

    done = run_demo("--db", str(db), "--sessions", "2", cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    printed = sections(done.stdout)
    assert list(printed) == ["customer-1", "customer-2", "team-notes"]
    for session_id, text in printed.items():
        stored = SQLiteMemory(db, session_id).get_messages()
        assert len(stored) >= 6
        position = 0
        for message in stored:
            shown = message.tool_calls[0].name if message.tool_calls else message.content
            found = text.find(shown, position)
            assert found >= 0, f"{session_id}: {shown!r} missing or out of order"
            position = found + len(shown)
    summary = done.stdout.strip().splitlines()[-1]
    assert summary.startswith("3 sessions,")


def test_the_demo_shows_memory_at_work(tmp_path):
    db = tmp_path / "demo.db"

    assert run_demo("--db", str(db), cwd=tmp_path).returncode == 0

    # The customer who came back was answered with the whole earlier conversation.
    returning = SQLiteMemory(db, "customer-1").get_messages()
    assert returning[-4].content.startswith("I'm back")
    assert returning[-1].content.startswith(f"I was sent {len(returning) - 1} messages.")
    # Two agents wrote to the shared session, each seeing the other's turns.
    team = SQLiteMemory(db, "team-notes").get_messages()
    assert {m.meta.get("agent") for m in team if m.role is Role.ASSISTANT} == {"support", "notes"}
    # Tools ran: a result, and an error returned to the model rather than raised.
    results = [m.content for m in returning if m.role is Role.TOOL]
    assert any('"status"' in r for r in results) and any(r.startswith("error:") for r in results)


def test_the_demo_starts_fresh_and_prints_the_same_each_run(tmp_path):
    first = run_demo(cwd=tmp_path)
    second = run_demo(cwd=tmp_path)

    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert first.stdout == second.stdout
    assert (tmp_path / ".fence" / "demo.db").is_file()
    assert "stored in .fence/demo.db" in first.stdout


def test_the_demo_refuses_a_session_count_below_one(tmp_path):
    done = run_demo("--sessions", "0", cwd=tmp_path)

    assert done.returncode == 2
    assert "--sessions" in done.stderr and "at least 1" in done.stderr
