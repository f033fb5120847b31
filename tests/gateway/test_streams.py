"""Live runs over real HTTP: the run, session and submit-and-stream event streams of the
gateway, against real Redis and a real Celery worker; order and completeness under
concurrent sessions, resume with ``Last-Event-ID``, refusals before the stream,
heartbeats on an idle stream. Text deltas may or may not be in a run's stream: the
assertions hold either way."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import jsonschema
import pytest

from fence.runs import EventType
from tests.support import new_key

from .conftest import HEARTBEAT_S, Stack, launch_gateway
from .sse import Frame, events, frames, stream_events
from .test_api import finished, submit

SESSIONS, TURNS = 20, 5
STREAM_TIMEOUT_S = 60


def id_key(event_id: str) -> tuple[int, int]:
    ms, seq = event_id.split("-")
    return int(ms), int(seq)


def check_run_stream(stream: list[Frame], run_id: str, session_id: str) -> None:
    """A whole run: ids strictly increasing, every frame the event it names, from its
    run.accepted to exactly one run.finished (its last), after the turn was committed."""
    ids = [id_key(frame.id) for frame in stream]
    assert ids == sorted(set(ids)), "event ids must strictly increase"
    for frame in stream:
        assert frame.data["id"] == frame.id and frame.data["type"] == frame.event
        assert (frame.data["run_id"], frame.data["session_id"]) == (run_id, session_id)
    kinds = [frame.event for frame in stream]
    assert set(kinds) <= {kind.value for kind in EventType}
    assert kinds[0] == "run.accepted" and kinds[-1] == "run.finished"
    assert kinds.count("run.finished") == 1 and "turn.started" in kinds
    if stream[-1].data["data"]["state"] == "succeeded":
        assert kinds.index("turn.committed") < kinds.index("run.finished")


def answer_of(stream: list[Frame]) -> str:
    """The text the last attempt generated: its text deltas, concatenated."""
    last_start = max(i for i, frame in enumerate(stream) if frame.event == "turn.started")
    texts = [f.data["data"]["text"] for f in stream[last_start:] if f.event == "text.delta"]
    return "".join(texts)


def open_streams(client: httpx.Client) -> float:
    """The gateway's gauge of event streams it holds open now."""
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("fence_gateway_open_streams"):
            return float(line.split()[-1])
    return 0.0


def wait_for_open_streams(client: httpx.Client, count: int) -> None:
    deadline = time.monotonic() + STREAM_TIMEOUT_S
    while open_streams(client) < count:
        assert time.monotonic() < deadline, f"{open_streams(client)} of {count} streams open"


def run_stream(stack: Stack, run_id: str) -> list[Frame]:
    with stack.client() as client:
        return stream_events(client, f"/v1/runs/{run_id}/events")


def session_stream(stack: Stack, session_id: str, runs: int) -> list[Frame]:
    """The session's events from its start until ``runs`` runs finished."""
    deadline = time.monotonic() + STREAM_TIMEOUT_S
    found: list[Frame] = []
    with stack.client() as client, client.stream("GET", f"/v1/sessions/{session_id}/events") as r:
        assert r.status_code == 200
        for frame in frames(r):  # heartbeats come every HEARTBEAT_S: the deadline is seen
            assert time.monotonic() < deadline, f"{session_id}: {len(found)} events so far"
            if frame.comment is None:
                found.append(frame)
            if sum(frame.event == "run.finished" for frame in found) == runs:
                return found
    raise AssertionError("the session stream ended by itself")


def test_concurrent_sessions_stream_every_run_in_order_exactly_once(stack: Stack, client):
    key = new_key()
    sessions = [f"live-{key}-{n}" for n in range(SESSIONS)]
    runs = {
        session: [
            submit(client, session, f"key={key}-{n} block" if turn == 0 else f"turn {turn}").json()[
                "run_id"
            ]
            for turn in range(TURNS)
        ]
        for n, session in enumerate(sessions)
    }
    try:
        with ThreadPoolExecutor(SESSIONS * (TURNS + 1)) as pool:
            by_run = {
                run_id: pool.submit(run_stream, stack, run_id)
                for ids in runs.values()
                for run_id in ids
            }
            by_session = {s: pool.submit(session_stream, stack, s, TURNS) for s in sessions}
            wait_for_open_streams(client, len(by_run) + len(by_session))  # live, waiting
            for n in range(SESSIONS):
                stack.runtime.release(f"{key}-{n}")
            run_streams = {run_id: f.result(STREAM_TIMEOUT_S) for run_id, f in by_run.items()}
            session_streams = {s: f.result(STREAM_TIMEOUT_S) for s, f in by_session.items()}
    finally:
        for n in range(SESSIONS):
            stack.runtime.release(f"{key}-{n}")

    for session, ids in runs.items():
        whole = session_streams[session]
        keys = [id_key(frame.id) for frame in whole]
        assert keys == sorted(set(keys)), "a session's event ids must strictly increase"
        assert {frame.data["run_id"] for frame in whole} == set(ids)
        for run_id in ids:
            check_run_stream(run_streams[run_id], run_id, session)
            assert run_streams[run_id][-1].data["data"]["state"] == "succeeded"
            result = client.get(f"/v1/runs/{run_id}").json()["result"]
            assert answer_of(run_streams[run_id]) == result, "the deltas make the answer"
            # the run's log is its slice of the session's: the same events, the same ids
            assert [f for f in whole if f.data["run_id"] == run_id] == run_streams[run_id]
        ended = [frame.data["run_id"] for frame in whole if frame.event == "run.finished"]
        assert ended == ids, "a session's runs finish in the order they were submitted"


def test_a_client_that_reconnects_with_last_event_id_gets_exactly_the_rest(
    stack: Stack, client: httpx.Client
):
    key = new_key()
    session = f"resume-{key}"
    run_id = submit(client, session, f"key={key} block").json()["run_id"]
    path = f"/v1/runs/{run_id}/events"
    try:
        stack.runtime.wait_entered(key)
        first = stream_events(client, path, limit=2)  # then it hangs up mid-run
    finally:
        stack.runtime.release(key)
    assert [frame.event for frame in first] == ["run.accepted", "turn.started"]

    rest = stream_events(client, path, headers={"Last-Event-ID": first[-1].id})
    whole = stream_events(client, path)
    assert first + rest == whole
    check_run_stream(whole, run_id, session)
    for k in range(1, len(whole)):  # cut after any K events: exactly the rest, no gap
        assert stream_events(client, path, headers={"Last-Event-ID": whole[k - 1].id}) == whole[k:]
    assert stream_events(client, path, params={"after": whole[0].id}) == whole[1:]
    both = {"params": {"after": whole[0].id}, "headers": {"Last-Event-ID": first[-1].id}}
    assert stream_events(client, path, **both) == rest, "the header wins over ?after="
    sessions = f"/v1/sessions/{session}/events"
    assert stream_events(client, sessions, limit=len(whole)) == whole
    assert stream_events(client, sessions, limit=len(rest), params={"after": first[-1].id}) == rest
    # the client that hung up changed nothing: the turn is in memory once
    assert finished(client, run_id)["state"] == "succeeded"
    assert stack.runtime.contents(session) == [f"key={key} block", f"answer to: key={key} block"]


BAD_IDS = {
    "word": "latest",
    "three-parts": "1-2-3",
    "no-sequence": "1700000000000",
    "empty": "",
    "arabic-indic-digits": "١٢٣-٠",
    "above-2**64": "18446744073709551616-0",
}


@pytest.mark.parametrize("bad", BAD_IDS.values(), ids=BAD_IDS)
def test_a_malformed_resume_id_is_422_naming_where_it_came_from(stack: Stack, client, bad):
    run_id = submit(client, f"bad-id-{new_key()}", "hi").json()["run_id"]
    for path in (f"/v1/runs/{run_id}/events", "/v1/sessions/bad-id/events"):
        refusals = {
            "Last-Event-ID": client.get(path, headers={"Last-Event-ID": bad.encode()}),
            "after": client.get(path, params={"after": bad}),
        }
        for field, response in refusals.items():
            assert response.status_code == 422, (path, field, response.text)
            assert response.headers["content-type"] == "application/json"
            error = response.json()["error"]
            assert (error["code"], error["field"]) == ("invalid", field)
            assert error["message"] == f"{field}: must be an event id like 1700000000000-0"


def test_an_unknown_run_or_an_invalid_session_is_refused_before_the_stream(client):
    missing = client.get("/v1/runs/no-such-run/events", headers={"Last-Event-ID": "1-0"})
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/json"
    assert missing.json()["error"]["code"] == "not_found"
    assert missing.json()["error"]["run_id"] == "no-such-run"
    invalid = client.get("/v1/sessions/not%20valid/events")
    assert invalid.status_code == 422 and invalid.json()["error"]["field"] == "session_id"


def test_an_idle_stream_gets_a_keep_alive_comment_every_heartbeat(client: httpx.Client):
    seen: list[tuple[str | None, float]] = []
    with client.stream("GET", f"/v1/sessions/idle-{new_key()}/events") as response:
        assert response.status_code == 200
        started = time.monotonic()
        for frame in frames(response):
            seen.append((frame.comment, time.monotonic() - started))
            if len(seen) == 3:
                break
    assert [comment for comment, _ in seen] == ["keep-alive"] * 3  # and no event
    gaps = [b - a for (_, a), (_, b) in zip([(None, 0.0), *seen], seen, strict=False)]
    assert all(HEARTBEAT_S * 0.5 < gap < HEARTBEAT_S * 4 for gap in gaps), gaps


def test_submit_and_stream_answers_with_the_new_runs_events_to_its_end(
    stack: Stack, client: httpx.Client
):
    session = f"submit-stream-{new_key()}"
    url = f"/v1/sessions/{session}/runs/stream"
    with client.stream("POST", url, json={"message": "hello stream"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = events(response)
    run_id = stream[0].data["run_id"]
    assert response.headers["location"] == f"/v1/runs/{run_id}"
    check_run_stream(stream, run_id, session)
    assert stream[0].data["data"] == {"position": 0}
    assert stream[-1].data["data"]["state"] == "succeeded"
    assert finished(client, run_id)["result"] == "answer to: hello stream"
    assert stream_events(client, f"/v1/runs/{run_id}/events") == stream

    # an idempotent retry streams the run first accepted, from its start
    first = stream_events_of_submit(client, url, {"message": "once", "idempotency_key": "k-1"})
    again = stream_events_of_submit(client, url, {"message": "once", "idempotency_key": "k-1"})
    assert again == first and first[0].data["data"] == {"position": 0}


def stream_events_of_submit(client: httpx.Client, url: str, body: dict) -> list[Frame]:
    with client.stream("POST", url, json=body) as response:
        assert response.status_code == 200, response.read()
        return events(response)


BAD_SUBMITS = {
    "empty-message": ("ok-session", {"message": ""}, "message"),
    "unknown-agent": ("ok-session", {"message": "hi", "agent": "nope"}, "agent"),
    "unknown-field": ("ok-session", {"message": "hi", "colour": "red"}, "colour"),
    "invalid-session": ("not%20valid", {"message": "hi"}, "session_id"),
}


@pytest.mark.parametrize(("session", "body", "field"), BAD_SUBMITS.values(), ids=BAD_SUBMITS)
def test_submit_and_stream_refuses_what_submit_refuses_and_queues_nothing(
    stack: Stack, client: httpx.Client, session, body, field
):
    before = stack.fence_state()
    streamed = client.post(f"/v1/sessions/{session}/runs/stream", json=body)
    plain = client.post(f"/v1/sessions/{session}/runs", json=body)

    assert streamed.status_code == plain.status_code == 422
    assert streamed.headers["content-type"] == "application/json"
    assert streamed.json() == plain.json() and streamed.json()["error"]["field"] == field
    assert stack.fence_state() == before


def test_submit_and_stream_to_a_busy_session_with_reject_is_409(stack: Stack, client):
    key = new_key()
    session = f"stream-reject-{key}"
    busy = submit(client, session, f"key={key} block").json()["run_id"]
    try:
        stack.runtime.wait_entered(key)
        refused = client.post(
            f"/v1/sessions/{session}/runs/stream", json={"message": "me too", "strategy": "reject"}
        )
    finally:
        stack.runtime.release(key)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "rejected"
    assert finished(client, busy)["state"] == "succeeded"


def test_the_document_declares_event_streams_and_their_refusals(stack: Stack, client):
    document = httpx.get(f"{stack.base_url}/openapi.json").json()
    operations = {
        ("/v1/runs/{run_id}/events", "get"): {"404", "422"},
        ("/v1/sessions/{session_id}/events", "get"): {"422"},
        ("/v1/sessions/{session_id}/runs/stream", "post"): {"409", "422"},
    }
    for (path, method), refusals in operations.items():
        responses = document["paths"][path][method]["responses"]
        assert list(responses["200"]["content"]) == ["text/event-stream"]
        for status in refusals | {"401"}:
            schema = responses[status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, (path, status)
    stream = document["paths"]["/v1/runs/{run_id}/events"]["get"]["responses"]["200"]
    one_event = stream["content"]["text/event-stream"]["schema"]
    run_id = submit(client, f"documented-{new_key()}", "hi").json()["run_id"]
    for frame in stream_events(client, f"/v1/runs/{run_id}/events"):
        wire = {"id": frame.id, "event": frame.event, "data": "{}"}
        jsonschema.validate(wire, one_event)
        jsonschema.validate(frame.data, one_event["properties"]["data"]["contentSchema"])


def test_streams_beyond_the_limit_are_503_before_they_start_and_queue_nothing(
    stack: Stack, tmp_path
):
    env = {**stack.runtime.env, "FENCE_API_TOKENS": "", "FENCE_API_MAX_STREAMS": "2"}
    gateway, base_url = launch_gateway(env, tmp_path, "gateway-two-streams")
    try:
        with httpx.Client(base_url=base_url, timeout=30) as client:
            with (
                client.stream("GET", "/v1/sessions/full-1/events") as one,
                client.stream("GET", "/v1/sessions/full-2/events") as two,
            ):
                assert one.status_code == two.status_code == 200
                open_now = client.get("/metrics").text
                before = stack.fence_state()
                refused = [
                    client.get("/v1/sessions/full-3/events"),
                    client.post("/v1/sessions/full-3/runs/stream", json={"message": "hi"}),
                ]
                assert stack.fence_state() == before  # the submit that would stream: none
            deadline = time.monotonic() + 10  # the gateway hears of the hang-ups soon after
            while opened(client, "/v1/sessions/full-1/events") != 200:
                assert time.monotonic() < deadline, "the slots did not come back"
                time.sleep(0.05)
    finally:
        gateway.stop()

    assert "fence_gateway_open_streams 2.0" in open_now
    for response in refused:
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        error = response.json()["error"]
        assert error["code"] == "unavailable" and "FENCE_API_MAX_STREAMS" in error["message"]


def opened(client: httpx.Client, path: str) -> int:
    """The status a stream request gets; the stream, if it opened, is left at once."""
    with client.stream("GET", path) as response:
        return response.status_code
