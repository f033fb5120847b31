"""Per-session order, one turn in flight, fairness: with real worker processes."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from fence.messages import Role
from fence.runs import RunState

from .conftest import Runtime


def test_each_session_runs_its_turns_once_in_order_without_overlap(runtime: Runtime):
    for _ in range(3):
        runtime.start_worker(concurrency=1)
    sessions = [f"order-{i}" for i in range(50)]
    turns = 10

    def submit_session(session_id: str) -> list[str]:
        return [
            runtime.producer.submit(session_id, f"turn {n} of {session_id} sleep=0.002").id
            for n in range(turns)
        ]

    with ThreadPoolExecutor(max_workers=8) as pool:
        run_ids = dict(zip(sessions, pool.map(submit_session, sessions), strict=True))
    for ids in run_ids.values():
        for run_id in ids:
            runtime.producer.run(run_id).result(timeout=120)

    for session_id, ids in run_ids.items():
        users = [
            m.content for m in runtime.memory(session_id).get_messages() if m.role is Role.USER
        ]
        assert users == [f"turn {n} of {session_id} sleep=0.002" for n in range(turns)]
        records = [runtime.producer.run(run_id).status() for run_id in ids]
        assert all(r.state is RunState.SUCCEEDED and r.attempts == 1 for r in records)
        for earlier, later in zip(records, records[1:], strict=False):
            assert earlier.finished_at <= later.started_at, f"turns of {session_id} overlapped"
    workers_used = {
        runtime.producer.run(i).status().worker for ids in run_ids.values() for i in ids
    }
    assert len(workers_used) == 3


def test_a_flooded_session_does_not_starve_the_others(runtime: Runtime):
    runtime.start_worker(concurrency=2)
    flood = [runtime.producer.submit("flood", f"flood {n} sleep=0.01") for n in range(200)]
    others = [runtime.producer.submit(f"other-{i}", "hello") for i in range(10)]

    for run in others:
        run.result(timeout=60)

    still_queued = runtime.producer.session("flood").queued
    assert len(still_queued) > 100, "other sessions waited for the flood to drain"
    flood[-1].result(timeout=120)
