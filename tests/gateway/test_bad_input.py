"""Hostile input over real HTTP: metadata that cannot round-trip and bodies that are not
UTF-8 are refused naming the field, writing nothing; run records corrupted in Redis
still answer every read and cancel, never a 500, and do not block their session."""

from __future__ import annotations

import json

import httpx
import pytest

from fence.runs import keys
from fence.runs.schema import MAX_METADATA_DEPTH, MAX_METADATA_KEY_CHARS
from tests.support import new_key

from .conftest import Stack
from .test_api import finished, submit

JSON = {"content-type": "application/json"}


def nested_text(depth: int) -> str:
    """A JSON object nested ``depth`` levels deep, counting itself."""
    return '{"a":' * (depth - 1) + "{}" + "}" * (depth - 1)


def body_with_metadata(metadata_json: str) -> bytes:
    return ('{"message": "hi", "metadata": ' + metadata_json + "}").encode()


BAD_METADATA = {
    "one-too-deep": (nested_text(MAX_METADATA_DEPTH + 1), "nested deeper than"),
    "960-deep": (nested_text(960), "nested deeper than"),
    "2000-deep": (nested_text(2_000), "nested deeper than"),
    "20000-deep-list": ('{"a": ' + "[" * 20_000 + "]" * 20_000 + "}", "nested deeper than"),
    "lone-surrogate-value": ('{"k": "\\ud800"}', "valid Unicode"),
    "lone-surrogate-key": ('{"\\udc80": 1}', "valid Unicode"),
    "nan": ('{"k": NaN}', "finite"),
    "infinity": ('{"k": [-Infinity]}', "finite"),
    "long-key": (json.dumps({"k" * (MAX_METADATA_KEY_CHARS + 1): 1}), "characters"),
}


@pytest.mark.parametrize(("metadata", "rule"), BAD_METADATA.values(), ids=BAD_METADATA)
def test_metadata_that_cannot_round_trip_is_422_naming_it_and_writes_nothing(
    stack: Stack, client: httpx.Client, metadata, rule
):
    before = stack.fence_state()
    response = client.post(
        "/v1/sessions/bad-input/runs", content=body_with_metadata(metadata), headers=JSON
    )

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid" and error["field"] == "metadata"
    assert error["message"].startswith("metadata: ") and rule in error["message"]
    assert stack.fence_state() == before


def test_metadata_at_the_depth_limit_is_accepted_and_read_back(client: httpx.Client):
    metadata = json.loads(nested_text(MAX_METADATA_DEPTH))
    accepted = submit(client, f"deep-{new_key()}", "hi", metadata=metadata)

    assert accepted.status_code == 202, accepted.text
    assert finished(client, accepted.json()["run_id"])["metadata"] == metadata


@pytest.mark.parametrize(
    "raw",
    [b'{"message": "caf\xe9"}', b'{"message": "hi", "metadata": {"\xff": 1}}', b"\xfe\xff{}"],
    ids=["latin-1", "in-a-key", "utf-16-bom"],
)
def test_a_body_that_is_not_utf8_is_refused_naming_the_body(
    stack: Stack, client: httpx.Client, raw
):
    before = stack.fence_state()
    response = client.post("/v1/sessions/bad-input/runs", content=raw, headers=JSON)

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == "body" and error["code"] == "invalid"
    assert error["message"].startswith("body: ") and "UTF-8" in error["message"]
    assert stack.fence_state() == before


def test_deep_json_outside_metadata_is_refused_naming_the_body(stack: Stack, client: httpx.Client):
    before = stack.fence_state()
    raw = ('{"message": ' + "[" * 5_000 + "]" * 5_000 + "}").encode()
    response = client.post("/v1/sessions/bad-input/runs", content=raw, headers=JSON)

    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == "body"
    assert "nested deeper than" in response.json()["error"]["message"]
    assert stack.fence_state() == before


CORRUPTIONS = {
    "deep-metadata": ("metadata", "[" * 300 + "]" * 300),
    "surrogate-metadata": ("metadata", '{"k": "\\ud800"}'),
    "not-json-metadata": ("metadata", "{not json"),
    "garbage-accepted-at": ("accepted_at", "yesterday"),
    "huge-accepted-at": ("accepted_at", "1e300"),
    "invalid-utf8-message": ("message", b"\xff\xfe"),
}


def test_corrupted_records_answer_every_read_and_cancel_and_do_not_block_the_session(
    stack: Stack, client: httpx.Client
):
    key = new_key()
    session = f"corrupt-{key}"
    blocking = submit(client, session, f"key={key} block").json()["run_id"]
    stack.runtime.wait_entered(key)
    try:
        runs = {name: submit(client, session, name).json()["run_id"] for name in CORRUPTIONS}
        to_cancel = submit(client, session, "cancelled while corrupt").json()["run_id"]
        after = submit(client, session, "runs after").json()["run_id"]
        for name, (field, value) in CORRUPTIONS.items():
            stack.runtime.control.hset(keys.run(session, runs[name]), field, value)
        stack.runtime.control.hset(keys.run(session, to_cancel), "metadata", "[" * 2_000)

        for name, run_id in runs.items():
            shown = client.get(f"/v1/runs/{run_id}")
            assert shown.status_code == 200, (name, shown.text)
            assert shown.json()["state"] == "queued"
            assert CORRUPTIONS[name][0] in shown.json()["corrupt"]
        cancelled = client.post(f"/v1/runs/{to_cancel}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["state"] == "cancelled" and cancelled.json()["corrupt"]
        view = client.get(f"/v1/sessions/{session}")
        assert view.status_code == 200 and view.json()["queued"] == [*runs.values(), after]
    finally:
        stack.runtime.release(key)

    assert finished(client, blocking)["state"] == "succeeded"
    for name, run_id in runs.items():
        record = finished(client, run_id)
        assert record["state"] == "failed", name
        assert record["error"].startswith("run record unreadable: "), name
    assert finished(client, after)["result"] == "answer to: runs after"
    assert client.get(f"/v1/sessions/{session}").json()["state"] == "idle"


@pytest.mark.parametrize(
    "webhook", ["ftp://hooks.example.com/x", "https://internal.example.net/hook", "x" * 3000]
)
def test_a_webhook_that_is_refused_is_422_naming_it_and_writes_nothing(
    stack: Stack, client: httpx.Client, webhook: str
):
    before = stack.fence_state()
    response = submit(client, "bad-webhook", "hi", webhook=webhook)

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("invalid", "webhook")
    assert webhook not in error["message"]  # a URL may carry a token: never echoed
    assert stack.fence_state() == before
