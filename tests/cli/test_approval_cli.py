"""``fence approve`` / ``fence deny`` on a waiting run, against a real runtime: the
run's tool call runs (with ``--arguments`` if given) or is refused, and the CLI's
errors name what is wrong."""

from __future__ import annotations

import json

from fence.runs import EventType, RunState
from producer import Producer


def submit_waiting(fence, session: str) -> str:
    done = fence("submit", session, "refund please", "--agent", "approver", "--json")
    assert done.code == 0, done.err
    run_id = json.loads(done.out)["run_id"]
    run = Producer().run(run_id)
    for event in run.events(timeout=60):
        if event.type is EventType.APPROVAL_REQUESTED:
            return run_id
    raise AssertionError("never asked for approval")


def test_status_shows_the_call_and_approve_runs_it(fence):
    run_id = submit_waiting(fence, "cli-approve")
    status = fence("status", run_id)
    assert "waiting for  approval of refund(" in status.out
    assert f"fence approve {run_id}" in status.out

    done = fence("approve", run_id, "--arguments", '{"order_id": "A1", "cents": 7}')

    assert done.code == 0, done.err
    assert f"run {run_id} approved" in done.out
    assert Producer().run(run_id).result(timeout=60) == "done: refunded 7 on A1"


def test_deny_tells_the_model_and_bad_decisions_fail_naming_the_field(fence):
    run_id = submit_waiting(fence, "cli-deny")

    bad_json = fence("approve", run_id, "--arguments", "{nope")
    assert bad_json.code == 1 and "--arguments: not valid JSON" in bad_json.err
    bad_type = fence("approve", run_id, "--arguments", '{"order_id": "A1", "cents": "x"}', "--json")
    assert bad_type.code == 1
    assert json.loads(bad_type.out)["error"]["field"] == "arguments.cents"
    assert Producer().run(run_id).status().state is RunState.WAITING

    assert fence("deny", run_id, "--reason", "not today").code == 0
    assert Producer().run(run_id).result(timeout=60) == "done: denied: not today"
    again = fence("deny", run_id, "--json")
    assert again.code == 1
    error = json.loads(again.out)["error"]
    assert (error["code"], error["run_id"]) == ("not_waiting", run_id)
