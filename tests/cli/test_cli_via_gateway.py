"""``fence --url URL`` (or ``FENCE_API_URL``): the run commands through a real HTTP gateway
with a token, the CLI given no usable Redis (``FENCE_REDIS_URL`` points nowhere), so each
answer proves it went through the gateway; the output and errors read as they do
against Redis."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator

import pytest

from producer.http import FenceClient
from producer.stack.launch import gateway_missing, start_gateway
from producer.stack.processes import ManagedProcess, free_port
from tests.support import REPO, Runtime

TOKEN = "tok-cli-gateway-41aa"
NOWHERE = "redis://127.0.0.1:1/0"


@pytest.fixture(scope="module")
def gateway(runtime: Runtime, tmp_path_factory) -> Iterator[str]:
    missing = gateway_missing()
    if missing:
        pytest.skip(f"the HTTP gateway cannot start: {missing}")
    port = free_port()
    env = {**runtime.env, "FENCE_API_TOKENS": TOKEN}
    log = tmp_path_factory.mktemp("cli-gateway") / "gateway.log"
    process: ManagedProcess = start_gateway(env, port, cwd=REPO, log_path=log)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop()


@pytest.fixture
def remote(fence, gateway, monkeypatch):
    """``fence --url <gateway> ARGS`` with the token, and no Redis the CLI could reach."""
    monkeypatch.setenv("FENCE_REDIS_URL", NOWHERE)
    monkeypatch.setenv("FENCE_API_TOKEN", TOKEN)
    return lambda *argv: fence("--url", gateway, *argv)


@pytest.fixture
def client(gateway) -> Iterator[FenceClient]:
    with FenceClient(gateway, token=TOKEN) as client:
        yield client


def session_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_submit_wait_and_status_go_through_the_gateway(remote):
    session = session_id("cli-gw")

    done = remote("submit", session, "hello", "--wait", "60")

    assert done.code == 0, done.err
    lines = done.out.splitlines()
    assert lines[0].startswith("run ") and lines[0].endswith(
        f"accepted for session {session}: runs next"
    )
    assert lines[1].startswith("succeeded in ") and lines[2] == "answer to: hello"
    run_id = lines[0].split()[1]

    status = remote("status", run_id)
    assert status.code == 0, status.err
    rows = dict(line.split(maxsplit=1) for line in status.out.splitlines() if " " in line)
    assert (rows["session"], rows["result"]) == (session, "answer to: hello")
    as_json = json.loads(remote("status", run_id, "--json").out)
    assert (as_json["run_id"], as_json["state"]) == (run_id, "succeeded")

    again = json.loads(remote("submit", session, "hi", "--wait", "60", "--json").out)
    assert again["state"] == "succeeded" and again["position"] == 0


def test_follow_events_history_session_sessions_and_runs(remote):
    session = session_id("cli-gw-list")
    followed = remote("submit", session, "tell me", "--follow")
    assert followed.code == 0, followed.err
    assert "answer to: tell me" in followed.out and "succeeded in" in followed.out
    run_id = followed.out.split()[1]

    events = remote("events", run_id, "--json")
    kinds = [json.loads(line)["type"] for line in events.out.splitlines()]
    assert kinds[0] == "run.accepted" and kinds[-1] == "run.finished"
    assert remote("events", run_id, "--no-follow").code == 0  # a finished run's log

    history = remote("history", session)
    assert history.code == 0, history.err
    assert "2 message(s) in the gateway at http://127.0.0.1:" in history.out
    assert history.out.splitlines()[1].split()[2:] == ["user", "tell", "me"]
    newest = json.loads(remote("history", session, "--limit", "1", "--json").out)
    assert [m["content"] for m in newest["messages"]] == ["answer to: tell me"]

    info = remote("session", session)
    assert info.code == 0, info.err
    assert info.out.splitlines() == [f"session {session}: idle", "  queued      0 run(s)"]

    listed = json.loads(remote("sessions", "--state", "idle", "--limit", "500", "--json").out)
    assert session in [s["session_id"] for s in listed["sessions"]]
    page = remote("sessions", "--limit", "1")
    assert page.code == 0 and page.out.splitlines()[-1].startswith("(more: fence sessions")
    runs = remote("runs", session)
    assert runs.code == 0 and runs.out.split()[0] == run_id


def test_approve_and_deny_through_the_gateway(remote, client: FenceClient):
    def waiting(session: str) -> str:
        done = remote("submit", session, "refund please", "--agent", "approver", "--json")
        assert done.code == 0, done.err
        run_id = json.loads(done.out)["run_id"]
        assert any(e.type == "approval.requested" for e in client.events(run_id, timeout=60))
        return run_id

    approved, denied = waiting(session_id("cli-gw-ok")), waiting(session_id("cli-gw-no"))
    assert re.search(r"^waiting for +approval of refund\(", remote("status", approved).out, re.M)

    bad = remote("approve", approved, "--arguments", '{"order_id": "A1", "cents": "x"}', "--json")
    assert bad.code == 1 and json.loads(bad.out)["error"]["field"] == "arguments.cents"
    done = remote("approve", approved, "--arguments", '{"order_id": "A1", "cents": 7}')
    assert done.code == 0, done.err
    assert f"run {approved} approved" in done.out
    assert remote("deny", denied, "--reason", "not today").code == 0

    assert client.wait(approved).result == "done: refunded 7 on A1"
    assert client.wait(denied).result == "done: denied: not today"
    again = remote("deny", denied, "--json")
    error = json.loads(again.out)["error"]
    assert again.code == 1 and (error["code"], error["run_id"]) == ("not_waiting", denied)


def test_errors_through_the_gateway_read_as_from_redis(remote, fence, gateway, monkeypatch):
    missing = remote("status", "no-such-run")
    assert missing.code == 1
    assert missing.err == (
        "fence: error: run: run 'no-such-run' not found (never accepted, or its record expired)\n"
    )
    unknown = remote("submit", "cli-gw-bad", "hi", "--agent", "nope", "--json")
    error = json.loads(unknown.out)["error"]
    assert (error["code"], error["field"]) == ("invalid", "agent")

    monkeypatch.setenv("FENCE_API_TOKEN", "tok-wrong-77e1")
    refused = remote("sessions")
    assert refused.code == 1 and "FENCE_API_TOKEN" in refused.err
    assert "tok-wrong-77e1" not in refused.err + refused.out

    monkeypatch.setenv("FENCE_API_TOKEN", TOKEN)
    monkeypatch.setenv("FENCE_API_URL", gateway)  # the variable works as --url does
    assert fence("sessions", "--limit", "1").code == 0
    unreachable = fence("--url", "http://127.0.0.1:1", "status", "r1")
    assert (
        unreachable.code == 1
        and "cannot reach the gateway at http://127.0.0.1:1" in unreachable.err
    )


def test_commands_that_need_redis_say_so(remote, fence, gateway):
    stack = remote("stack")
    assert stack.code == 1 and "needs Redis, not a gateway" in stack.err
    redispatch = remote("session", "cli-gw-stuck", "--redispatch")
    assert redispatch.code == 1 and "--redispatch publishes the run's Celery task" in redispatch.err
    both = fence("--url", gateway, "--redis-url", NOWHERE, "sessions")
    assert both.code == 1 and "not both" in both.err


def test_a_wait_that_ends_first_exits_124_and_cancel_goes_through_the_gateway(
    remote, runtime: Runtime, client: FenceClient
):
    key = uuid.uuid4().hex[:10]
    done = remote("submit", session_id("cli-gw-slow"), f"key={key} block", "--wait", "0.5")
    try:
        assert done.code == 124, done.err
        assert "is still running after 0.5 s" in done.err
        run_id = done.out.split()[1]
        cancel = remote("cancel", run_id)
        assert cancel.code == 0, cancel.err
        assert f"run {run_id} is running: cancel requested" in cancel.out
    finally:
        runtime.release(key)
    assert client.wait(run_id).state.value == "cancelled"
