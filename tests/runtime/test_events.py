"""A run's event log against a real redis-server: written in the step that changes the
run, fenced for workers, ordered, resumable, bounded."""

from __future__ import annotations

import threading

import pytest

from fence.agents import TextEvent
from fence.runs import LeaseLost, RunState, RunStore, keys
from fence.runs.events import EventType
from fence.validation import InvalidInput
from workers.backends import BackendCalls
from workers.turn_events import TurnEvents

from .agents import MID_STREAM_HEAD
from .conftest import Runtime, empty_store, new_key, request


@pytest.fixture
def store(redis_url) -> RunStore:
    return empty_store(redis_url, events_max=100)


def logged(store: RunStore, run_id: str) -> list[tuple[EventType, dict]]:
    return [(event.type, event.data) for event in store.events(run_id, timeout=5) if event]


def test_a_run_logs_accepted_started_committed_finished_in_order(store: RunStore):
    run_id = store.submit(request()).run_id
    lease = store.acquire("s1", run_id, "w1")
    store.finish(lease, RunState.SUCCEEDED, result="ok", attempts=1)

    assert logged(store, run_id) == [
        (EventType.ACCEPTED, {"position": 0}),
        (EventType.STARTED, {"attempt": 1, "delivery": 1, "worker": "w1"}),
        (EventType.COMMITTED, {}),
        (EventType.FINISHED, {"state": "succeeded"}),
    ]
    events = [event for event in store.events(run_id, timeout=5) if event]
    assert all((e.run_id, e.session_id) == (run_id, "s1") for e in events)
    assert [e.id for e in events] == sorted(events_ids := [e.id for e in events], key=_order)
    assert len(set(events_ids)) == len(events_ids)


def _order(event_id: str) -> tuple[int, int]:
    ms, n = event_id.split("-")
    return int(ms), int(n)


def test_a_redelivery_counts_attempts_across_deliveries(store: RunStore):
    run_id = store.submit(request()).run_id
    first = store.acquire("s1", run_id, "w1")
    store.redis.delete(keys.lease("s1"))  # w1 died; its lease expired
    second = store.acquire("s1", run_id, "w2")
    store.emit(
        second, [(EventType.STARTED, {"attempt": 2, "delivery": 2, "worker": "w2"})], first=0
    )
    store.finish(second, RunState.FAILED, error="boom", attempts=2)

    started = [data for kind, data in logged(store, run_id) if kind is EventType.STARTED]
    assert started == [
        {"attempt": 1, "delivery": 1, "worker": "w1"},
        {"attempt": 1, "delivery": 2, "worker": "w2"},
        {"attempt": 2, "delivery": 2, "worker": "w2"},
    ]
    assert logged(store, run_id)[-1] == (EventType.FINISHED, {"state": "failed", "error": "boom"})
    assert first.token != second.token


def test_a_stale_worker_cannot_append_events(store: RunStore):
    run_id = store.submit(request()).run_id
    stale = store.acquire("s1", run_id, "w1")
    store.redis.delete(keys.lease("s1"))
    store.acquire("s1", run_id, "w2")
    before = store.redis.xlen(keys.run_events("s1", run_id))

    with pytest.raises(LeaseLost):
        store.emit(stale, [(EventType.STARTED, {"attempt": 9})], first=0)

    assert store.redis.xlen(keys.run_events("s1", run_id)) == before


def test_rejected_and_queued_cancelled_runs_end_with_one_terminal_event(store: RunStore):
    store.submit(request())
    queued = store.submit(request()).run_id
    rejected = store.submit(request(strategy="reject")).run_id
    store.cancel(queued)
    store.cancel(queued)  # a second cancel changes nothing, logs nothing

    assert logged(store, rejected) == [
        (EventType.ACCEPTED, {}),
        (
            EventType.FINISHED,
            {"state": "rejected", "error": store.get(rejected).error},
        ),
    ]
    assert logged(store, queued) == [
        (EventType.ACCEPTED, {"position": 1}),
        (EventType.FINISHED, {"state": "cancelled"}),
    ]


def test_a_duplicate_submit_logs_nothing(store: RunStore):
    store.submit(request(idempotency_key="k"))
    before = store.redis.xlen(keys.session_events("s1"))

    store.submit(request(idempotency_key="k"))

    assert store.redis.xlen(keys.session_events("s1")) == before


def test_a_reader_resumes_after_an_event_id_with_nothing_lost_or_repeated(store: RunStore):
    run_id = store.submit(request()).run_id
    lease = store.acquire("s1", run_id, "w1")
    store.finish(lease, RunState.SUCCEEDED, attempts=1)
    everything = [event for event in store.events(run_id, timeout=5) if event]

    for k in range(len(everything)):
        rest = [e for e in store.events(run_id, after=everything[k].id, timeout=5) if e]
        assert rest == everything[k + 1 :]


def test_a_follower_waits_on_redis_for_the_next_event_and_stops_at_the_terminal_one(
    store: RunStore,
):
    run_id = store.submit(request()).run_id
    seen: list[EventType] = []
    following = threading.Event()

    def follow() -> None:
        for event in store.events(run_id, timeout=30):
            following.set()
            if event:
                seen.append(event.type)

    reader = threading.Thread(target=follow)
    reader.start()
    assert following.wait(10)  # the accepted event is read; the reader now blocks
    lease = store.acquire("s1", run_id, "w1")
    store.finish(lease, RunState.SUCCEEDED, attempts=1)
    reader.join(10)

    assert not reader.is_alive()
    assert seen == [
        EventType.ACCEPTED,
        EventType.STARTED,
        EventType.COMMITTED,
        EventType.FINISHED,
    ]


def test_a_finished_run_whose_log_expired_ends_at_once(store: RunStore):
    run_id = store.submit(request()).run_id
    store.finish(store.acquire("s1", run_id, "w1"), RunState.SUCCEEDED, attempts=1)
    store.redis.delete(keys.run_events("s1", run_id))

    assert list(store.events(run_id, timeout=30)) == []


def test_the_session_log_carries_every_run_in_order(store: RunStore):
    first = store.submit(request()).run_id
    second = store.submit(request()).run_id
    next_run = store.finish(store.acquire("s1", first, "w1"), RunState.SUCCEEDED, attempts=1)
    store.finish(store.acquire("s1", next_run, "w1"), RunState.SUCCEEDED, attempts=1)

    session = [(e.run_id, e.type) for e in store.session_events("s1", timeout=0.2) if e]

    assert session == [
        (first, EventType.ACCEPTED),
        (second, EventType.ACCEPTED),
        (first, EventType.STARTED),
        (first, EventType.COMMITTED),
        (first, EventType.FINISHED),
        (second, EventType.STARTED),
        (second, EventType.COMMITTED),
        (second, EventType.FINISHED),
    ]


def test_the_logs_are_bounded_and_expire(store: RunStore):
    run_id = store.submit(request()).run_id
    lease = store.acquire("s1", run_id, "w1")
    for batch in range(10):
        store.emit(lease, [(EventType.STARTED, {"attempt": 2})] * 50, first=50 * batch)

    for log in (keys.run_events("s1", run_id), keys.session_events("s1")):
        assert store.redis.xlen(log) < 200  # about events_max (100): trimmed by whole nodes
        assert 0 < store.redis.ttl(log) <= store.settings.run_ttl_s


@pytest.mark.parametrize("after", ["", "last", "1-2-3", "-1-0", "1" * 30 + "-0"])
def test_a_malformed_event_id_is_refused_naming_the_field(store: RunStore, after: str):
    run_id = store.submit(request()).run_id

    with pytest.raises(InvalidInput, match="^after: must be an event id") as raised:
        next(store.events(run_id, after=after))
    assert raised.value.field == "after"


def test_real_workers_log_each_attempt_and_one_terminal_event(runtime: Runtime):
    runtime.start_worker()
    key = new_key()
    run = runtime.producer.submit("retried", f"key={key} fail=1")

    events = list(run.events(timeout=60))

    assert [(e.type, e.data.get("attempt")) for e in events] == [
        (EventType.ACCEPTED, None),
        (EventType.STARTED, 1),
        (EventType.STARTED, 2),
        (EventType.TEXT, None),  # the failed attempt failed before any text
        (EventType.COMMITTED, None),
        (EventType.FINISHED, None),
    ]
    assert events[-1].data == {"state": "succeeded"}
    assert events[1].data["worker"] == events[2].data["worker"] == run.status().worker


def test_a_batch_sent_again_after_a_lost_reply_is_logged_once(store: RunStore):
    run_id = store.submit(request()).run_id
    lease = store.acquire("s1", run_id, "w1")
    text = [(EventType.TEXT, {"text": word, "step": 1}) for word in ("a ", "b ", "c")]

    assert len(store.emit(lease, text[:2], first=0)) == 2
    assert len(store.emit(lease, text[:2], first=0)) == 0  # the retry of that batch
    assert len(store.emit(lease, text[1:], first=1)) == 1  # overlaps: only "c" is new
    store.finish(lease, RunState.SUCCEEDED, result="a b c", attempts=1)

    deltas = [
        e.data["text"] for e in store.events(run_id, timeout=5) if e and e.type is EventType.TEXT
    ]
    assert deltas == ["a ", "b ", "c"]


def test_a_new_lease_logs_from_its_own_count(store: RunStore):
    run_id = store.submit(request()).run_id
    first = store.acquire("s1", run_id, "w1")
    store.emit(first, [(EventType.TEXT, {"text": "x", "step": 1})] * 3, first=0)
    store.redis.delete(keys.lease("s1"))
    second = store.acquire("s1", run_id, "w2")

    assert len(store.emit(second, [(EventType.TEXT, {"text": "y", "step": 1})], first=0)) == 1


def test_real_workers_log_the_answer_as_it_is_generated_before_the_commit(runtime: Runtime):
    runtime.start_worker()
    run = runtime.producer.submit("streamed", "tell me something")

    events = list(run.events(timeout=60))

    kinds = [e.type for e in events]
    text = "".join(e.data["text"] for e in events if e.type is EventType.TEXT)
    assert text == run.result(timeout=5)
    assert kinds.index(EventType.TEXT) < kinds.index(EventType.COMMITTED)
    assert kinds[-2:] == [EventType.COMMITTED, EventType.FINISHED]


def test_a_stale_worker_cannot_log_text_after_another_took_its_run_over(runtime: Runtime):
    stale = runtime.start_worker()
    key = new_key()
    run = runtime.producer.submit("stale-stream", f"key={key} block-mid-stream")
    runtime.wait_entered(key)
    assert next(e for e in run.events(timeout=30) if e and e.type is EventType.TEXT)
    runtime.control.delete(keys.lease("stale-stream"))  # its lease expires mid-answer
    runtime.start_worker()
    runtime.producer.store.publish("stale-stream", run.id)

    answer = run.result(timeout=30)
    runtime.release(key)  # the stale worker streams the rest of its answer
    stale.wait_for(r"turn abandoned: lease lost", timeout=30)

    events = list(run.events(timeout=5))
    texts = [e.data["text"] for e in events if e.type is EventType.TEXT]
    assert texts == [MID_STREAM_HEAD, MID_STREAM_HEAD, answer.removeprefix(MID_STREAM_HEAD)]
    assert events[-1].type is EventType.FINISHED  # nothing logged after the end
    assert runtime.contents("stale-stream") == [f"key={key} block-mid-stream", answer]


def test_a_worker_killed_mid_answer_shows_a_new_attempt_and_ends_once(runtime: Runtime):
    runtime.start_worker()
    runtime.start_worker()
    runtime.start_beat()
    key = new_key()
    run = runtime.producer.submit("killed-mid-answer", f"key={key} block-mid-stream")
    runtime.wait_entered(key)
    assert next(e for e in run.events(timeout=30) if e and e.type is EventType.TEXT)

    runtime.worker_of(run.id).kill()  # SIGKILL while its answer is half sent
    events = list(run.events(timeout=60))

    kinds = [e.type for e in events]
    second = max(i for i, kind in enumerate(kinds) if kind is EventType.STARTED)
    assert [e.data["delivery"] for e in events if e.type is EventType.STARTED] == [1, 2]
    texts = [e.data["text"] for e in events[second:] if e.type is EventType.TEXT]
    assert "".join(texts) == run.result(timeout=5)
    assert kinds.count(EventType.FINISHED) == 1 and kinds[-1] is EventType.FINISHED
    assert runtime.contents("killed-mid-answer") == [
        f"key={key} block-mid-stream",
        run.result(timeout=5),
    ]


@pytest.mark.parametrize(
    ("window_s", "logged"),
    [(60.0, ["The ", "quick brown fox"]), (0.0, ["The ", "quick ", "brown ", "fox"])],
)
def test_text_generated_within_the_window_is_logged_as_one_delta(
    store: RunStore, window_s: float, logged: list[str]
):
    run_id = store.submit(request()).run_id
    lease = store.acquire("s1", run_id, "w1")
    calls = BackendCalls("s1", run_id, store.settings).holding(lease, threading.Event())
    events = TurnEvents(store, lease, calls, window_s)

    for word in ("The ", "quick ", "brown ", "fox"):  # far faster than the window
        events.add(TextEvent(word, 1))
    events.flush()
    events.close()

    texts = [
        e.data["text"]
        for e in store.event_log.read("s1", run_id, "0-0")
        if e.type is EventType.TEXT
    ]
    assert texts == logged
