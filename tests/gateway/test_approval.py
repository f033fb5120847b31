"""Approving and denying a waiting run over HTTP: ``POST /v1/runs/{id}/approval``, its
409 for a run that is not waiting and its 422s naming the argument; the run's SSE
stream shows the request and the decision."""

from __future__ import annotations

import httpx

from tests.gateway.conftest import Stack
from tests.gateway.sse import frames


def submit_waiting(client: httpx.Client, session: str) -> str:
    """Submit to the approver agent and read the run's stream until it asks."""
    response = client.post(
        f"/v1/sessions/{session}/runs", json={"message": "refund", "agent": "approver"}
    )
    assert response.status_code == 202, response.text
    run_id = response.json()["run_id"]
    with client.stream("GET", f"/v1/runs/{run_id}/events") as stream:
        for frame in frames(stream):
            if frame.event == "approval.requested":
                assert frame.data["data"]["name"] == "refund"
                break
            assert frame.event != "run.finished", frame
    return run_id


def decide(client: httpx.Client, run_id: str, **body: object) -> httpx.Response:
    return client.post(f"/v1/runs/{run_id}/approval", json=body)


def finished(client: httpx.Client, run_id: str) -> dict:
    return client.get(f"/v1/runs/{run_id}", params={"wait": 60}).json()


def test_approve_over_http_runs_the_call(stack: Stack, client: httpx.Client):
    run_id = submit_waiting(client, "http-approve")
    view = client.get(f"/v1/runs/{run_id}").json()
    assert view["state"] == "waiting"
    assert view["approval"]["arguments"] == {"order_id": "A1", "cents": 500}
    assert view["approval"]["parameters"]["properties"]["cents"]["type"] == "integer"

    response = decide(client, run_id, approve=True)

    assert response.status_code == 200, response.text
    assert finished(client, run_id)["result"] == "done: refunded 500 on A1"
    with client.stream("GET", f"/v1/runs/{run_id}/events") as stream:
        names = [frame.event for frame in frames(stream) if frame.comment is None]
    assert names.count("approval.requested") == names.count("approval.decided") == 1
    assert names.count("turn.started") == 2 and names[-1] == "run.finished"


def test_approve_with_edited_arguments_and_deny_over_http(client: httpx.Client):
    edited = submit_waiting(client, "http-edit")
    denied = submit_waiting(client, "http-deny")

    assert (
        decide(client, edited, approve=True, arguments={"order_id": "B2", "cents": 1}).status_code
        == 200
    )
    assert decide(client, denied, approve=False, reason="no").status_code == 200

    assert finished(client, edited)["result"] == "done: refunded 1 on B2"
    assert finished(client, denied)["result"] == "done: denied: no"


def test_bad_decisions_are_refused_naming_the_field(stack: Stack, client: httpx.Client):
    run_id = submit_waiting(client, "http-bad")

    wrong = decide(client, run_id, approve=True, arguments={"order_id": "A1", "cents": "x"})
    assert wrong.status_code == 422 and wrong.json()["error"]["field"] == "arguments.cents"
    extra = decide(client, run_id, approve=True, bogus=1)
    assert extra.status_code == 422
    assert (
        extra.json()["error"]["message"]
        == "bogus: unknown field; allowed: approve, arguments, reason"
    )
    no_decision = decide(client, run_id)
    assert no_decision.status_code == 422 and no_decision.json()["error"]["field"] == "approve"
    assert client.get(f"/v1/runs/{run_id}").json()["state"] == "waiting"  # nothing changed

    assert decide(client, run_id, approve=False).status_code == 200
    finished(client, run_id)
    again = decide(client, run_id, approve=True)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "not_waiting"
    assert again.json()["error"]["run_id"] == run_id
    assert "succeeded" in again.json()["error"]["message"]
    missing = decide(client, "no-such-run", approve=True)
    assert missing.status_code == 404 and missing.json()["error"]["run_id"] == "no-such-run"
