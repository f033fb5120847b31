"""Listing sessions and a session's runs, against a real redis-server, without workers:
order, the state filter, cursors that neither skip nor repeat, and bad input."""

from __future__ import annotations

import time

import pytest

from fence.runs import PendingApproval, RunState, RunStore, keys
from fence.runs.listing import SessionState
from fence.validation import InvalidInput

from .conftest import empty_store, request


@pytest.fixture
def store(redis_url) -> RunStore:
    return empty_store(redis_url)


def ids(page) -> list[str]:
    return [item.session_id for item in page.items]


def test_sessions_are_listed_most_recently_active_first_with_their_state(store: RunStore):
    old = store.submit(request("old"))
    store.submit(request("busy"))
    store.submit(request("busy"))  # queued behind the first
    lease = store.acquire("old", old.run_id, "w1")
    store.finish(lease, RunState.SUCCEEDED, result="ok")  # old is idle, and the newest touch

    page = store.sessions()

    assert ids(page) == ["old", "busy"] and page.next_cursor is None
    old_summary, busy = page.items
    assert (old_summary.state, old_summary.active_run, old_summary.queued_count) == (
        SessionState.IDLE,
        None,
        0,
    )
    assert (busy.state, busy.queued_count) == (SessionState.BUSY, 1)
    assert ids(store.sessions(state="idle")) == ["old"]
    assert ids(store.sessions(state=SessionState.BUSY)) == ["busy"]


def test_a_session_whose_run_waits_for_approval_is_waiting(store: RunStore):
    submitted = store.submit(request("paused"))
    lease = store.acquire("paused", submitted.run_id, "w1")
    pending = PendingApproval(
        id="c1",
        name="refund",
        arguments={},
        parameters={"type": "object"},
        step=1,
        index=0,
        deadline=time.time() + 60,
    )
    store.pause(lease, pending, attempts=1)

    [summary] = store.sessions(state="waiting").items
    assert (summary.session_id, summary.active_run) == ("paused", submitted.run_id)


def test_pages_follow_their_cursor_without_skipping_or_repeating(store: RunStore):
    for n in range(7):
        store.submit(request(f"s{n}"))
    seen: list[str] = []
    page = store.sessions(limit=3)
    store.submit(request("newcomer"))  # lands before the cursor: not in later pages
    while True:
        seen += ids(page)
        if page.next_cursor is None:
            break
        page = store.sessions(limit=3, cursor=page.next_cursor)

    assert seen == [f"s{n}" for n in reversed(range(7))]


def test_a_sessions_runs_are_listed_newest_first_until_their_records_expire(store: RunStore):
    runs = [store.submit(request("many")).run_id for _ in range(5)]
    store.redis.delete(keys.run("many", runs[3]))  # as if its record had expired

    first = store.runs("many", limit=2)
    rest = store.runs("many", limit=10, cursor=first.next_cursor)

    listed = [record.id for record in first.items + rest.items]
    assert listed == [runs[4], runs[2], runs[1], runs[0]]
    assert rest.next_cursor is None
    assert store.redis.zscore(keys.session_runs("many"), runs[3]) is None  # dropped


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda s: s.sessions(limit=0), "limit"),
        (lambda s: s.sessions(limit=501), "limit"),
        (lambda s: s.sessions(state="sleepy"), "state"),
        (lambda s: s.sessions(cursor="nope"), "cursor"),
        (lambda s: s.sessions(cursor="nan/x"), "cursor"),
        (lambda s: s.runs("a/b"), "session_id"),
        (lambda s: s.runs("s1", cursor="1.0/"), "cursor"),
    ],
)
def test_bad_paging_input_names_the_field(store: RunStore, call, field):
    with pytest.raises(InvalidInput) as refused:
        call(store)
    assert refused.value.field == field
