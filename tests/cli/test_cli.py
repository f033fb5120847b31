"""``fence submit/status/cancel/history/session/demo`` against a real redis-server and
a real Celery worker, as a user (or a script with ``--json``) runs them."""

from __future__ import annotations

import json
import os
import re
import subprocess

import redis

from fence.runs import RunRequest, RunState
from producer.stack.processes import free_port
from tests.runtime.agents import registry
from tests.support import REPO, Runtime, new_key

from .conftest import fence_script


def session_id() -> str:
    return f"cli-{new_key()}"


def test_submit_waits_for_the_answer_and_history_shows_the_turn(fence):
    sid = session_id()

    submitted = fence("submit", sid, "hello from the CLI", "--wait", "30")

    assert submitted.code == 0, submitted.err
    assert "answer to: hello from the CLI" in submitted.out
    history = fence("history", sid)
    assert history.code == 0
    assert "user" in history.out and "hello from the CLI" in history.out
    assert "assistant" in history.out and "answer to: hello from the CLI" in history.out


def test_json_output_is_one_document_per_command(fence, runtime: Runtime):
    sid = session_id()

    submitted = fence("submit", sid, "first", "--json")
    record = json.loads(submitted.out)
    assert submitted.code == 0
    assert record["session_id"] == sid and record["state"] in ("queued", "running", "succeeded")
    runtime.producer.run(record["run_id"]).result(timeout=30)

    status = json.loads(fence("status", record["run_id"], "--json").out)
    history = json.loads(fence("--json", "history", sid).out)
    session = json.loads(fence("session", sid, "--json").out)

    assert status["state"] == "succeeded" and status["result"] == "answer to: first"
    assert [m["content"] for m in history["messages"]] == ["first", "answer to: first"]
    assert {m["turn_id"] for m in history["messages"]} == {record["run_id"]}
    assert session["state"] == "idle" and session["queued"] == [] and session["lease"] is None


def test_status_names_the_run_and_shows_its_message_as_the_http_run_view_does(fence):
    sid = session_id()
    submitted = json.loads(fence("submit", sid, "what was asked", "--wait", "30", "--json").out)

    shown = fence("status", submitted["run_id"])
    as_json = json.loads(fence("status", submitted["run_id"], "--json").out)

    assert re.search(r"^message +what was asked$", shown.out, re.MULTILINE), shown.out
    assert as_json["run_id"] == submitted["run_id"] and "id" not in as_json
    assert as_json["message"] == "what was asked"


def test_history_of_a_database_that_does_not_exist_says_so_and_creates_none(
    fence, tmp_path, monkeypatch
):
    monkeypatch.delenv("FENCE_MEMORY", raising=False)  # the default: sqlite:///fence.db
    monkeypatch.chdir(tmp_path)

    shown = fence("history", "s1")
    as_json = fence("history", "s1", "--json")

    expected = (
        f"FENCE_MEMORY: no SQLite database at {str(tmp_path / 'fence.db')!r}: nothing has "
        "been written to it (FENCE_MEMORY is sqlite:///fence.db)"
    )
    assert (shown.code, shown.out, shown.err) == (1, "", f"fence: error: {expected}\n")
    assert as_json.code == 1
    assert json.loads(as_json.out)["error"] == {
        "code": "not_found",
        "message": expected,
        "field": "FENCE_MEMORY",
        "run_id": None,
    }
    assert list(tmp_path.iterdir()) == []


def test_session_shows_the_running_turn_its_lease_and_the_queue_and_cancel_stops_both(
    fence, runtime: Runtime
):
    sid, key = session_id(), new_key()
    first = json.loads(fence("submit", sid, f"key={key} block", "--json").out)
    runtime.wait_entered(key)
    second = json.loads(fence("submit", sid, "queued behind", "--json").out)
    assert second["position"] == 1

    session = json.loads(fence("session", sid, "--json").out)
    assert session["state"] == "busy"
    assert session["active_run"]["run_id"] == first["run_id"]
    assert session["active_run"]["state"] == "running"
    assert session["lease"]["expires_in_ms"] > 0
    assert session["queued"] == [second["run_id"]]
    human = fence("session", sid).out
    assert first["run_id"] in human and "lease       held" in human and second["run_id"] in human

    cancelled = fence("cancel", second["run_id"])
    assert cancelled.code == 0 and "cancelled (it had not started)" in cancelled.out
    requested = fence("cancel", first["run_id"])
    assert requested.code == 0 and "cancel requested" in requested.out
    runtime.release(key)
    assert runtime.producer.store.wait(first["run_id"], 30).state is RunState.CANCELLED

    again = fence("cancel", first["run_id"])  # idempotent, as over HTTP
    assert again.code == 0 and again.out == f"run {first['run_id']} cancelled\n"
    assert runtime.contents(sid) == []  # neither run wrote anything


def test_exit_codes_and_json_errors_agree_whatever_the_output_format(fence, runtime: Runtime):
    sid, key = session_id(), new_key()
    busy = json.loads(fence("submit", sid, f"key={key} block", "--json").out)
    runtime.wait_entered(key)

    for as_json in (False, True):
        extra = ("--json",) if as_json else ()
        rejected = fence("submit", sid, "not now", "--strategy", "reject", *extra)
        unknown = fence("status", "0" * 32, *extra)
        invalid = fence("submit", sid, "", *extra)

        assert rejected.code == unknown.code == invalid.code == 1
        if as_json:
            errors = [json.loads(r.out)["error"] for r in (rejected, unknown, invalid)]
            assert [e["code"] for e in errors] == ["rejected", "not_found", "invalid"]
            assert errors[0]["run_id"] and errors[1]["run_id"] == "0" * 32
            assert errors[2]["field"] == "message"
            assert all(r.err == "" for r in (rejected, unknown, invalid))
        else:
            assert all(r.out == "" and r.err.startswith("fence: error: ")
                       for r in (rejected, unknown, invalid))  # fmt: skip
    runtime.release(key)
    assert runtime.producer.store.wait(busy["run_id"], 30).state is RunState.SUCCEEDED

    finished = fence("cancel", busy["run_id"], "--json")
    assert finished.code == 1
    assert json.loads(finished.out)["error"] == {
        "code": "terminal",
        "message": f"run {busy['run_id']} already succeeded; nothing to cancel",
        "field": None,
        "run_id": busy["run_id"],
    }


def test_wait_that_ends_before_the_run_exits_124_and_the_run_goes_on(fence, runtime: Runtime):
    sid, key = session_id(), new_key()

    result = fence("submit", sid, f"key={key} block", "--wait", "0.3")

    assert result.code == 124
    assert "is still running after 0.3 s; it goes on: fence status" in result.err
    runtime.wait_entered(key)
    runtime.release(key)
    run_id = result.out.split()[1]
    assert runtime.producer.store.wait(run_id, 30).state is RunState.SUCCEEDED


def test_a_rejected_double_text_exits_1_with_the_reason(fence, runtime: Runtime):
    sid, key = session_id(), new_key()
    fence("submit", sid, f"key={key} block")
    runtime.wait_entered(key)

    rejected = fence("submit", sid, "me too", "--strategy", "reject")

    runtime.release(key)
    assert rejected.code == 1
    assert "rejected: session is busy with run" in rejected.err


def test_idempotency_key_returns_the_existing_run(fence):
    sid = session_id()
    first = json.loads(fence("submit", sid, "once", "--idempotency-key", "k-1", "--json").out)

    second = fence("submit", sid, "once", "--idempotency-key", "k-1", "--wait", "30", "--json")

    assert json.loads(second.out)["run_id"] == first["run_id"]
    again = fence("submit", sid, "once", "--idempotency-key", "k-1")
    assert (again.code, again.err) == (0, "")
    assert again.out.startswith(f"run {first['run_id']} (existing run for this idempotency key): ")


def test_an_idempotency_key_reused_for_another_message_is_refused(fence):
    sid = session_id()
    first = json.loads(fence("submit", sid, "once", "--idempotency-key", "k-2", "--json").out)

    other = fence("submit", sid, "twice", "--idempotency-key", "k-2")

    assert other.code == 1
    assert other.err == (
        f"fence: error: idempotency_key: already used for run {first['run_id']} with a different "
        "message; send the same request again, or use a new key\n"
    )


def test_bad_input_exits_1_with_one_line_naming_the_field_and_writes_nothing(
    fence, runtime: Runtime
):
    before = set(runtime.control.scan_iter("fence:*"))
    cases = {
        ("submit", "ok-session", "   "): "message: must be a non-empty string",
        ("submit", "bad session!", "hi"): "session_id: must be 1-128 characters",
        ("submit", "ok-session", "hi", "--agent", "nobody"): "agent: unknown agent 'nobody'",
        ("submit", "ok-session", "hi", "--idempotency-key", "has space"): "idempotency_key:",
        ("status", "no-such-run"): "run: run 'no-such-run' not found",
        ("cancel", "no-such-run"): "run: run 'no-such-run' not found",
        ("history", "bad session!"): "session: must be 1-128 characters",
        ("session", "idle-session", "--redispatch"): "is idle; nothing to re-dispatch",
    }
    for argv, expected in cases.items():
        result = fence(*argv)
        assert result.code == 1, argv
        assert result.out == "", argv
        lines = result.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("fence: error: "), (argv, result.err)
        assert expected in lines[0], (argv, lines[0])
    # nothing new (an earlier test's run may still be finishing: its lease goes away)
    assert set(runtime.control.scan_iter("fence:*")) - before == set()


def test_usage_errors_exit_2_naming_the_option(fence):
    for argv, expected in {
        ("submit", "s", "hi", "--wait", "-1"): "--wait: must be more than 0",
        ("submit", "s", "hi", "--strategy", "shout"): "--strategy: invalid choice: 'shout'",
        ("submit", "s", "hi", "--metadata", "[1]"): "--metadata: must be a JSON object",
        ("demo", "--sessions", "0"): "--sessions: must be at least 1",
        ("stack", "--redis-port", "70000"): "--redis-port: must be 0-65535",
    }.items():
        result = fence(*argv)
        assert result.code == 2, argv
        assert expected in result.err, (argv, result.err)
        assert "Traceback" not in result.err


def test_unreachable_redis_is_one_line_not_a_traceback(fence):
    url = f"redis://127.0.0.1:{free_port()}/0"

    result = fence("--redis-url", url, "status", "some-run")

    assert result.code == 1
    assert result.err.startswith(f"fence: error: cannot reach Redis at {url}")
    assert len(result.err.strip().splitlines()) == 1


def test_a_stuck_session_is_unstuck_by_redispatch(fence, runtime: Runtime):
    """A session made active whose task was never published (a producer died between
    the two steps): ``fence session`` shows no lease, ``--redispatch`` runs it."""
    sid = session_id()
    submission = runtime.producer.store.submit(
        RunRequest(session_id=sid, message="lost", agent="controlled")
    )
    assert submission.dispatch  # active now, but nobody published its task

    shown = fence("session", sid)
    assert "lease       none (no worker is running it right now)" in shown.out
    result = fence("session", sid, "--redispatch")

    assert result.code == 0
    assert f"published fence.run_turn for run {submission.run_id}" in result.out
    assert runtime.producer.store.wait(submission.run_id, 30).state is RunState.SUCCEEDED
    assert runtime.contents(sid) == ["lost", "answer to: lost"]


def test_demo_drives_sessions_concurrently_and_verifies_every_history(fence):
    result = fence("demo", "--sessions", "6", "--turns", "3", "--concurrency", "4")

    assert result.code == 0, result.out + result.err
    assert "18/18 turns  ok 18  failed 0" in result.out
    assert "history check: OK - 6/6 sessions hold every turn exactly once" in result.out
    assert "p50 latency" in result.out and "turns/s" in result.out


def test_demo_json(fence):
    passed = fence("demo", "--sessions", "2", "--turns", "2", "--json")
    assert passed.code == 0 and json.loads(passed.out)["passed"] is True


def test_demo_with_an_unknown_agent_fails_up_front_with_one_error(fence, runtime: Runtime):
    before = runtime.control.dbsize()

    failed = fence("demo", "--sessions", "20", "--turns", "1", "--agent", "nobody")

    assert failed.code == 1 and failed.out == ""
    known = ", ".join(sorted(registry))
    assert failed.err == f"fence: error: agent: unknown agent 'nobody'; known: {known}\n"
    assert runtime.control.dbsize() == before  # nothing was submitted


def test_console_script_runs_as_installed(runtime: Runtime):
    env = {**os.environ, **runtime.env}
    sid = session_id()

    ok = subprocess.run(
        [*fence_script(), "submit", sid, "via the script", "--wait", "30", "--json"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    bad = subprocess.run(
        [*fence_script(), "submit", sid, ""],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["result"] == "answer to: via the script"
    assert bad.returncode == 1
    assert bad.stderr == "fence: error: message: must be a non-empty string\n"


def test_demo_without_a_worker_fails_fast_saying_what_to_start(fence, runtime: Runtime):
    no_workers = runtime.redis_url.rsplit("/", 1)[0] + "/7"  # same server, nobody listening

    result = fence("--redis-url", no_workers, "demo", "--sessions", "1", "--turns", "1")

    assert result.code == 1
    assert result.err.startswith(f"fence: error: no live worker on {no_workers}: start ")
    assert redis.Redis.from_url(no_workers).keys("fence:*") == []  # nothing was submitted


def test_a_long_message_is_submitted_from_standard_input_or_a_file(fence, runtime, tmp_path):
    long = "a long message " * 14_000  # 210 KB: more than a command line takes
    sid = session_id()
    path = tmp_path / "message.txt"
    path.write_text(long + "from a file", encoding="utf-8")

    from_stdin = subprocess.run(
        [*fence_script(), "submit", sid, "-", "--wait", "30", "--json"],
        input=long + "from stdin",
        env={**os.environ, **runtime.env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    from_file = fence("submit", sid, "--file", str(path), "--wait", "30")

    assert from_stdin.returncode == 0, from_stdin.stderr
    assert from_file.code == 0, from_file.err
    assert runtime.contents(sid)[0::2] == [long + "from stdin", long + "from a file"]


def test_a_message_given_twice_or_not_at_all_is_refused_naming_it(fence, tmp_path):
    path = tmp_path / "m.txt"
    path.write_text("hi", encoding="utf-8")

    twice = fence("submit", session_id(), "hello", "--file", str(path))
    missing = fence("submit", session_id())
    unreadable = fence("submit", session_id(), "--file", str(tmp_path / "nope.txt"))

    assert twice.code == missing.code == unreadable.code == 1
    assert twice.err.startswith("fence: error: message: give it as an argument, as -, or")
    assert missing.err.startswith("fence: error: message: required")
    assert unreadable.err.startswith("fence: error: --file: cannot read")
