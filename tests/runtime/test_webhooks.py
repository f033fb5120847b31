"""Webhooks against a real local HTTP receiver and real workers: a run's outcome is POSTed,
signed, when it ends in any state; retried with the same delivery id; refused at submit
unless allowlisted; never redirected; and sent even when its worker dies (the sweeper)."""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pydantic import ValidationError

from fence.runs import RunRecord, RunState, RunStore, keys
from fence.runs.schema import WebhookState
from fence.runs.scripts import WebhookClaim
from fence.settings import Settings, describe_settings_error
from fence.validation import InvalidInput
from producer import Producer

from .conftest import Runtime, empty_store, new_key, request

SECRET = "whk-test-Zq8vJkWpQz7Yx9Vb2KqH"
WEBHOOK_ENV = {
    "FENCE_WEBHOOK_SECRET": SECRET,
    "FENCE_WEBHOOK_BACKOFF_S": "0.05",
    "FENCE_WEBHOOK_TIMEOUT_S": "2",
    "FENCE_WEBHOOK_RETRY_FOR_S": "30",
}


@dataclass(frozen=True)
class Delivery:
    path: str
    headers: Message
    body: bytes

    @property
    def outcome(self) -> dict:
        return json.loads(self.body)


Answer = Callable[[int], "int | tuple[int, dict[str, str]]"]


class Receiver:
    """A webhook receiver on 127.0.0.1: records every POST, then answers the n-th (from 1)
    with ``answer(n)``: a status, or a status and headers. ``answer`` may block."""

    def __init__(self, answer: Answer = lambda n: 200) -> None:
        self.answer = answer
        self.deliveries: queue.Queue[Delivery] = queue.Queue()
        self.count = 0
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def next(self, timeout: float = 30) -> Delivery:
        return self.deliveries.get(timeout=timeout)

    def received(self, delivery: Delivery) -> int:
        with self._lock:
            self.count += 1
            self.deliveries.put(delivery)
            return self.count

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            answer = receiver.answer(receiver.received(Delivery(self.path, self.headers, body)))
            status, headers = answer if isinstance(answer, tuple) else (answer, {})
            try:
                self.send_response(status)
                for name, value in {**headers, "Content-Length": "0"}.items():
                    self.send_header(name, value)
                self.end_headers()
            except OSError:  # the worker is gone
                pass

        def log_message(self, *_: object) -> None:
            pass

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def verify(secret: str, delivery: Delivery) -> bool:
    """What a receiver does: HMAC-SHA256 over ``timestamp + "." + body``."""
    timestamp = delivery.headers["Fence-Webhook-Timestamp"]
    signed = timestamp.encode() + b"." + delivery.body
    expected = "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, delivery.headers["Fence-Webhook-Signature"])


def with_webhooks(runtime: Runtime, allow: str, **env: str) -> Runtime:
    """Webhooks on for the processes started from now on, and for the test's producer."""
    runtime.env.update({**WEBHOOK_ENV, "FENCE_WEBHOOK_ALLOW": allow, **env})
    fence_vars = {k: v for k, v in runtime.env.items() if k.startswith("FENCE_")}
    runtime.settings = Settings(
        **{k.removeprefix("FENCE_").lower(): v for k, v in fence_vars.items()}
    )
    return runtime


def settled(runtime: Runtime, run_id: str, timeout: float = 30) -> RunRecord:
    """The run's record once its webhook is no longer pending."""
    deadline = time.monotonic() + timeout
    while (record := runtime.producer.run(run_id).status()).webhook_state is WebhookState.PENDING:
        assert time.monotonic() < deadline, record
        time.sleep(0.05)
    return record


# -- at submit ----------------------------------------------------------------------------

ALLOW = "https://hooks.example.com/fence/,http://10.1.2.3:8080/"


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("https://internal.example.com/fence/", "FENCE_WEBHOOK_ALLOW"),
        ("http://hooks.example.com/fence/", "FENCE_WEBHOOK_ALLOW"),  # another scheme
        ("https://hooks.example.com:8443/fence/", "FENCE_WEBHOOK_ALLOW"),  # another port
        ("https://hooks.example.com/fence-other/x", "FENCE_WEBHOOK_ALLOW"),
        ("https://hooks.example.com/other", "FENCE_WEBHOOK_ALLOW"),
        ("http://10.1.2.3/", "FENCE_WEBHOOK_ALLOW"),  # port 80, not 8080
        ("https://hooks.example.com.evil.example/fence/", "FENCE_WEBHOOK_ALLOW"),
        ("https://hooks.example.com/fence/../admin", ". or .. path segments"),
        ("https://hooks.example.com/fence/%2e%2e/admin", ". or .. path segments"),
        ("https://hooks.example.com@169.254.169.254/fence/", "user name or password"),
        ("ftp://hooks.example.com/fence/", "http:// or https://"),
        ("hooks.example.com/fence/", "http:// or https://"),
        ("https://hooks.example.com/fence/" + "x" * 2_020, "longer than 2048 characters"),
        ("https://hooks.example.com/fence/ x", "ASCII with no spaces"),
        ("https://hooks.example.com/fence/#top", "#fragment"),
    ],
)
def test_a_webhook_not_allowlisted_or_malformed_is_refused_at_submit_writing_nothing(
    redis_url, url, rule
):
    store = empty_store(redis_url, webhook_allow=ALLOW)
    producer = Producer(settings=store.settings, agents=["demo"])

    with pytest.raises(InvalidInput) as raised:
        producer.submit("s1", "hi", agent="demo", webhook=url)

    assert raised.value.field == "webhook"
    assert str(raised.value).startswith("webhook: ") and rule in str(raised.value)
    assert "example" not in str(raised.value)  # neither the URL nor the allowlist
    assert store.redis.keys("*") == []


def test_webhooks_are_refused_while_the_allowlist_is_empty(redis_url):
    store = empty_store(redis_url)
    producer = Producer(settings=store.settings, agents=["demo"])

    with pytest.raises(InvalidInput, match="FENCE_WEBHOOK_ALLOW is empty") as raised:
        producer.submit("s1", "hi", agent="demo", webhook="https://hooks.example.com/")

    assert raised.value.field == "webhook"
    assert store.redis.keys("*") == []


def test_an_allowlisted_webhook_is_compared_after_normalising(redis_url):
    store = empty_store(redis_url, webhook_allow=ALLOW)
    producer = Producer(settings=store.settings, agents=["demo"])

    for url in (
        "HTTPS://Hooks.Example.COM:443/fence/",
        "https://hooks.example.com/fence/team/7?token=abc",
        "http://10.1.2.3:8080",
    ):
        record = producer.submit("s1", "hi", agent="demo", webhook=url).status()
        assert (record.webhook, record.webhook_state) == (url, WebhookState.PENDING)


@pytest.mark.parametrize(
    ("env", "rule"),
    [
        ({"FENCE_WEBHOOK_ALLOW": "https://ok.example/,hooks.example.com"}, "URL prefix"),
        ({"FENCE_WEBHOOK_ALLOW": "https://hooks.example.com/?k=v"}, "must not have a ?query"),
        ({"FENCE_WEBHOOK_SECRET": "change-me-webhook-secret"}, "placeholder"),
        ({"FENCE_WEBHOOK_SECRET": "short"}, "at least 16 characters"),
        (
            {
                "FENCE_WEBHOOK_RETRY_FOR_S": "100",
                "FENCE_RUN_TTL_S": "100",
                "FENCE_APPROVAL_TIMEOUT_S": "10",
            },
            "FENCE_RUN_TTL_S",
        ),
    ],
)
def test_webhook_settings_that_break_a_rule_are_refused_by_name(env, rule):
    with pytest.raises(ValidationError) as raised:
        Settings(**{k.removeprefix("FENCE_").lower(): v for k, v in env.items()})

    message = describe_settings_error(raised.value)
    assert message.startswith("FENCE_WEBHOOK_") and rule in message
    assert not any(value in message for value in env.values() if not value.isdigit())


# -- the delivery state, against Redis alone --------------------------------------------


def test_each_attempt_of_a_webhook_is_claimed_once_and_only_after_the_run_ended(redis_url):
    store = empty_store(redis_url, webhook_allow="https://hooks.example.com/")
    run_id = store.submit(request(webhook="https://hooks.example.com/x")).run_id
    member = keys.webhook_due_member("s1", run_id)
    assert store.claim_webhook("s1", run_id, 1) is WebhookClaim.UNFINISHED

    finished_at = time.time()
    store.finish(store.acquire("s1", run_id, "w1"), RunState.SUCCEEDED, result="ok")
    assert store.redis.zscore(keys.WEBHOOKS_DUE, member) >= finished_at  # before a publish
    first = store.claim_webhook("s1", run_id, 1)
    assert isinstance(first, RunRecord) and first.result == "ok"
    assert store.claim_webhook("s1", run_id, 1) is WebhookClaim.STALE  # a duplicate task
    assert store.claim_webhook("s1", run_id, 3) is WebhookClaim.STALE

    assert store.record_webhook("s1", run_id, 1, WebhookState.PENDING, error="HTTP 500")
    assert isinstance(store.claim_webhook("s1", run_id, 2), RunRecord)
    assert not store.record_webhook("s1", run_id, 1, WebhookState.FAILED, error="late")
    assert store.record_webhook("s1", run_id, 2, WebhookState.DELIVERED)

    record = store.get(run_id)
    assert (record.webhook_state, record.webhook_attempts) == (WebhookState.DELIVERED, 2)
    assert record.webhook_error is None
    assert store.claim_webhook("s1", run_id, 3) is WebhookClaim.SETTLED
    assert store.due_webhooks(now=time.time() + 3_600) == []
    assert store.redis.zcard(keys.WEBHOOKS_DUE) == 0


def test_the_sweeper_sends_webhooks_left_due_and_forgets_settled_ones(redis_url):
    store: RunStore = empty_store(
        redis_url, webhook_allow="https://hooks.example.com/", stall_after_s=5
    )
    plain = store.submit(request()).run_id
    hooked = store.submit(request(webhook="https://hooks.example.com/x")).run_id
    nxt = store.finish(store.acquire("s1", plain, "w1"), RunState.SUCCEEDED)
    assert nxt == hooked and store.redis.zcard(keys.WEBHOOKS_DUE) == 0  # no webhook, no entry

    store.finish(store.acquire("s1", hooked, "w1"), RunState.FAILED, error="boom")
    now = time.time()
    assert store.due_webhooks(now=now) == []  # its worker has a stall period to send it
    assert store.due_webhooks(now=now + 6) == [("s1", hooked, 1)]
    assert store.due_webhooks(now=now + 7) == []  # once per stall period
    store.redis.delete(keys.run("s1", hooked))  # expired
    assert store.due_webhooks(now=now + 3_600) == []
    assert store.redis.zcard(keys.WEBHOOKS_DUE) == 0


# -- delivered by real workers ----------------------------------------------------------


def test_a_finished_run_is_posted_signed_with_its_outcome(runtime: Runtime, receiver):
    worker = with_webhooks(runtime, f"{receiver.url}/hooks/").start_worker()
    key = new_key()

    run = runtime.producer.submit(
        f"s-{key}", f"key={key} hello", webhook=f"{receiver.url}/hooks/run?team=7",
        metadata={"ticket": 42},
    )  # fmt: skip
    answer = run.result(timeout=30)
    delivery = receiver.next()

    assert delivery.path == "/hooks/run?team=7"
    assert verify(SECRET, delivery)
    assert not verify(SECRET, Delivery(delivery.path, delivery.headers, delivery.body + b" "))
    assert delivery.headers["Fence-Webhook-Id"] == run.id
    assert delivery.headers["Fence-Webhook-Attempt"] == "1"
    assert delivery.headers["Content-Type"] == "application/json"
    assert abs(int(delivery.headers["Fence-Webhook-Timestamp"]) - time.time()) < 60
    record = settled(runtime, run.id)
    assert delivery.outcome == {
        "run_id": run.id,
        "session_id": f"s-{key}",
        "state": "succeeded",
        "result": answer,
        "error": None,
        "accepted_at": record.accepted_at,
        "finished_at": record.finished_at,
        "attempts": 1,
        "deliveries": 1,
        "metadata": {"ticket": 42},
    }
    assert (record.webhook_state, record.webhook_attempts) == (WebhookState.DELIVERED, 1)
    assert SECRET[4:12] not in (runtime.directory / f"{worker.name}.log").read_text()


def test_a_receiver_failing_twice_gets_the_third_attempt_with_the_same_delivery_id(
    runtime: Runtime, receiver
):
    receiver.answer = lambda n: 500 if n <= 2 else 204
    with_webhooks(runtime, receiver.url + "/").start_worker()

    run = runtime.producer.submit(f"s-{new_key()}", "hello", webhook=receiver.url + "/in")
    tries = [receiver.next() for _ in range(3)]

    assert {d.headers["Fence-Webhook-Id"] for d in tries} == {run.id}
    assert [d.headers["Fence-Webhook-Attempt"] for d in tries] == ["1", "2", "3"]
    assert all(verify(SECRET, d) for d in tries)
    assert len({d.body for d in tries}) == 1
    record = settled(runtime, run.id)
    assert (record.webhook_state, record.webhook_attempts) == (WebhookState.DELIVERED, 3)
    assert record.webhook_error is None


def test_a_redirect_is_not_followed(runtime: Runtime, receiver):
    internal = Receiver()  # an address the allowlist does not name
    try:
        receiver.answer = lambda n: (302, {"Location": f"{internal.url}/admin"})
        with_webhooks(runtime, receiver.url + "/", FENCE_WEBHOOK_RETRY_FOR_S="0.5")
        runtime.start_worker()

        run = runtime.producer.submit(f"s-{new_key()}", "hello", webhook=receiver.url + "/in")
        record = settled(runtime, run.id)

        assert record.webhook_state is WebhookState.FAILED
        assert record.webhook_error == "HTTP 302: a redirect, not followed"
        assert receiver.count == record.webhook_attempts >= 2
        assert internal.count == 0
    finally:
        internal.close()


def test_a_cancelled_run_and_a_rejected_run_get_their_webhooks(runtime: Runtime, receiver):
    with_webhooks(runtime, receiver.url + "/")
    runtime.start_worker(concurrency=2)  # one slot stays free while the first turn blocks
    runtime.start_beat()  # a run that ends in a producer is sent by the sweeper
    producer, key = runtime.producer, new_key()
    session = f"s-{key}"
    busy = producer.submit(session, f"key={key} block")
    runtime.wait_entered(key)

    queued = producer.submit(session, "later", webhook=receiver.url + "/cancelled")
    queued.cancel()
    rejected = producer.submit(session, "again", strategy="reject", webhook=receiver.url + "/r")
    sent = {d.headers["Fence-Webhook-Id"]: d for d in (receiver.next(), receiver.next())}
    runtime.release(key)
    busy.result(timeout=30)

    assert sent[queued.id].path == "/cancelled" and sent[rejected.id].path == "/r"
    assert sent[queued.id].outcome["state"] == "cancelled"
    assert sent[rejected.id].outcome["state"] == "rejected"
    assert "strategy is reject" in sent[rejected.id].outcome["error"]
    assert all(verify(SECRET, d) for d in sent.values())
    for run in (queued, rejected):
        assert settled(runtime, run.id).webhook_state is WebhookState.DELIVERED


def test_a_worker_killed_right_after_finishing_still_gets_its_webhook_sent(
    runtime: Runtime, receiver
):
    """The worker dies during its delivery: the sweeper sends the next attempt, with the
    same delivery id, from another worker."""
    dead = threading.Event()

    def answer(n: int) -> int:
        if n == 1:  # holds the first attempt until its worker is dead
            dead.wait(30)
        return 200

    receiver.answer = answer
    with_webhooks(runtime, receiver.url + "/")
    doomed = runtime.start_worker()
    runtime.start_beat()

    run = runtime.producer.submit(f"s-{new_key()}", "hello", webhook=receiver.url + "/in")
    first = receiver.next()
    assert run.status().state is RunState.SUCCEEDED
    doomed.kill()
    dead.set()
    runtime.start_worker()
    second = receiver.next()

    assert second.headers["Fence-Webhook-Id"] == first.headers["Fence-Webhook-Id"] == run.id
    assert second.headers["Fence-Webhook-Attempt"] == "2"
    assert verify(SECRET, second) and second.body == first.body
    record = settled(runtime, run.id)
    assert (record.webhook_state, record.webhook_attempts) == (WebhookState.DELIVERED, 2)


def test_a_run_whose_worker_died_before_publishing_its_webhook_gets_it_sent(
    runtime: Runtime, receiver
):
    """A worker that ran ``FINISH`` and died at once: the run was already due."""
    with_webhooks(runtime, receiver.url + "/")
    session = f"s-{new_key()}"
    run = runtime.producer.submit(session, "hello", webhook=receiver.url + "/in")
    store = runtime.producer.store
    store.finish(store.acquire(session, run.id, "doomed@host"), RunState.SUCCEEDED, result="ok")

    runtime.start_worker()
    runtime.start_beat()
    delivery = receiver.next()

    assert delivery.headers["Fence-Webhook-Id"] == run.id and verify(SECRET, delivery)
    assert (delivery.outcome["state"], delivery.outcome["result"]) == ("succeeded", "ok")
    assert settled(runtime, run.id).webhook_state is WebhookState.DELIVERED


def test_turns_go_on_while_a_webhook_retries(runtime: Runtime, receiver):
    receiver.answer = lambda n: 503
    with_webhooks(
        runtime, receiver.url + "/", FENCE_WEBHOOK_BACKOFF_S="30", FENCE_WEBHOOK_RETRY_FOR_S="120"
    )
    runtime.start_worker()
    session = f"s-{new_key()}"

    first = runtime.producer.submit(session, "one", webhook=receiver.url + "/in")
    receiver.next()
    second = runtime.producer.submit(session, "two")

    assert second.result(timeout=30)
    record = first.status()
    assert (record.webhook_state, record.webhook_attempts) == (WebhookState.PENDING, 1)
    assert record.webhook_error == "HTTP 503"
