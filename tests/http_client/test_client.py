"""``FenceClient`` and ``AsyncFenceClient`` against a real gateway, worker and Redis:
every method, every error code the API answers with as its typed exception, event
streams resumed, and retries that survive a gateway restart without a second run."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import uuid

import anyio
import httpx
import pytest

from fence.runs import RunState
from producer.api_models import HistoryPage, RunEventView, RunView, SessionsPage, SubmitResponse
from producer.http import (
    AsyncFenceClient,
    FenceClient,
    GatewayUnreachable,
    IdempotencyConflict,
    InvalidRequest,
    NotFound,
    NotWaiting,
    Rejected,
    TooLarge,
    Unauthorized,
    Unavailable,
    WaitTimeout,
    calls,
)
from tests.http_client.conftest import (
    MAX_BODY,
    MAX_MESSAGE,
    TOKEN,
    AsyncRecording,
    Recording,
    Stack,
)
from tests.support import REPO


def new_session(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def blocked_run(stack: Stack, client: FenceClient, session: str) -> tuple[str, str]:
    """A run of the controlled agent whose model call waits for ``release(key)``."""
    key = uuid.uuid4().hex[:10]
    run = client.submit(session, f"key={key} block", agent="controlled")
    stack.runtime.wait_entered(key)
    return run.run_id, key


def waiting_run(client: FenceClient, session: str) -> str:
    """A run of the approver agent, once it waits for a decision on its refund call."""
    run = client.submit(session, "refund", agent="approver")
    for event in client.events(run.run_id):
        if event.type == "approval.requested":
            return run.run_id
    raise AssertionError("the run never asked for approval")


def find_session(client: FenceClient, session: str, state: str) -> bool:
    """Whether ``session`` is listed in ``state``, paging through every session."""
    cursor = None
    while True:
        page = client.sessions(state=state, limit=2, cursor=cursor)
        if any(s.session_id == session for s in page.sessions):
            return True
        if page.next_cursor is None:
            return False
        cursor = page.next_cursor


# -- every method -----------------------------------------------------------------------


def test_submit_wait_status_session_runs_and_history(client: FenceClient):
    session = new_session("sync")

    accepted = client.submit(session, "hello", metadata={"ticket": 7}, idempotency_key="k-1")
    view = client.wait(accepted.run_id, timeout=60)

    assert isinstance(accepted, SubmitResponse)
    assert (accepted.session_id, accepted.state, accepted.position) == (
        session,
        RunState.QUEUED,
        0,
    )
    assert isinstance(view, RunView) and view.state is RunState.SUCCEEDED
    assert (view.result, view.metadata, view.idempotency_key) == (
        "answer to: hello",
        {"ticket": 7},
        "k-1",
    )
    assert client.status(accepted.run_id) == view
    again = client.submit(session, "hello", metadata={"ticket": 7}, idempotency_key="k-1")
    assert (again.run_id, again.position) == (accepted.run_id, None)

    second = client.submit(session, "again")
    client.wait(second.run_id)
    runs = client.runs(session, limit=1)
    older = client.runs(session, limit=1, cursor=runs.next_cursor)
    assert [r.run_id for r in runs.runs + older.runs] == [second.run_id, accepted.run_id]
    assert older.next_cursor is None

    newest = client.history(session, limit=3)
    assert isinstance(newest, HistoryPage)
    assert [m.content for m in newest.messages] == ["answer to: again", "again", "answer to: hello"]
    oldest = client.history(session, limit=3, before_seq=newest.next_before_seq)
    assert [m.content for m in oldest.messages] == ["hello"] and oldest.next_before_seq is None

    info = client.session(session)
    assert (info.state, info.active_run, info.queued, info.queued_count) == ("idle", None, [], 0)
    assert find_session(client, session, "idle")


def test_a_busy_session_cancel_and_a_wait_that_ends_first(stack: Stack, client: FenceClient):
    session = new_session("busy")
    running, key = blocked_run(stack, client, session)
    queued = client.submit(session, "behind it")

    info = client.session(session)
    assert (info.state, info.active_run, info.queued) == ("busy", running, [queued.run_id])
    assert find_session(client, session, "busy")
    with pytest.raises(WaitTimeout) as timed_out:
        client.wait(running, timeout=0.5)
    assert timed_out.value.run.state is RunState.RUNNING

    cancelled = client.cancel(queued.run_id)
    assert cancelled.state is RunState.CANCELLED
    assert client.cancel(queued.run_id) == cancelled  # a finished run is unchanged

    stack.runtime.release(key)
    assert client.wait(running, timeout=None).state is RunState.SUCCEEDED


def test_a_wait_is_sliced_into_long_polls_of_at_most_60_s():
    assert calls.Waiting("r1", 600).call().params == {"wait": 60.0}
    assert calls.Waiting("r1", None).call().params == {"wait": 60.0}
    assert 0 < calls.Waiting("r1", 5).call().params["wait"] <= 5


def test_approve_and_deny(client: FenceClient):
    session = new_session("decide")
    edited, denied = waiting_run(client, session + "-a"), waiting_run(client, session + "-d")
    assert client.status(edited).approval.arguments == {"order_id": "A1", "cents": 500}

    with pytest.raises(InvalidRequest) as bad:
        client.approve(edited, {"order_id": "A1", "cents": "x"})
    assert (bad.value.status, bad.value.field) == (422, "arguments.cents")

    assert client.approve(edited, {"order_id": "B2", "cents": 1}).state is RunState.QUEUED
    assert client.deny(denied, "no").state is RunState.QUEUED
    assert client.wait(edited).result == "done: refunded 1 on B2"
    assert client.wait(denied).result == "done: denied: no"

    with pytest.raises(NotWaiting) as again:
        client.deny(edited)
    assert (again.value.status, again.value.code, again.value.run_id) == (
        409,
        "not_waiting",
        edited,
    )


def test_events_follow_a_run_and_resume_after_an_event(stack: Stack, client: FenceClient):
    session = new_session("events")
    run_id, key = blocked_run(stack, client, session)
    stream = client.events(run_id)
    first = [next(stream), next(stream)]
    assert [e.type for e in first] == ["run.accepted", "turn.started"]

    stack.runtime.release(key)
    rest = list(stream)

    assert all(isinstance(e, RunEventView) for e in rest)
    assert rest[-1].type == "run.finished" and rest[-1].data["state"] == "succeeded"
    assert [e.id for e in client.events(run_id)] == [e.id for e in first + rest]
    assert list(client.events(run_id, after=first[0].id)) == first[1:] + rest
    assert list(client.events(run_id, after=rest[-1].id)) == []  # ends: nothing comes after


# -- every error code -------------------------------------------------------------------


def test_each_error_code_is_its_own_exception(stack: Stack, client: FenceClient):
    session = new_session("errors")
    with pytest.raises(InvalidRequest) as unknown:
        client.submit(session, "hi", agent="nope")
    assert (unknown.value.status, unknown.value.code, unknown.value.field) == (
        422,
        "invalid",
        "agent",
    )
    assert "unknown agent 'nope'" in unknown.value.message
    assert [d.field for d in unknown.value.details] == ["agent"]

    with pytest.raises(InvalidRequest) as bad_id:
        client.runs("a/b")
    assert bad_id.value.field == "session_id"
    with pytest.raises(InvalidRequest) as bad_state:
        client.sessions(state="sleepy")
    assert bad_state.value.field == "state"
    with pytest.raises(InvalidRequest) as too_long:
        client.submit(session, "x" * (MAX_MESSAGE + 1))
    assert too_long.value.field == "message"
    with pytest.raises(TooLarge) as too_large:
        client.submit(session, "x" * MAX_BODY)
    assert (too_large.value.status, too_large.value.code) == (413, "too_large")

    with pytest.raises(NotFound) as missing:
        client.status("no-such-run")
    assert (missing.value.status, missing.value.run_id) == (404, "no-such-run")
    with pytest.raises(NotFound):
        list(client.events("no-such-run"))

    client.submit(session, "first", idempotency_key="order-17")
    with pytest.raises(IdempotencyConflict) as conflict:
        client.submit(session, "another", idempotency_key="order-17")
    assert (conflict.value.status, conflict.value.field) == (409, "idempotency_key")
    assert conflict.value.run_id

    busy = new_session("reject")
    running, key = blocked_run(stack, client, busy)
    with pytest.raises(Rejected) as rejected:
        client.submit(busy, "not now", strategy="reject")
    assert rejected.value.status == 409 and rejected.value.run_id != running
    assert client.status(rejected.value.run_id).state is RunState.REJECTED
    stack.runtime.release(key)

    with pytest.raises(NotWaiting):
        client.approve(client.wait(running).run_id)


def test_a_wrong_token_is_unauthorized_and_never_shown(stack: Stack):
    secret = "tok-wrong-0b5e9"
    with FenceClient(stack.gateway.url, token=secret) as client:
        with pytest.raises(Unauthorized) as refused:
            client.session("alice")
        assert (refused.value.status, refused.value.code) == (401, "unauthorized")
        shown = [str(refused.value), repr(refused.value), repr(client), repr(client.target)]
    with FenceClient("http://me:pw-9c2@127.0.0.1:1", token=secret, retries=0) as client:
        with pytest.raises(GatewayUnreachable) as down:
            client.status("r1")
        shown += [str(down.value), repr(down.value), repr(client)]
    assert all(secret not in text and "pw-9c2" not in text for text in shown), shown
    assert down.value.status is None and isinstance(down.value, Unavailable)


NO_SERVER_CODE = """
import sys
for name in ("fastapi", "starlette", "uvicorn", "sse_starlette", "celery", "workers"):
    sys.modules[name] = None  # importing any of them now fails
from producer.http import FenceClient
with FenceClient() as client:
    run = client.submit("no-server-code", "hello")
    print(client.wait(run.run_id).result)
"""


def test_the_client_needs_no_gateway_or_worker_code(stack: Stack):
    env = {**os.environ, "FENCE_API_URL": stack.gateway.url, "FENCE_API_TOKEN": TOKEN}
    done = subprocess.run(
        [sys.executable, "-c", NO_SERVER_CODE],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "answer to: hello\n"


def test_url_and_token_come_from_the_environment(stack: Stack, monkeypatch):
    monkeypatch.setenv("FENCE_API_URL", stack.gateway.url)
    monkeypatch.setenv("FENCE_API_TOKEN", TOKEN)
    with FenceClient() as client:
        assert client.session("env-session").state == "idle"
    monkeypatch.delenv("FENCE_API_URL")
    with pytest.raises(ValueError, match="FENCE_API_URL"):
        FenceClient()


# -- retries ----------------------------------------------------------------------------


def submits_of(transport: Recording) -> list[tuple[str, str, int | None]]:
    return [t for t in transport.tries if t[0] == "POST"]


def test_a_submit_retried_across_a_gateway_restart_is_one_run(spare_gateway):
    gateway = spare_gateway()
    session = new_session("restart")
    refused = threading.Event()
    transport = Recording(lambda _, status: status is None and refused.set())
    client = FenceClient(gateway.url, token=TOKEN, retries=40, backoff=0.05, transport=transport)
    gateway.stop()
    result: list[SubmitResponse] = []
    submitting = threading.Thread(target=lambda: result.append(client.submit(session, "hi")))

    submitting.start()
    assert refused.wait(30), "the submit never tried the stopped gateway"
    gateway.start()
    submitting.join(60)

    [accepted] = result
    assert submits_of(transport)[0][2] is None and submits_of(transport)[-1][2] == 202
    runs = client.runs(session).runs
    assert [r.run_id for r in runs] == [accepted.run_id]
    assert client.wait(accepted.run_id).result == "answer to: hi"
    client.close()


class LosesFirstAnswer(Recording):
    """Delivers the first POST to a path ending in ``path_end`` to the gateway, then loses
    its answer (the connection breaks), as a gateway dying right after doing it would;
    keeps the body of each such POST."""

    def __init__(self, path_end: str) -> None:
        super().__init__()
        self.path_end = path_end
        self.bodies: list[dict] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.method == "POST" and request.url.path.endswith(self.path_end):
            self.bodies.append(json.loads(request.content))
            if len(self.bodies) == 1:
                response.read()
                raise httpx.ReadError("connection lost", request=request)
        return response


def test_a_submit_whose_answer_was_lost_is_retried_with_its_key(stack: Stack):
    session = new_session("lost")
    transport = LosesFirstAnswer("/runs")
    with stack.client(retries=2, backoff=0.05, transport=transport) as client:
        accepted = client.submit(session, "only once")

        first, retried = transport.bodies
        assert first == retried and first["idempotency_key"].startswith("client-")
        assert accepted.position is None  # the run the first try made
        assert [r.run_id for r in client.runs(session).runs] == [accepted.run_id]


def test_approvals_are_not_retried_once_they_may_have_arrived(stack: Stack):
    transport = LosesFirstAnswer("/approval")
    with stack.client(retries=3, backoff=0.05, transport=transport) as client:
        run_id = waiting_run(client, new_session("no-retry"))
        with pytest.raises(GatewayUnreachable):
            client.approve(run_id)
        assert len(transport.bodies) == 1
        assert client.wait(run_id).result == "done: refunded 500 on A1"


def test_a_503_with_retry_after_is_retried(stack: Stack, client: FenceClient, spare_gateway):
    gateway = spare_gateway(FENCE_API_MAX_STREAMS="1")
    finished = client.submit(new_session("slots"), "hi")
    client.wait(finished.run_id)
    refused = threading.Event()
    transport = Recording(lambda _, status: status == 503 and refused.set())
    retrying = FenceClient(gateway.url, token=TOKEN, retries=5, backoff=0.05, transport=transport)
    holder = httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {TOKEN}"})
    running, key = blocked_run(stack, client, new_session("slot-holder"))
    read: list[list[RunEventView]] = []
    with holder.stream("GET", f"/v1/runs/{running}/events") as held:
        assert held.status_code == 200
        reading = threading.Thread(
            target=lambda: read.append(list(retrying.events(finished.run_id)))
        )
        reading.start()
        assert refused.wait(30), "the second stream was never refused"
    reading.join(30)

    *refusals, opened = [status for *_, status in transport.tries]
    assert opened == 200 and refusals and set(refusals) == {503}
    waited = [b - a for a, b in zip(transport.times, transport.times[1:], strict=False)]
    assert min(waited) >= 0.95, waited  # Retry-After: 1, not the 0.05 s backoff
    assert read[0][-1].type == "run.finished"
    stack.runtime.release(key)
    holder.close()
    retrying.close()


def test_an_event_stream_is_resumed_across_a_gateway_restart(stack: Stack, spare_gateway):
    gateway = spare_gateway()
    refused = threading.Event()
    transport = Recording(lambda _, status: status is None and refused.set())
    client = FenceClient(gateway.url, token=TOKEN, retries=40, backoff=0.05, transport=transport)
    run_id, key = blocked_run(stack, client, new_session("resume"))
    stream = client.events(run_id)
    seen = [next(stream), next(stream)]
    rest: list[RunEventView] = []
    following = threading.Thread(target=lambda: rest.extend(stream))

    gateway.stop()
    following.start()
    assert refused.wait(30), "the stream was not resumed while the gateway was down"
    gateway.start()
    stack.runtime.release(key)
    following.join(60)

    ids = [e.id for e in seen + rest]
    assert ids == [e.id for e in client.events(run_id)]  # none lost, none repeated
    assert rest[-1].type == "run.finished"
    client.close()


# -- the async client -------------------------------------------------------------------


async def asked_for_approval(client: AsyncFenceClient, run_id: str) -> None:
    async with contextlib.aclosing(client.events(run_id)) as events:
        async for event in events:
            if event.type == "approval.requested":
                return
    raise AssertionError("the run never asked for approval")


@pytest.mark.anyio
async def test_the_async_client_does_every_call(stack: Stack):
    session = new_session("async")
    async with stack.async_client(retries=2, backoff=0.05) as client:
        accepted = await client.submit(session, "hello", idempotency_key="ak-1")
        view = await client.wait(accepted.run_id)
        assert view.result == "answer to: hello" and view.idempotency_key == "ak-1"
        assert await client.status(accepted.run_id) == view
        events = [e async for e in client.events(accepted.run_id)]
        assert events[-1].type == "run.finished"
        resumed = [e async for e in client.events(accepted.run_id, after=events[0].id)]
        assert resumed == events[1:]
        assert [e async for e in client.events(accepted.run_id, after=events[-1].id)] == []

        page = await client.history(session, limit=1)
        assert [m.content for m in page.messages] == ["answer to: hello"]
        older = await client.history(session, limit=1, before_seq=page.next_before_seq)
        assert [m.content for m in older.messages] == ["hello"]
        assert (await client.session(session)).state == "idle"
        assert [r.run_id for r in (await client.runs(session)).runs] == [accepted.run_id]
        listed = await client.sessions(state="idle", limit=500)
        assert isinstance(listed, SessionsPage)
        assert session in [s.session_id for s in listed.sessions]

        key = uuid.uuid4().hex[:10]
        blocking = await client.submit(session + "-c", f"key={key} block")
        queued = await client.submit(session + "-c", "behind it")
        assert (await client.cancel(queued.run_id)).state is RunState.CANCELLED
        stack.runtime.release(key)
        assert (await client.wait(blocking.run_id)).state is RunState.SUCCEEDED

        waiting = await client.submit(session + "-d", "refund", agent="approver")
        await asked_for_approval(client, waiting.run_id)
        assert (await client.approve(waiting.run_id, {"order_id": "C3", "cents": 2})).state
        assert (await client.wait(waiting.run_id)).result == "done: refunded 2 on C3"
        other = await client.submit(session + "-e", "refund", agent="approver")
        await asked_for_approval(client, other.run_id)
        await client.deny(other.run_id, "later")
        assert (await client.wait(other.run_id)).result == "done: denied: later"


@pytest.mark.anyio
async def test_the_async_client_raises_each_error_code(stack: Stack):
    session = new_session("async-errors")
    async with stack.async_client(retries=0) as client:
        with pytest.raises(InvalidRequest) as invalid:
            await client.submit(session, "hi", agent="nope")
        assert invalid.value.field == "agent"
        with pytest.raises(NotFound) as missing:
            await client.status("no-such-run")
        assert missing.value.run_id == "no-such-run"
        with pytest.raises(TooLarge):
            await client.submit(session, "x" * MAX_BODY)
        done = await client.submit(session, "one", idempotency_key="ak-2")
        with pytest.raises(IdempotencyConflict):
            await client.submit(session, "two", idempotency_key="ak-2")
        with pytest.raises(NotWaiting) as not_waiting:
            await client.approve((await client.wait(done.run_id)).run_id)
        assert not_waiting.value.run_id == done.run_id
        key = uuid.uuid4().hex[:10]
        blocked = await client.submit(session + "-b", f"key={key} block")
        with pytest.raises(WaitTimeout) as timed_out:
            await client.wait(blocked.run_id, timeout=0.3)
        assert not timed_out.value.run.state.terminal
        with pytest.raises(Rejected) as rejected:
            await client.submit(session + "-b", "not now", strategy="reject")
        assert rejected.value.run_id != blocked.run_id
        stack.runtime.release(key)
    async with AsyncFenceClient(stack.gateway.url, token="tok-wrong") as client:
        with pytest.raises(Unauthorized):
            await client.sessions()


@pytest.mark.anyio
async def test_the_async_client_retries_a_submit_across_a_restart(spare_gateway):
    gateway = spare_gateway()
    session = new_session("async-restart")
    refused = threading.Event()
    transport = AsyncRecording(lambda _, status: status is None and refused.set())
    gateway.stop()
    result: list[SubmitResponse] = []
    async with AsyncFenceClient(
        gateway.url, token=TOKEN, retries=40, backoff=0.05, transport=transport
    ) as client:

        async def submit() -> None:
            result.append(await client.submit(session, "hi"))

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(submit)
            assert await anyio.to_thread.run_sync(refused.wait, 30)
            await anyio.to_thread.run_sync(gateway.start)

        [accepted] = result
        assert [r.run_id for r in (await client.runs(session)).runs] == [accepted.run_id]
        assert (await client.wait(accepted.run_id)).result == "answer to: hi"
