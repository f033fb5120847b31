"""No input and no record in Redis can poison a session or a read.

Metadata that could not be stored and read back as the same JSON is refused at
submit, naming ``metadata`` and the rule, and writes nothing. A run record
corrupted in Redis anyway (by hand, by a bug, by a failover) is still readable:
``RunRecord.from_hash`` says what it could not read in ``corrupt``, a worker
fails that run with the reason recorded, and the session moves on.
"""

from __future__ import annotations

import json
import math

import pytest

from fence.plain_json import text_nesting
from fence.runs import RunRecord, RunRequest, RunState, keys
from fence.runs.schema import MAX_METADATA_BYTES, MAX_METADATA_DEPTH, MAX_METADATA_KEY_CHARS
from producer import RunCancelled, RunFailed
from producer.api_models import RunView

from .conftest import Runtime, new_key


def nested(depth: int) -> dict:
    """An object nested ``depth`` levels deep, counting itself: ``nested(1) == {}``."""
    value: dict = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def nested_text(depth: int) -> str:
    return '{"a":' * (depth - 1) + "{}" + "}" * (depth - 1)


def cyclic() -> dict:
    value: dict = {}
    value["self"] = value
    return value


BAD_METADATA = [
    (nested(MAX_METADATA_DEPTH + 1), "nested deeper than"),
    (nested(960), "nested deeper than"),
    (nested(5_000), "nested deeper than"),
    ({"list": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}, "nested deeper"),
    (cyclic(), "nested deeper than"),
    ({"k": "lone \ud800 surrogate"}, "valid Unicode"),
    ({"lone \udc80 key": 1}, "valid Unicode"),
    ({"k": [{"deep": ["\udfff"]}]}, "valid Unicode"),
    ({"k": math.nan}, "finite"),
    ({"k": [math.inf]}, "finite"),
    ({1: "int key"}, "keys must be strings"),
    ({"k": {None: 1}}, "keys must be strings"),
    ({"k" * (MAX_METADATA_KEY_CHARS + 1): 1}, f"at most {MAX_METADATA_KEY_CHARS} characters"),
    ({"k": (1, 2)}, "tuple"),
    ({"k": {1, 2}}, "set"),
    ({"k": b"bytes"}, "bytes"),
    ({"k": object()}, "object"),
    ({"k": 10**5000}, "JSON"),
    ({"blob": "x" * MAX_METADATA_BYTES}, f"larger than {MAX_METADATA_BYTES} bytes"),
    ({"blob": "é" * (MAX_METADATA_BYTES // 2)}, f"larger than {MAX_METADATA_BYTES} bytes"),
]


@pytest.mark.parametrize(("metadata", "rule"), BAD_METADATA)
def test_metadata_that_cannot_round_trip_is_refused_naming_it_and_nothing_is_written(
    runtime: Runtime, metadata, rule
):
    with pytest.raises(ValueError, match=rule) as refused:
        runtime.producer.submit("valid", "hello", metadata=metadata)

    assert not isinstance(refused.value, RecursionError)
    assert "metadata: " in str(refused.value)
    assert runtime.control.dbsize() == 0


def test_metadata_at_every_limit_is_accepted_and_read_back_unchanged(runtime: Runtime):
    at_limits = {
        "deep": nested(MAX_METADATA_DEPTH - 1),
        "k" * MAX_METADATA_KEY_CHARS: [1, -2.5, 10**40, True, None, "ünï©ødé 🎉"],
    }
    at_limits["pad"] = ""
    size = len(json.dumps(at_limits, ensure_ascii=False, separators=(",", ":")).encode())
    at_limits["pad"] = "p" * (MAX_METADATA_BYTES - size)

    run = runtime.producer.submit("valid", "hello", metadata=at_limits)

    record = run.status()
    assert record.metadata == at_limits and record.corrupt is None
    assert RunView.of(record).metadata == at_limits


@pytest.mark.parametrize(
    ("text", "nesting"),
    [
        ("{}", (1, None)),
        ('{"a": [1, {"b": []}], "c": 2}', (4, "a")),
        ('{"a": 1, "deep": [[[]]], "z": {}}', (4, "deep")),
        ('{"brackets": "[[[{{{", "quote": "\\"[[", "k": [[]]}', (3, "k")),
        ('[{"not a key": [[]]}]', (4, None)),
        ('{"a": "unterminated [[[', (4, "a")),  # counted deeper, never shallower
        ("[" * 100_000, (100_000, None)),
        ("no json at all", (0, None)),
    ],
)
def test_json_text_nesting_is_counted_without_parsing(text, nesting):
    assert text_nesting(text) == nesting


# -- records corrupted in Redis ---------------------------------------------------------


def good_hash() -> dict[str, str]:
    request = RunRequest(
        session_id="sess", message="hello", agent="controlled", metadata={"ticket": 42}
    )
    return RunRecord.new_hash("run-1", request, 1_700_000_000.5)


HOSTILE = [
    "",
    "garbage",
    "nan",
    "-inf",
    "1e400",
    "-1",
    "1" * 5000,
    "{not json",
    "[]",
    "[" * 2_000 + "]" * 2_000,
    nested_text(300),
    '{"k": "\\ud800"}',
    '{"\\udc80": 1}',
    '{"k": NaN}',
    '{"k": 1' + "0" * 5000 + "}",
    "lone \udcff surrogate",
    "\x00\ufffe",
    "x" * (MAX_METADATA_BYTES + 1),
]


def serialisable(record: RunRecord) -> None:
    """Every way a record is shown: the CLI's JSON, the gateway's response model."""
    json.dumps(record.model_dump(mode="json"), allow_nan=False, ensure_ascii=False).encode()
    json.dumps(RunView.of(record).model_dump(mode="json"), allow_nan=False).encode()


@pytest.mark.parametrize("field", [*RunRecord.model_fields, "pending_result"])
def test_any_value_in_any_field_reads_back_as_a_record_that_serialises(field):
    for value in HOSTILE:
        hash_ = {**good_hash(), field: value}
        record = RunRecord.from_hash(hash_, run_id="run-1", session_id="sess")

        serialisable(record)
        assert (record.id, record.session_id) == ("run-1", "sess")
        assert record.corrupt is None or len(record.corrupt) < 300
        assert len(value) < 20 or value[:20] not in (record.corrupt or "")  # not echoed


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("metadata", "{not json", "metadata"),
        ("metadata", "[" * 2_000 + "]" * 2_000, "metadata"),
        ("metadata", nested_text(MAX_METADATA_DEPTH + 1), "metadata"),
        ("metadata", '{"k": "\\ud800"}', "metadata"),
        ("metadata", "[1, 2]", "metadata"),
        ("state", "zombie", "state"),
        ("strategy", "sometimes", "strategy"),
        ("accepted_at", "yesterday", "accepted_at"),
        ("accepted_at", "nan", "accepted_at"),
        ("started_at", "inf", "started_at"),
        ("attempts", "many", "attempts"),
        ("message", "lone \udcff surrogate", "message"),
        ("agent", "", "agent"),
    ],
)
def test_an_unreadable_field_gets_a_safe_value_and_is_named_in_corrupt(field, value, reason):
    record = RunRecord.from_hash({**good_hash(), field: value})

    assert record.corrupt and reason in record.corrupt
    assert not value or value not in record.corrupt  # what it holds is not echoed
    assert record.id == "run-1" and record.session_id == "sess"
    serialisable(record)


def test_unreadable_values_are_replaced_by_safe_ones():
    hash_ = {**good_hash(), "state": "zombie", "metadata": "{", "started_at": "2.0"}
    del hash_["accepted_at"]
    record = RunRecord.from_hash(hash_)

    assert record.state is RunState.FAILED  # a run that cannot be read will not run
    assert record.metadata == {}
    assert record.accepted_at == 2.0  # the nearest time the record still knows
    assert record.corrupt == (
        "state: should be 'queued', 'running', 'waiting', 'succeeded', 'failed', "
        "'cancelled' or 'rejected'; metadata: not valid JSON; accepted_at: missing"
    )


def test_a_readable_record_is_not_corrupt_and_the_known_ids_win():
    assert RunRecord.from_hash(good_hash()).corrupt is None
    assert RunRecord.from_hash(good_hash()).metadata == {"ticket": 42}

    moved = RunRecord.from_hash({**good_hash(), "id": "other"}, run_id="run-1", session_id="sess")
    assert moved.id == "run-1" and moved.corrupt == "id: does not match its key"
    bare = RunRecord.from_hash({}, run_id="run-1", session_id="sess")
    assert (bare.id, bare.session_id, bare.state) == ("run-1", "sess", RunState.FAILED)
    assert bare.corrupt and "message: missing" in bare.corrupt


CORRUPTIONS = [
    ("metadata", "{not json"),
    ("metadata", "[" * 2_000 + "]" * 2_000),
    ("metadata", '{"k": "\\ud800 lone surrogate"}'),
    ("accepted_at", "yesterday"),
    ("strategy", "sometimes"),
    ("message", b"\xff\xfe not UTF-8"),
    ("attempts", "several"),
]


def test_a_record_corrupted_in_redis_fails_its_run_and_the_session_moves_on(runtime: Runtime):
    runtime.start_worker()
    producer, key = runtime.producer, new_key()
    session = f"poisoned-{key}"
    first = producer.submit(session, f"key={key} block")
    runtime.wait_entered(key)
    poisoned = [producer.submit(session, f"poisoned {n}") for n in range(len(CORRUPTIONS))]
    stateless = producer.submit(session, "its state is garbage")
    cancelled = producer.submit(session, "cancelled while corrupt")
    after = producer.submit(session, "runs after")
    for run, (field, value) in [
        *zip(poisoned, CORRUPTIONS, strict=True),
        (cancelled, CORRUPTIONS[1]),
    ]:
        runtime.control.hset(keys.run(session, run.id), field, value)
    runtime.control.hset(keys.run(session, stateless.id), "state", "zombie")

    for run in poisoned:  # every read works while they wait
        record = run.status()
        assert record.state is RunState.QUEUED and record.corrupt
    assert cancelled.cancel().state is RunState.CANCELLED
    assert stateless.status().state is RunState.FAILED and "state" in stateless.status().corrupt
    assert stateless.cancel().corrupt
    assert producer.session(session).queued == [r.id for r in (*poisoned, stateless, after)]
    runtime.release(key)

    assert first.result(timeout=30) == f"answer to: key={key} block"
    for run, (field, _) in zip(poisoned, CORRUPTIONS, strict=True):
        with pytest.raises(RunFailed, match="run record unreadable") as failed:
            run.result(timeout=30)
        assert field in failed.value.record.error
        assert failed.value.record.finished_at is not None
    with pytest.raises(RunCancelled):
        cancelled.result(timeout=5)
    assert after.result(timeout=30) == "answer to: runs after"
    assert runtime.contents(session) == [
        f"key={key} block",
        f"answer to: key={key} block",
        "runs after",
        "answer to: runs after",
    ]
    assert producer.session(session).active_run is None
