"""``fence submit --follow`` and ``fence events`` against a real redis-server and a real
Celery worker: the answer printed as it comes, then the outcome; a run's events replayed,
resumed after an id, and followed live; Ctrl-C and a closed pipe."""

from __future__ import annotations

import json
import os
import select
import shlex
import signal
import subprocess
import time

from fence.runs import EventType, RunState
from tests.runtime.agents import MID_STREAM_HEAD
from tests.support import REPO, Runtime, new_key

from .conftest import fence_script


def session_id() -> str:
    return f"follow-{new_key()}"


def stored_events(runtime: Runtime, run_id: str) -> list[dict]:
    return [e.to_dict() for e in runtime.producer.run(run_id).events(timeout=10)]


def streamed_text(events: list[dict]) -> str | None:
    """The text of the run's deltas, or None when the worker sent none."""
    deltas = [e["data"]["text"] for e in events if e["type"] == EventType.TEXT.value]
    return "".join(deltas) if deltas else None


def json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


def cli(runtime: Runtime, *argv: str) -> subprocess.Popen:
    """``fence ARGV`` as its own process (what a person at a shell runs)."""
    return subprocess.Popen(
        [*fence_script(), *argv],
        env={**os.environ, **runtime.env},
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_until(process: subprocess.Popen, wanted: str, timeout: float = 30) -> str:
    """What ``process`` printed until ``wanted`` appeared, read as it came."""
    assert process.stdout is not None
    seen, deadline = b"", time.monotonic() + timeout
    while wanted.encode() not in seen and time.monotonic() < deadline:
        if select.select([process.stdout], [], [], 0.1)[0]:
            seen += os.read(process.stdout.fileno(), 4096)
    assert wanted.encode() in seen, seen
    return seen.decode()


def test_follow_prints_the_answer_then_the_outcome_and_exits_0(fence, runtime: Runtime):
    sid = session_id()

    followed = fence("submit", sid, "hello as it comes", "--follow")

    assert followed.code == 0, followed.err
    accepted, answer, outcome = followed.out.splitlines()
    run_id = accepted.split()[1]
    record = runtime.producer.run(run_id).status()
    assert accepted == f"run {run_id} accepted for session {sid}: runs next"
    assert answer == record.result == "answer to: hello as it comes"
    assert outcome.startswith("succeeded in ") and outcome.endswith(" s")
    assert followed.err == ""
    text = streamed_text(stored_events(runtime, run_id))
    assert text in (None, record.result)  # printed as it came, or stored when none came


def test_follow_prints_the_text_before_the_run_ends(runtime: Runtime):
    """``block-mid-stream``: the model sends its first piece, then waits for the test."""
    sid, key = session_id(), new_key()
    following = cli(runtime, "submit", sid, f"key={key} block-mid-stream", "--follow")
    try:
        early = read_until(following, MID_STREAM_HEAD)
        run_id = early.split()[1]
        assert runtime.producer.run(run_id).status().state is RunState.RUNNING
        runtime.release(key)
        rest, err = following.communicate(timeout=60)
    finally:
        following.kill()
        runtime.release(key)

    assert following.returncode == 0, err
    accepted, answer, outcome = (early + rest).splitlines()
    assert answer == runtime.producer.run(run_id).status().result
    assert answer == f"{MID_STREAM_HEAD}answer to: key={key} block-mid-stream"
    assert outcome.startswith("succeeded in ")


def test_run_text_yields_the_deltas_of_the_answer(runtime: Runtime):
    run = runtime.producer.submit(session_id(), "hello in pieces")

    pieces = list(run.text(timeout=30))

    assert all(isinstance(piece, str) and piece for piece in pieces)
    text = streamed_text(stored_events(runtime, run.id))
    assert "".join(pieces) == (text or "")
    assert text in (None, run.result(timeout=5))


def test_follow_of_a_failing_run_exits_1_with_its_error(fence):
    sid, key = session_id(), new_key()

    followed = fence("submit", sid, f"key={key} fail=always", "--follow")

    assert followed.code == 1
    [accepted] = followed.out.splitlines()
    run_id = accepted.split()[1]
    assert followed.err == (
        f"fence: error: run {run_id} failed: ModelError: scripted failure on call 3\n"
    )


def test_follow_json_prints_each_event_as_a_json_line_the_terminal_one_last(
    fence, runtime: Runtime
):
    sid, key = session_id(), new_key()

    ok = fence("submit", sid, "in json lines", "--follow", "--json")
    failed = fence("submit", sid, f"key={key} fail=always", "--follow", "--json")

    assert (ok.code, failed.code) == (0, 1)
    assert ok.err == failed.err == ""
    for result, state in ((ok, "succeeded"), (failed, "failed")):
        events = json_lines(result.out)
        assert events == stored_events(runtime, events[0]["run_id"])
        assert events[0]["type"] == EventType.ACCEPTED.value
        assert [e["type"] for e in events].count(EventType.FINISHED.value) == 1
        assert events[-1]["type"] == EventType.FINISHED.value
        assert events[-1]["data"]["state"] == state
    assert "scripted failure" in json_lines(failed.out)[-1]["data"]["error"]
    answer = runtime.producer.run(json_lines(ok.out)[0]["run_id"]).status().result
    assert streamed_text(json_lines(ok.out)) in (None, answer)


def test_follow_with_wait_that_ends_first_exits_124_and_says_how_to_resume(fence, runtime: Runtime):
    sid, key = session_id(), new_key()

    followed = fence("submit", sid, f"key={key} block", "--follow", "--wait", "0.5")

    assert followed.code == 124
    run_id = followed.out.split()[1]
    assert f"run {run_id} is still running after 0.5 s; it goes on: " in followed.err
    resume = followed.err.strip().rpartition("it goes on: ")[2].split()
    assert resume[:2] == ["fence", "events"]
    runtime.wait_entered(key)
    runtime.release(key)
    rest = fence(*resume[1:], "--json")
    assert rest.code == 0, rest.err
    everything = stored_events(runtime, run_id)
    shown_last = resume[resume.index("--after") + 1]  # the follow had shown up to here
    ids = [e["id"] for e in everything]
    assert json_lines(rest.out) == everything[ids.index(shown_last) + 1 :]
    assert json_lines(rest.out)[-1]["data"]["state"] == "succeeded"


def test_events_replays_every_event_in_order_and_after_resumes_exactly_after(
    fence, runtime: Runtime
):
    sid = session_id()
    run_id = json.loads(fence("submit", sid, "replay me", "--wait", "30", "--json").out)["run_id"]
    everything = stored_events(runtime, run_id)

    as_json = fence("events", run_id, "--json")
    shown = fence("events", run_id)

    assert as_json.code == shown.code == 0
    assert json_lines(as_json.out) == everything
    types = [e["type"] for e in everything]
    assert types[:2] == [EventType.ACCEPTED.value, EventType.STARTED.value]
    assert types[-2:] == [EventType.COMMITTED.value, EventType.FINISHED.value]
    assert set(types[2:-2]) <= {EventType.TEXT.value}
    ids = [tuple(map(int, e["id"].split("-"))) for e in everything]
    assert ids == sorted(set(ids)), ids  # strictly increasing
    lines = shown.out.splitlines()
    assert len(lines) == len(everything)
    for line, event in zip(lines, everything, strict=True):
        assert f"  {event['id']}  {event['type']}" in line
    assert lines[0].endswith("position=0") and lines[-1].endswith('state="succeeded"')
    for k, event in enumerate(everything):
        after = fence("events", run_id, "--after", event["id"], "--json")
        assert after.code == 0
        assert (json_lines(after.out) if after.out else []) == everything[k + 1 :]


def test_events_follows_a_running_run_until_its_terminal_event(fence, runtime: Runtime):
    sid, key = session_id(), new_key()
    run_id = json.loads(fence("submit", sid, f"key={key} block", "--json").out)["run_id"]
    runtime.wait_entered(key)

    now = fence("events", run_id, "--no-follow", "--json")
    following = cli(runtime, "events", run_id, "--json")
    try:
        early = read_until(following, EventType.STARTED.value)  # following, the run blocked
        runtime.release(key)
        out, err = following.communicate(timeout=60)
    finally:
        following.kill()

    assert now.code == 0 and following.returncode == 0, err
    logged = [e["type"] for e in json_lines(now.out)]
    assert logged == [EventType.ACCEPTED.value, EventType.STARTED.value]
    events = json_lines(early + out)
    assert events == stored_events(runtime, run_id)
    assert events[-1]["data"]["state"] == "succeeded"


def test_events_of_an_unknown_run_or_after_a_malformed_id_is_one_error(fence):
    run_id = json.loads(fence("submit", session_id(), "exists", "--wait", "30", "--json").out)[
        "run_id"
    ]

    unknown = fence("events", "0" * 32)
    unknown_json = fence("events", "0" * 32, "--json")
    malformed = fence("events", run_id, "--after", "yesterday")
    malformed_json = fence("events", run_id, "--after", "yesterday", "--json")

    assert unknown.code == unknown_json.code == malformed.code == malformed_json.code == 1
    assert unknown.out == malformed.out == ""
    assert unknown.err.startswith(f"fence: error: run: run '{'0' * 32}' not found")
    assert malformed.err == "fence: error: after: must be an event id like 1700000000000-0\n"
    assert json.loads(unknown_json.out)["error"]["code"] == "not_found"
    assert json.loads(unknown_json.out)["error"]["run_id"] == "0" * 32
    error = json.loads(malformed_json.out)["error"]
    assert (error["code"], error["field"]) == ("invalid", "after")


def test_ctrl_c_while_following_exits_130_and_the_run_goes_on(runtime: Runtime):
    sid, key = session_id(), new_key()
    following = cli(runtime, "submit", sid, f"key={key} block", "--follow")
    try:
        accepted = read_until(following, "\n")
        runtime.wait_entered(key)

        following.send_signal(signal.SIGINT)
        out, err = following.communicate(timeout=60)
    finally:
        following.kill()
        runtime.release(key)

    run_id = accepted.split()[1]
    assert following.returncode == 130, (out, err)  # DEBUG
    assert err.startswith(f"fence: stopped following run {run_id}; it goes on: fence events "), (
        accepted,
        out,
        err,
    )  # DEBUG
    assert "Traceback" not in err
    assert runtime.producer.store.wait(run_id, 30).state is RunState.SUCCEEDED


def test_following_into_a_closed_pipe_exits_quietly(runtime: Runtime):
    sid, key = session_id(), new_key()
    command = [*fence_script(), "submit", sid, f"key={key} block", "--follow", "--json"]
    piped = subprocess.Popen(
        ["bash", "-c", f"set -o pipefail; {shlex.join(command)} | head -1"],
        env={**os.environ, **runtime.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = json.loads(read_until(piped, "\n"))  # head printed it and exits
        runtime.wait_entered(key)
        runtime.release(key)  # the events after it go to a closed pipe
        out, err = piped.communicate(timeout=60)
    finally:
        piped.kill()

    assert first["type"] == EventType.ACCEPTED.value
    assert (piped.returncode, out, err) == (0, "", "")
    assert runtime.producer.store.wait(first["run_id"], 30).state is RunState.SUCCEEDED
