"""``fence sessions`` and ``fence runs SESSION`` against a real runtime."""

from __future__ import annotations

import json

from producer import Producer


def test_sessions_and_runs_list_what_ran(fence):
    runs = [Producer().submit("cli-listed", f"turn {n}") for n in range(3)]
    for run in runs:
        run.result(timeout=60)

    listed = fence("sessions", "--state", "idle", "--limit", "500", "--json")
    assert listed.code == 0, listed.err
    mine = [s for s in json.loads(listed.out)["sessions"] if s["session_id"] == "cli-listed"]
    assert mine and mine[0]["state"] == "idle"

    page = fence("runs", "cli-listed", "--limit", "2")
    assert page.code == 0, page.err
    lines = page.out.splitlines()
    assert [line.split()[0] for line in lines[:2]] == [runs[2].id, runs[1].id]
    assert lines[2].startswith("(more: fence runs cli-listed --cursor ")
    cursor = lines[2].split("--cursor ")[1].rstrip(")")
    rest = json.loads(fence("runs", "cli-listed", "--cursor", cursor, "--json").out)
    assert [r["run_id"] for r in rest["runs"]] == [runs[0].id] and rest["next_cursor"] is None

    bad = fence("runs", "cli-listed", "--cursor", "nope")
    assert bad.code == 1 and "cursor: must be a next_cursor" in bad.err
