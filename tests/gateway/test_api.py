"""The HTTP gateway over real HTTP against real Redis and a real Celery worker:
submit, long-poll, cancel, session view, history, auth, bad input, limits, health."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from fence.messages import IDENTIFIER_RULE, Role, ToolCall
from producer.stack.launch import start_redis
from tests.support import REPO, new_key

from .conftest import MAX_BODY, MAX_MESSAGE, TOKENS, Stack, launch_gateway

SECRET = "s3cr3t-body-marker"


def submit(client: httpx.Client, session_id: str, message: str, **fields) -> httpx.Response:
    return client.post(f"/v1/sessions/{session_id}/runs", json={"message": message, **fields})


def finished(client: httpx.Client, run_id: str) -> dict:
    response = client.get(f"/v1/runs/{run_id}", params={"wait": 30})
    assert response.status_code == 200, response.text
    return response.json()


def test_a_submitted_run_is_accepted_then_long_polled_to_its_answer(client: httpx.Client):
    session = f"hello-{new_key()}"
    accepted = submit(client, session, "hello there", metadata={"ticket": 42})

    assert accepted.status_code == 202, accepted.text
    body = accepted.json()
    assert body["session_id"] == session and body["state"] == "queued"
    assert body["position"] == 0
    assert accepted.headers["location"] == f"/v1/runs/{body['run_id']}"

    record = finished(client, body["run_id"])
    assert record["state"] == "succeeded"
    assert record["result"] == "answer to: hello there"
    assert record["run_id"] == body["run_id"] and record["session_id"] == session
    assert record["metadata"] == {"ticket": 42} and record["attempts"] == 1
    assert record["worker"].startswith("w")
    assert record["accepted_at"] <= record["started_at"] <= record["finished_at"]
    assert record["message"] == "hello there"


def test_long_poll_returns_the_current_record_when_the_wait_ends_without_blocking_others(
    stack: Stack, client: httpx.Client
):
    key = new_key()
    session = f"poll-{key}"
    run_id = submit(client, session, f"key={key} block").json()["run_id"]
    try:
        stack.runtime.wait_entered(key)

        started = time.monotonic()
        running = client.get(f"/v1/runs/{run_id}", params={"wait": 0.5})
        assert time.monotonic() - started >= 0.5
        assert running.status_code == 200 and running.json()["state"] == "running"

        with ThreadPoolExecutor(1) as pool:
            poll = pool.submit(finished, stack.client(), run_id)
            # while that long poll waits, the gateway keeps answering
            started = time.monotonic()
            assert client.get(f"/v1/sessions/{session}").json()["active_run"] == run_id
            assert time.monotonic() - started < 2
            assert not poll.done()
            stack.runtime.release(key)
            started = time.monotonic()
            record = poll.result(timeout=30)
        assert record["state"] == "succeeded"
        assert time.monotonic() - started < 10, "the long poll did not wake on completion"
    finally:
        stack.runtime.release(key)


def test_the_same_idempotency_key_returns_the_same_run(client: httpx.Client):
    session = f"idem-{new_key()}"
    first = submit(client, session, "charge the card", idempotency_key="order-1")
    finished(client, first.json()["run_id"])
    again = submit(client, session, "charge the card", idempotency_key="order-1")

    assert again.status_code == 202
    assert again.json()["run_id"] == first.json()["run_id"]
    assert again.json()["position"] is None and again.json()["state"] == "succeeded"


def test_an_idempotency_key_reused_for_another_request_is_a_conflict(stack, client):
    session = f"idem-conflict-{new_key()}"
    first = submit(client, session, "charge 10 EUR", idempotency_key="order-2").json()["run_id"]
    finished(client, first)
    keys_before = set(stack.runtime.control.scan_iter("fence:*"))

    conflict = submit(client, session, "charge 99 EUR", idempotency_key="order-2")

    assert conflict.status_code == 409
    error = conflict.json()["error"]
    assert (error["code"], error["field"], error["run_id"]) == (
        "idempotency_conflict",
        "idempotency_key",
        first,
    )
    assert "different message" in error["message"]
    assert set(stack.runtime.control.scan_iter("fence:*")) == keys_before  # nothing written


def test_the_idempotency_key_header_dedupes_like_the_body_field(client: httpx.Client):
    session = f"idem-header-{new_key()}"
    headers = {"Idempotency-Key": "order-3"}
    url = f"/v1/sessions/{session}/runs"

    first = client.post(url, json={"message": "ship it"}, headers=headers)
    again = client.post(url, json={"message": "ship it", "idempotency_key": "order-3"})
    mismatch = client.post(
        url, json={"message": "ship it", "idempotency_key": "order-4"}, headers=headers
    )

    assert first.status_code == again.status_code == 202
    assert again.json()["run_id"] == first.json()["run_id"]
    assert mismatch.status_code == 422
    assert mismatch.json()["error"]["field"] == "idempotency_key"


def test_session_view_shows_the_run_in_flight_and_the_queue_and_cancel_works(
    stack: Stack, client: httpx.Client
):
    key = new_key()
    session = f"cancel-{key}"
    running, queued, last = (
        submit(client, session, text).json()
        for text in (f"key={key} block", "never runs", "runs after")
    )
    try:
        stack.runtime.wait_entered(key)
        assert (queued["position"], last["position"]) == (1, 2)

        view = client.get(f"/v1/sessions/{session}").json()
        assert view == {
            "session_id": session,
            "state": "busy",
            "active_run": running["run_id"],
            "queued": [queued["run_id"], last["run_id"]],
            "queued_count": 2,
        }

        cancelled = client.post(f"/v1/runs/{queued['run_id']}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
        stopping = client.post(f"/v1/runs/{running['run_id']}/cancel").json()
        assert stopping["state"] == "running" and stopping["cancel_requested"] is True
    finally:
        stack.runtime.release(key)

    assert finished(client, running["run_id"])["state"] == "cancelled"
    assert finished(client, last["run_id"])["state"] == "succeeded"
    assert client.get(f"/v1/sessions/{session}").json()["state"] == "idle"
    assert stack.runtime.contents(session) == ["runs after", "answer to: runs after"]
    missing = client.post("/v1/runs/no-such-run/cancel")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_a_rejected_double_text_is_409_naming_the_recorded_run(stack: Stack, client: httpx.Client):
    key = new_key()
    session = f"reject-{key}"
    busy = submit(client, session, f"key={key} block").json()
    try:
        stack.runtime.wait_entered(key)
        refused = submit(client, session, f"me too {SECRET}", strategy="reject")
    finally:
        stack.runtime.release(key)

    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["code"] == "rejected" and "busy" in error["message"]
    assert SECRET not in refused.text
    record = client.get(f"/v1/runs/{error['run_id']}").json()
    assert record["state"] == "rejected" and record["session_id"] == session
    assert finished(client, busy["run_id"])["state"] == "succeeded"


def test_history_pages_newest_first_with_turn_ids_and_tool_calls(
    stack: Stack, client: httpx.Client
):
    session = f"history-{new_key()}"
    run_ids = [submit(client, session, f"question {n}").json()["run_id"] for n in range(3)]
    for run_id in run_ids:
        finished(client, run_id)
    memory = stack.runtime.memory(session)  # a tool-using turn, written as an agent would
    call = ToolCall(id="call-1", name="lookup", arguments={"order": 7})
    memory.add_message(Role.ASSISTANT, "", tool_calls=[call])
    memory.add_message(Role.TOOL, "shipped", tool_call_id="call-1", name="lookup")

    pages, before = [], None
    while True:
        params = {"limit": 3} if before is None else {"limit": 3, "before_seq": before}
        page = client.get(f"/v1/sessions/{session}/messages", params=params)
        assert page.status_code == 200, page.text
        pages.append(page.json()["messages"])
        before = page.json()["next_before_seq"]
        if before is None:
            break

    assert [[m["seq"] for m in p] for p in pages] == [[8, 7, 6], [5, 4, 3], [2, 1]]
    newest = pages[0]
    assert newest[0]["role"] == "tool" and newest[0]["tool_call_id"] == "call-1"
    assert newest[1]["tool_calls"] == [call.model_dump()]
    assert newest[1]["turn_id"] is None
    turns = [m for p in pages for m in p][2:]
    assert [(m["role"], m["content"], m["turn_id"]) for m in reversed(turns)] == [
        (role, text, run_ids[n])
        for n in range(3)
        for role, text in (("user", f"question {n}"), ("assistant", f"answer to: question {n}"))
    ]
    assert all(m["tokens"] > 0 for m in turns)
    empty = client.get("/v1/sessions/never-used/messages").json()
    assert empty == {"session_id": "never-used", "messages": [], "next_before_seq": None}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Basic {TOKENS[0]}"},
        {"Authorization": f"Bearer {TOKENS[0]}x"},
        {"Authorization": "Bearer"},
    ],
    ids=["missing", "wrong", "not-bearer", "prefix-of-longer", "empty"],
)
def test_requests_without_a_valid_token_are_401_and_write_nothing(stack: Stack, headers):
    before = stack.fence_state()
    with httpx.Client(base_url=stack.base_url, headers=headers) as anonymous:
        responses = [
            anonymous.post("/v1/sessions/auth-test/runs", json={"message": "hi"}),
            anonymous.get("/v1/runs/whatever"),
            anonymous.get("/v1/sessions/auth-test/messages"),
            anonymous.post("/v1/sessions/auth-test/runs", content=b"{not json"),
        ]
    for response in responses:
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["error"]["code"] == "unauthorized"
    assert stack.fence_state() == before


def test_every_configured_token_works_and_none_is_logged(stack: Stack):
    for token in TOKENS:
        with stack.client(token) as client:
            assert client.get("/v1/sessions/any-session").status_code == 200
    with httpx.Client(base_url=stack.base_url) as anonymous:  # probes and docs need no token
        for path in ("/healthz", "/metrics", "/openapi.json"):
            assert anonymous.get(path).status_code == 200, path
        assert anonymous.get("/anything-else").status_code == 401
    for token in TOKENS:
        assert token not in stack.gateway.output


BAD_SUBMITS = [
    ({"message": ""}, "message"),
    ({"message": f"   \n\t{''}"}, "message"),
    ({"message": 123}, "message"),
    ({}, "message"),
    ({"message": f"hi {SECRET}", "agent": "no-such-agent"}, "agent"),
    ({"message": f"hi {SECRET}", "agent": "has spaces"}, "agent"),
    ({"message": f"hi {SECRET}", "agent": ""}, "agent"),
    ({"message": f"hi {SECRET}", "idempotency_key": "not ok!"}, "idempotency_key"),
    ({"message": f"hi {SECRET}", "strategy": "sometimes"}, "strategy"),
    ({"message": f"hi {SECRET}", "metadata": [1, 2]}, "metadata"),
    ({"message": f"hi {SECRET}", "metadata": {"blob": "x" * 17_000}}, "metadata"),
    ({"message": f"hi {SECRET}", "priority": 1}, "priority"),
    ({"message": SECRET + "x" * MAX_MESSAGE}, "message"),
]


@pytest.mark.parametrize(("body", "field"), BAD_SUBMITS, ids=[f for _, f in BAD_SUBMITS])
def test_a_bad_submit_is_422_naming_the_field_and_writes_nothing(
    stack: Stack, client: httpx.Client, body, field
):
    before = stack.fence_state()
    response = client.post("/v1/sessions/bad-input/runs", json=body)

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid" and error["field"] == field
    assert error["message"].startswith(f"{field}:")
    assert SECRET not in response.text
    assert stack.fence_state() == before


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"message": "hi', "body"),
        (b'{"message": "\\ud800 lone surrogate"}', "message"),
        (b"[1, 2]", "body"),
    ],
    ids=["truncated-json", "lone-surrogate", "not-an-object"],
)
def test_malformed_json_is_422_not_500(stack: Stack, client: httpx.Client, raw, field):
    before = stack.fence_state()
    response = client.post(
        "/v1/sessions/bad-input/runs", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field
    assert stack.fence_state() == before


def test_a_body_not_sent_as_json_says_so(stack: Stack, client: httpx.Client):
    before = stack.fence_state()
    form = client.post("/v1/sessions/bad-input/runs", data={"message": "hi"})
    bare = client.post("/v1/sessions/bad-input/runs", content=b'{"message": "hi"}')
    for response in (form, bare):
        assert response.status_code == 422
        error = response.json()["error"]
        assert error["field"] == "body" and "Content-Type: application/json" in error["message"]
    assert stack.fence_state() == before


@pytest.mark.parametrize(
    ("method", "url", "field"),
    [
        ("POST", "/v1/sessions/bad%20id/runs", "session_id"),
        ("POST", f"/v1/sessions/{'s' * 129}/runs", "session_id"),
        ("POST", "/v1/sessions/-leading-dash/runs", "session_id"),
        ("GET", "/v1/sessions/bad%20id", "session_id"),
        ("GET", "/v1/sessions/bad%20id/messages", "session_id"),
        ("POST", "/v1/sessions/a%2Fb/runs", "session_id"),
        ("GET", "/v1/sessions/a%2Fb", "session_id"),
        ("GET", "/v1/sessions/a%2Fb/messages", "session_id"),
        ("GET", "/v1/sessions/ok/messages?limit=0", "limit"),
        ("GET", "/v1/sessions/ok/messages?limit=501", "limit"),
        ("GET", "/v1/sessions/ok/messages?before_seq=zero", "before_seq"),
        ("GET", "/v1/runs/any?wait=-1", "wait"),
        ("GET", "/v1/runs/any?wait=61", "wait"),
        ("GET", "/v1/runs/any?wait=nan", "wait"),
    ],
)
def test_bad_path_and_query_values_are_422_naming_them(
    stack: Stack, client: httpx.Client, method, url, field
):
    before = stack.fence_state()
    response = client.request(method, url, json={"message": "hi"} if method == "POST" else None)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field
    assert stack.fence_state() == before


def test_an_oversized_body_is_413_before_it_is_parsed(stack: Stack, client: httpx.Client):
    before = stack.fence_state()
    not_even_json = b"{" + b"x" * MAX_BODY
    declared = client.post(
        "/v1/sessions/big/runs", content=not_even_json, headers={"content-type": "application/json"}
    )

    def chunks():
        for _ in range(MAX_BODY // 1024 + 1):
            yield b"x" * 1024

    streamed = client.post("/v1/sessions/big/runs", content=chunks())  # chunked, no length

    for response in (declared, streamed):
        assert response.status_code == 413, response.text
        assert response.json()["error"] == {
            "code": "too_large",
            "message": f"body: larger than {MAX_BODY} bytes (FENCE_API_MAX_BODY_BYTES)",
            "field": "body",
            "run_id": None,
            "details": [],
        }
    assert stack.fence_state() == before
    just_fits = json.dumps({"message": "y" * (MAX_MESSAGE - 10)})
    assert len(just_fits) < MAX_BODY
    ok = client.post(
        "/v1/sessions/big/runs", content=just_fits, headers={"content-type": "application/json"}
    )
    assert ok.status_code == 202
    finished(client, ok.json()["run_id"])


def test_a_session_id_with_an_encoded_slash_is_422_with_the_rule_not_an_unknown_path(
    stack: Stack, client: httpx.Client
):
    """Starlette decodes ``%2F`` before routing; the id is still the client's mistake."""
    before = stack.fence_state()
    for response in (
        submit(client, "a%2Fb", "hi"),
        client.get("/v1/sessions/a%2Fb"),
        client.get("/v1/sessions/team%2Falice/messages", params={"limit": 5}),
    ):
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "invalid" and error["field"] == "session_id"
        assert error["message"].startswith(f"session_id: must be {IDENTIFIER_RULE} (got '")
    assert stack.fence_state() == before
    for unknown in ("/v1/sessions/ok/nowhere", "/v1/sessions/a%2Fb/nowhere", "/v1/sessions/a/b"):
        response = client.get(unknown)
        assert response.status_code == 404, unknown
        assert response.json()["error"] == {
            "code": "not_found",
            "message": "no such path",
            "field": None,
            "run_id": None,
            "details": [],
        }


def test_an_unknown_run_is_404_naming_the_run_asked_for(client: httpx.Client):
    for response in (
        client.get("/v1/runs/no-such-run"),
        client.get("/v1/runs/no-such-run", params={"wait": 5}),
        client.post("/v1/runs/no-such-run/cancel"),
    ):
        assert response.status_code == 404, response.text
        error = response.json()["error"]
        assert error["code"] == "not_found" and error["run_id"] == "no-such-run"


def test_unknown_runs_paths_and_methods_use_the_error_shape(client: httpx.Client):
    for response, status, code in [
        (client.get("/v1/runs/no-such-run"), 404, "not_found"),
        (client.get("/v1/runs/no-such-run?wait=5"), 404, "not_found"),
        (client.get("/v1/nowhere"), 404, "not_found"),
        (client.delete("/v1/runs/no-such-run"), 405, "method_not_allowed"),
    ]:
        assert response.status_code == status
        assert response.json()["error"]["code"] == code


def sample(text: str, name: str) -> float | None:
    for line in text.splitlines():
        metric, _, value = line.rpartition(" ")
        if metric == name:
            return float(value)
    return None


def test_healthz_and_metrics_report_gateway_runtime_and_worker_processes(
    stack: Stack, client: httpx.Client
):
    # a stand-in worker process writes a counter to the shared multiprocess directory
    script = (
        "from prometheus_client import Counter; "
        "Counter('fence_standin_turns', 'turns', ['state']).labels('succeeded').inc(3)"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(stack.metrics_dir)}
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=60)
    key = new_key()
    session = f"metrics-{key}"
    first = submit(client, session, f"key={key} block").json()
    submit(client, session, "queued one")
    submit(client, session, "queued two")
    try:
        stack.runtime.wait_entered(key)
        with httpx.Client(base_url=stack.base_url) as anonymous:
            health = anonymous.get("/healthz")
            assert anonymous.request("PROPFIND", "/healthz").status_code == 405
            metrics = anonymous.get("/metrics")
    finally:
        stack.runtime.release(key)
    finished(client, first["run_id"])

    assert health.status_code == 200
    assert health.json() == {
        "status": "ok",
        "components": {"redis": {"ok": True, "error": None}, "memory": {"ok": True, "error": None}},
    }
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    submits = 'fence_gateway_requests_total{method="POST",route="/v1/sessions/{session_id}/runs"'
    assert sample(text, submits + ',status="202"}') >= 3
    brewed = 'fence_gateway_requests_total{method="other",route="/healthz",status="405"}'
    assert sample(text, brewed) == 1  # odd methods share one label value
    assert sample(text, 'fence_standin_turns_total{state="succeeded"}') == 3
    assert sample(text, "fence_runtime_scrape_ok") == 1
    assert sample(text, "fence_runtime_queued_runs") >= 2
    assert sample(text, "fence_runtime_max_session_queue_depth") >= 2
    assert sample(text, "fence_runtime_busy_sessions") >= 1


def test_healthz_names_the_failed_component_and_loopback_runs_without_auth(tmp_path):
    """Memory in a directory that does not exist, then Redis stopped: 503 each time."""
    redis_process, redis_url = start_redis(tmp_path / "redis")
    env = {
        "FENCE_REDIS_URL": redis_url,
        "FENCE_MEMORY": f"sqlite:///{tmp_path}/missing-dir/memory.db",
        "FENCE_API_TOKENS": "",
        "PYTHONPATH": str(REPO),
    }
    gateway, base_url = launch_gateway(env, tmp_path, "gateway-down")
    try:
        with httpx.Client(base_url=base_url, timeout=30) as client:
            assert client.get("/v1/sessions/open").status_code == 200  # no token: loopback
            memory_down = client.get("/healthz")
            redis_process.stop()
            both_down = client.get("/healthz")
            submit_down = submit(client, "open", "hello")
    finally:
        gateway.stop()
        redis_process.stop()

    assert memory_down.status_code == 503
    components = memory_down.json()["components"]
    assert components["redis"] == {"ok": True, "error": None}
    assert components["memory"]["ok"] is False and "does not exist" in components["memory"]["error"]
    assert both_down.status_code == 503 and both_down.json()["status"] == "unavailable"
    assert both_down.json()["components"]["redis"]["ok"] is False
    assert "ConnectionError" in both_down.json()["components"]["redis"]["error"]
    assert submit_down.status_code == 503
    assert submit_down.json()["error"]["code"] == "unavailable"


def test_history_from_a_database_that_does_not_exist_is_404_and_creates_none(
    stack: Stack, tmp_path
):
    """Reads never create a SQLite file: a gateway pointed at the wrong path says so."""
    database = tmp_path / "absent.db"
    env = {**stack.runtime.env, "FENCE_MEMORY": f"sqlite:///{database}", "FENCE_API_TOKENS": ""}
    gateway, base_url = launch_gateway(env, tmp_path, "gateway-no-database")
    try:
        with httpx.Client(base_url=base_url, timeout=30) as client:
            history = client.get("/v1/sessions/s1/messages")
            health = client.get("/healthz")
    finally:
        gateway.stop()

    assert history.status_code == 404, history.text
    error = history.json()["error"]
    assert error["code"] == "not_found" and error["field"] is None
    assert error["message"] == (
        "history: the memory database (FENCE_MEMORY) does not exist yet; "
        "no turn has been written to it"
    )
    assert health.status_code == 200  # nothing written yet is not an outage
    assert not database.exists()


def test_the_launcher_refuses_a_public_address_without_tokens(tmp_path):
    env = {**os.environ, "FENCE_API_TOKENS": "", "FENCE_REDIS_URL": "redis://127.0.0.1:1/0"}
    argv = [sys.executable, "-m", "producer.gateway", "--host", "0.0.0.0", "--port", "8000"]
    refused = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2
    assert "refusing to serve on 0.0.0.0:8000 without authentication" in refused.stderr
    assert "FENCE_API_TOKENS" in refused.stderr and "Uvicorn" not in refused.stderr


def test_create_app_requires_tokens_when_auth_is_required():
    from fence.settings import Settings
    from producer.gateway import GatewayConfigError, create_app, is_loopback

    with pytest.raises(GatewayConfigError, match="FENCE_API_TOKENS"):
        create_app(Settings(memory="fleeting://"), require_auth=True)
    assert [is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "127.8.0.1")] == [True] * 4
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.1", "example.com"))


def test_concurrent_submits_to_one_session_keep_their_order(stack: Stack):
    """Many HTTP clients at once: every run accepted once and run once, one at a time."""
    session = f"burst-{new_key()}"

    def send(n: int) -> str:
        with stack.client() as client:
            response = submit(client, session, f"burst {n}")
            assert response.status_code == 202, response.text
            return response.json()["run_id"]

    with ThreadPoolExecutor(8) as pool:
        run_ids = list(pool.map(send, range(24)))
    with stack.client() as client:
        records = [finished(client, run_id) for run_id in run_ids]
    assert all(r["state"] == "succeeded" for r in records)
    records.sort(key=lambda r: r["started_at"])
    for earlier, later in zip(records, records[1:], strict=False):
        assert earlier["finished_at"] <= later["started_at"], "turns of one session overlapped"
    users = [m.content for m in stack.runtime.memory(session).get_messages() if m.role == "user"]
    assert sorted(users) == sorted(f"burst {n}" for n in range(24))
