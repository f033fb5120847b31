"""RunStore against a real redis-server, without workers: the Lua scripts' contract."""

from __future__ import annotations

import pytest
import redis
from redis.crc import key_slot

from fence.runs import Lease, LeaseLost, RunState, RunStore, SessionInfo, Skip, keys
from producer import Producer

from .conftest import empty_store, request


@pytest.fixture
def store(redis_url) -> RunStore:
    return empty_store(redis_url, stall_after_s=5.0)


def test_first_run_is_dispatched_and_later_ones_wait_in_order(store: RunStore):
    first = store.submit(request())
    second = store.submit(request())
    third = store.submit(request())

    assert (first.dispatch, first.position) == (True, 0)
    assert (second.dispatch, second.position, third.position) == (False, 1, 2)
    assert store.session("s1").active_run == first.run_id
    assert store.session("s1").queued == [second.run_id, third.run_id]


def test_finish_hands_the_session_to_the_next_run_then_goes_idle(store: RunStore):
    first, second = store.submit(request()), store.submit(request())
    lease = store.acquire("s1", first.run_id, "w1")

    assert store.finish(lease, RunState.SUCCEEDED, result="ok") == second.run_id
    lease = store.acquire("s1", second.run_id, "w1")
    assert store.finish(lease, RunState.SUCCEEDED, result="ok") is None
    assert store.session("s1").state == "idle"
    assert store.get(first.run_id).result == "ok"


def test_only_the_active_run_can_take_the_lease_and_only_once(store: RunStore):
    first, second = store.submit(request()), store.submit(request())

    assert store.acquire("s1", second.run_id, "w1") == Skip("not_active")
    lease = store.acquire("s1", first.run_id, "w1")
    assert store.acquire("s1", first.run_id, "w2") == Skip("leased")
    assert store.get(first.run_id).state is RunState.RUNNING
    assert store.holds(lease)


def test_a_lease_taken_over_refuses_the_old_holder(store: RunStore):
    run = store.submit(request())
    old = store.acquire("s1", run.run_id, "w1")
    store.redis.delete(keys.lease("s1"))  # expired
    new = store.acquire("s1", run.run_id, "w2")

    assert int(new.token) > int(old.token)
    assert store.renew([old, new]) == [False, True]
    assert store.save_answer(old, "stale answer") == "lost"
    with pytest.raises(LeaseLost):
        store.finish(old, RunState.SUCCEEDED, result="stale")
    assert store.finish(new, RunState.SUCCEEDED, result="fresh") is None
    assert store.get(run.run_id).result == "fresh"


def test_the_sweeper_redispatches_only_leaseless_runs_without_recent_progress(
    store: RunStore,
):
    quiet = store.submit(request("quiet")).run_id
    working = store.submit(request("working")).run_id
    store.acquire("working", working, "w1")
    now = store.get(quiet).accepted_at

    assert store.stalled_runs(now=now + 1) == []
    assert store.stalled_runs(now=now + 10) == [("quiet", quiet)]
    assert store.stalled_runs(now=now + 11) == []  # marked progressed: once per stall period


def test_the_sweeper_forgets_sessions_idle_for_longer_than_the_stall_period(store: RunStore):
    run = store.submit(request())
    lease = store.acquire("s1", run.run_id, "w1")
    store.finish(lease, RunState.SUCCEEDED)
    accepted = store.get(run.run_id).accepted_at

    store.stalled_runs(now=accepted + 1)
    assert store.redis.zscore(keys.ACTIVE_SESSIONS, "s1") is not None
    store.stalled_runs(now=accepted + 10)
    assert store.redis.zscore(keys.ACTIVE_SESSIONS, "s1") is None


def test_keys_of_one_session_share_a_cluster_slot(store: RunStore):
    session_keys = [
        keys.session("s1"),
        keys.mailbox("s1"),
        keys.lease("s1"),
        keys.fencing_counter("s1"),
        keys.run("s1", "r1"),
        keys.run_prefix("s1") + "r2",
        keys.idempotency("s1", "k"),
        keys.journal("s1", "r1"),
        keys.session_runs("s1"),
        *keys.event_logs("s1", "r1"),
    ]
    assert len({key_slot(k.encode()) for k in session_keys}) == 1


def test_every_key_written_is_named_in_the_keys_module(store: RunStore):
    run = store.submit(request(idempotency_key="once"))
    store.submit(request())
    store.finish(store.acquire("s1", run.run_id, "w1"), RunState.SUCCEEDED)

    index_prefix = keys.run_index("").removesuffix("{}")
    for key in store.redis.keys("*"):
        assert (
            key.startswith("fence:{s1}:")
            or key.startswith(index_prefix)
            or key in (keys.ACTIVE_SESSIONS, keys.SESSIONS)
        ), key


def test_a_session_whose_active_run_record_vanished_moves_on(store: RunStore):
    lost, waiting = store.submit(request()), store.submit(request())
    store.redis.delete(keys.run("s1", lost.run_id))  # evicted, or lost in a failover

    skip = store.acquire("s1", lost.run_id, "w1")

    assert skip == Skip("missing", next_run=waiting.run_id)
    assert store.session("s1").active_run == waiting.run_id


def test_the_lease_comes_with_the_run_record_and_the_answer_respects_cancel(store: RunStore):
    run = store.submit(request(message="question"))
    lease = store.acquire("s1", run.run_id, "w1")

    assert (lease.record.message, lease.record.deliveries, lease.record.worker) == (
        "question",
        1,
        "w1",
    )
    store.cancel(run.run_id)
    assert store.save_answer(lease, "too late") == "cancelled"
    assert store.pending_result(lease) is None


def test_repeated_redispatches_of_one_run_back_off(store: RunStore):
    run = store.submit(request()).run_id
    start = store.get(run).accepted_at

    assert store.stalled_runs(now=start + 6) == [("s1", run)]  # stall 5 s
    assert store.stalled_runs(now=start + 6 + 9) == []  # now waits 10 s
    assert store.stalled_runs(now=start + 6 + 11) == [("s1", run)]
    store.acquire("s1", run, "w1")  # a worker got it: the count resets
    store.redis.delete(keys.lease("s1"))
    assert store.stalled_runs(now=start + 6 + 11 + 6) == [("s1", run)]


def test_a_run_whose_publish_failed_is_still_accepted_and_left_to_the_sweeper(
    store: RunStore, monkeypatch: pytest.MonkeyPatch
):
    producer = Producer(settings=store.settings, agents=["demo"])

    def broker_down(session_id: str, run_id: str) -> None:
        raise redis.ConnectionError("broker unreachable")

    monkeypatch.setattr(producer.store, "publish", broker_down)

    run = producer.submit("s1", "hello", agent="demo")

    accepted = run.status()
    assert accepted.state is RunState.QUEUED
    assert store.stalled_runs(now=accepted.accepted_at + 6) == [("s1", run.id)]


def test_every_step_still_works_after_redis_loses_its_script_cache(store: RunStore):
    """A Redis restart or ``SCRIPT FLUSH`` empties the script cache; every step
    loads the scripts again and runs exactly once."""
    flush = store.redis.script_flush
    flush()
    first, second = store.submit(request()), store.submit(request())
    third = store.submit(request())
    flush()
    lease = store.acquire("s1", first.run_id, "w1")
    flush()
    assert store.renew([lease]) == [True]
    flush()
    assert store.save_answer(lease, "ok") == "saved"
    flush()
    assert store.finish(lease, RunState.SUCCEEDED, result="ok", attempts=1) == second.run_id
    flush()
    assert store.cancel(third.run_id).state is RunState.CANCELLED
    flush()
    accepted = store.get(second.run_id).accepted_at
    assert store.stalled_runs(now=accepted + 6) == [("s1", second.run_id)]

    assert store.session("s1").active_run == second.run_id
    assert store.session("s1").queued == []
    assert store.get(first.run_id).state is RunState.SUCCEEDED
    assert (store.get(first.run_id).deliveries, store.get(first.run_id).attempts) == (1, 1)


def redis_ms(store: RunStore) -> int:
    seconds, micros = store.redis.time()
    return seconds * 1000 + micros // 1000


def test_fencing_tokens_never_go_backwards_even_after_the_counter_expired(store: RunStore):
    first = store.submit(request())
    old = store.acquire("s1", first.run_id, "w1")
    store.finish(old, RunState.SUCCEEDED)
    store.redis.delete(keys.fencing_counter("s1"), keys.session("s1"))  # expired while idle
    while redis_ms(store) <= old.fence:  # an expiry takes FENCE_SESSION_TTL_S, not < 1 ms
        pass

    second = store.submit(request())
    new = store.acquire("s1", second.run_id, "w1")

    assert second.dispatch and isinstance(new, Lease)
    assert new.fence > old.fence
    assert old.fence <= redis_ms(store)  # tokens follow Redis's clock in ms


def test_an_idle_session_expires_and_a_busy_one_never_does(store: RunStore):
    ttl = store.settings.session_ttl_s
    session, counter = keys.session("s1"), keys.fencing_counter("s1")
    first, second = store.submit(request()), store.submit(request())
    lease = store.acquire("s1", first.run_id, "w1")
    assert (store.redis.ttl(session), store.redis.ttl(counter)) == (-1, -1)

    lease = store.acquire("s1", store.finish(lease, RunState.SUCCEEDED), "w1")
    assert (store.redis.ttl(session), store.redis.ttl(counter)) == (-1, -1)  # second's turn
    assert store.finish(lease, RunState.SUCCEEDED) is None

    assert 0 < store.redis.ttl(session) <= ttl and 0 < store.redis.ttl(counter) <= ttl
    third = store.submit(request())
    assert third.dispatch and store.redis.ttl(session) == -1
    store.acquire("s1", third.run_id, "w1")
    assert store.redis.ttl(counter) == -1
    assert store.get(second.run_id).state is RunState.SUCCEEDED


def test_the_session_view_and_gauges_come_from_one_reader(store: RunStore):
    first, second, third = (store.submit(request()) for _ in range(3))
    store.submit(request(session_id="s2"))
    lease = store.acquire("s1", first.run_id, "w1")

    info = store.session("s1", queued_limit=1)
    gauges = store.gauges(scan_limit=10)

    assert (info.state, info.active_run, info.queued) == ("busy", first.run_id, [second.run_id])
    assert info.queued_count == 2 and info.lease_token == lease.token
    assert 0 < info.lease_expires_in_ms <= store.settings.lease_ms
    assert info.progress_at is not None
    assert store.session("nobody") == SessionInfo("nobody", None, [], 0, None, None, None)
    assert (gauges.indexed_sessions, gauges.scanned_sessions) == (2, 2)
    assert (gauges.busy_sessions, gauges.queued_runs, gauges.deepest_queue) == (2, 2, 2)
    assert store.gauges(scan_limit=1).scanned_sessions == 1
    assert third.run_id in store.session("s1").queued
