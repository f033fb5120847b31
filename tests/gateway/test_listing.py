"""``GET /v1/sessions`` and ``GET /v1/sessions/{id}/runs`` over HTTP: pages, the state
filter, and 422s naming the field."""

from __future__ import annotations

import uuid

import httpx


def test_sessions_and_runs_are_paged_over_http(client: httpx.Client):
    session = f"listed-{uuid.uuid4().hex[:8]}"
    run_ids = []
    for n in range(3):
        response = client.post(f"/v1/sessions/{session}/runs", json={"message": f"m{n}"})
        run_ids.append(response.json()["run_id"])
    for run_id in run_ids:
        assert client.get(f"/v1/runs/{run_id}", params={"wait": 60}).json()["state"] == "succeeded"

    idle = client.get("/v1/sessions", params={"state": "idle", "limit": 500}).json()
    [mine] = [s for s in idle["sessions"] if s["session_id"] == session]
    assert (mine["state"], mine["active_run"], mine["queued_count"]) == ("idle", None, 0)

    first = client.get(f"/v1/sessions/{session}/runs", params={"limit": 2}).json()
    rest = client.get(
        f"/v1/sessions/{session}/runs", params={"limit": 2, "cursor": first["next_cursor"]}
    ).json()
    listed = [run["run_id"] for run in first["runs"] + rest["runs"]]
    assert listed == run_ids[::-1] and rest["next_cursor"] is None
    assert first["runs"][0]["result"] == "answer to: m2"


def test_bad_paging_is_a_422_naming_the_field(client: httpx.Client):
    cases = [
        ("/v1/sessions", {"state": "sleepy"}, "state"),
        ("/v1/sessions", {"limit": 0}, "limit"),
        ("/v1/sessions", {"cursor": "x"}, "cursor"),
        ("/v1/sessions/s1/runs", {"cursor": "1/"}, "cursor"),
    ]
    for path, params, field in cases:
        response = client.get(path, params=params)
        assert response.status_code == 422, (path, params, response.text)
        assert response.json()["error"]["field"] == field, response.text
