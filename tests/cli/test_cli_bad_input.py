"""``fence`` with hostile metadata and corrupted run records, against a real redis-server
and a real Celery worker: one line naming the field, never a traceback, nothing written;
``status``, ``cancel`` and ``session`` show a corrupted record and say what is unreadable."""

from __future__ import annotations

import json

import pytest

from fence.runs import RunState, keys
from fence.runs.schema import MAX_METADATA_DEPTH, MAX_METADATA_KEY_CHARS
from tests.support import Runtime, new_key


def nested_text(depth: int) -> str:
    return '{"a":' * (depth - 1) + "{}" + "}" * (depth - 1)


@pytest.mark.parametrize(
    ("argv", "code", "expected"),
    [
        (
            ("--metadata", nested_text(2_000)),
            2,
            f"--metadata: nested deeper than {MAX_METADATA_DEPTH} levels",
        ),
        (
            ("--metadata", nested_text(MAX_METADATA_DEPTH + 1)),
            2,
            f"--metadata: nested deeper than {MAX_METADATA_DEPTH} levels",
        ),
        (("--metadata", '{"k": "\\ud800"}'), 1, "metadata: must be valid Unicode"),
        (("--metadata", '{"\\udc80": "key"}'), 1, "metadata: must be valid Unicode"),
        (("--metadata", '{"k": NaN}'), 1, "metadata: numbers must be finite"),
        (("--metadata", '{"k": 1' + "0" * 5_000 + "}"), 2, "--metadata: must be a JSON object"),
        (
            ("--metadata", json.dumps({"k" * (MAX_METADATA_KEY_CHARS + 1): 1})),
            1,
            f"metadata: keys must be at most {MAX_METADATA_KEY_CHARS} characters",
        ),
    ],
    ids=["2000-deep", "one-too-deep", "surrogate-value", "surrogate-key", "nan", "huge-int", "key"],
)
def test_bad_metadata_is_one_line_naming_it_and_writes_nothing(
    fence, runtime: Runtime, argv, code, expected
):
    before = set(runtime.control.scan_iter("fence:*"))

    result = fence("submit", "ok-session", "hi", *argv)

    assert result.code == code, result.err
    assert expected in result.err and "Traceback" not in result.err
    assert code == 2 or len(result.err.strip().splitlines()) == 1  # 2: usage, then the error
    assert set(runtime.control.scan_iter("fence:*")) == before


def test_status_cancel_and_session_show_a_corrupted_record(fence, runtime: Runtime):
    sid, key = f"cli-corrupt-{new_key()}", new_key()
    blocking = json.loads(fence("submit", sid, f"key={key} block", "--json").out)
    runtime.wait_entered(key)
    try:
        queued = json.loads(fence("submit", sid, "corrupt me", "--json").out)
        doomed = json.loads(fence("submit", sid, "fails unread", "--json").out)
        control = runtime.control
        control.hset(keys.run(sid, queued["run_id"]), mapping={"metadata": "[" * 2_000})
        control.hset(keys.run(sid, doomed["run_id"]), mapping={"accepted_at": "1e300"})
        control.hset(keys.run(sid, doomed["run_id"]), mapping={"message": b"\xff\xfe"})

        shown = fence("status", queued["run_id"])
        assert shown.code == 0, shown.err
        assert "corrupt" in shown.out and "metadata" in shown.out
        as_json = json.loads(fence("status", doomed["run_id"], "--json").out)
        assert "accepted_at" in as_json["corrupt"] and "message" in as_json["corrupt"]
        session = fence("session", sid, "--json")
        assert session.code == 0 and json.loads(session.out)["queued"] == [
            queued["run_id"],
            doomed["run_id"],
        ]
        cancelled = fence("cancel", queued["run_id"])
        assert cancelled.code == 0, cancelled.err
        assert "cancelled (it had not started)" in cancelled.out
    finally:
        runtime.release(key)

    store = runtime.producer.store
    assert store.wait(blocking["run_id"], 30).state is RunState.SUCCEEDED
    failed = store.wait(doomed["run_id"], 30)
    assert failed.state is RunState.FAILED and "run record unreadable" in (failed.error or "")
    shown = fence("status", doomed["run_id"])
    assert shown.code == 0 and "run record unreadable" in shown.out
