"""DynamoDBMemory beyond the shared contract: the seed's table, layout, costs, limits, errors.

Runs over HTTP against the moto server of ``conftest.py``; what moto cannot
show (throttling, ``UnprocessedKeys``, access denied) is driven through
botocore itself: a ``before-send`` hook answering as DynamoDB would, or
``Stubber``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.retries.standard import ExponentialBackoff
from botocore.stub import ANY, Stubber

from fence.errors import MemoryBackendError, StaleWriteError
from fence.memory import DynamoDBMemory
from fence.memory.dynamodb import MAX_MESSAGES_PER_TURN
from fence.messages import Message, Role, ToolCall
from fence.settings import get_settings
from tests.memory import aws_server


def session() -> str:
    return f"user_{uuid.uuid4().hex[:8]}_session"


def user(text: str) -> Message:
    return Message(role=Role.USER, content=text)


class RequestCounter:
    """Counts the API calls a client makes (one per operation, not per HTTP retry)."""

    def __init__(self, client: Any) -> None:
        self.calls: Counter[str] = Counter()
        self.batch_keys = 0
        client.meta.events.register("before-call.dynamodb", self._count)
        client.meta.events.register("before-parameter-build.dynamodb.BatchGetItem", self._keys)

    def _count(self, model: Any, **_: Any) -> None:
        self.calls[model.name] += 1

    def _keys(self, params: dict[str, Any], **_: Any) -> None:
        self.batch_keys += sum(len(r["Keys"]) for r in params["RequestItems"].values())

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    def reset(self) -> None:
        self.calls.clear()
        self.batch_keys = 0


def items_of(client: Any, table: str) -> list[dict[str, Any]]:
    return client.scan(TableName=table, ConsistentRead=True)["Items"]


def stored_item(memory: DynamoDBMemory, seq: int) -> dict[str, Any]:
    """The item ``memory`` stores for a user message ``m<seq>`` at ``seq``."""
    return memory._message_item(seq, json.dumps(user(f"m{seq}").to_record()), None)


@pytest.fixture
def memory(dynamodb_factory) -> DynamoDBMemory:
    return dynamodb_factory(session())


# -- the seed's examples --------------------------------------------------------


def test_the_seed_cli_command_creates_a_table_the_seed_example_works_on(aws_endpoint, monkeypatch):
    aws = Path(sys.executable).with_name("aws")
    created = subprocess.run(
        [str(aws), *aws_server.SEED_TABLE_CLI, "--endpoint-url", aws_endpoint],
        env=aws_server.dummy_aws_environ(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert created.returncode == 0, created.stderr
    schema = json.loads(created.stdout)["TableDescription"]["KeySchema"]
    assert schema == [{"AttributeName": "session_id", "KeyType": "HASH"}]

    # The seed's code, word for word; the endpoint comes from boto3's standard setting.
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", aws_endpoint)
    memory = DynamoDBMemory(
        table_name="agent-memory",
        primary_key_name="session_id",
        primary_key_value="user_123_session_456",
        region="us-east-1",
    )
    memory.add_message(role="user", content="Remember: my favorite color is blue")
    memory.add_message(role="assistant", content="Noted.")

    later = DynamoDBMemory(
        table_name="agent-memory",
        primary_key_name="session_id",
        primary_key_value="user_123_session_456",
    )
    assert [m.content for m in later.get_messages()] == [
        "Remember: my favorite color is blue",
        "Noted.",
    ]
    other = DynamoDBMemory(
        table_name="agent-memory", primary_key_name="session_id", primary_key_value="user_2"
    )
    assert other.get_messages() == []


def test_endpoint_follows_the_environment_and_an_explicit_url_overrides_it(
    aws_endpoint, seed_layout_table, monkeypatch
):
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws_endpoint)
    from_env = DynamoDBMemory(seed_layout_table, primary_key_value=session())
    from_env.add_user_message("via AWS_ENDPOINT_URL")
    assert from_env.client.meta.endpoint_url == aws_endpoint

    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:9")  # nothing listens
    explicit = DynamoDBMemory(
        seed_layout_table, primary_key_value=session(), endpoint_url=aws_endpoint
    )
    explicit.add_user_message("via endpoint_url")
    assert explicit.client.meta.endpoint_url == aws_endpoint

    unreachable = DynamoDBMemory(seed_layout_table, primary_key_value=session())
    assert unreachable.client.meta.endpoint_url == "http://127.0.0.1:9"


# -- layout ----------------------------------------------------------------------


def test_partition_key_only_layout_is_one_item_per_message_plus_head_and_turn(
    dynamodb_client, seed_layout_table, aws_endpoint
):
    memory = DynamoDBMemory(
        seed_layout_table, primary_key_value="s-layout", endpoint_url=aws_endpoint
    )
    memory.set_system_message("be brief")
    memory.commit_turn("run-1", [user("q"), Message(role=Role.ASSISTANT, content="a")])

    items = {i["session_id"]["S"]: i for i in items_of(dynamodb_client, seed_layout_table)}

    assert set(items) == {
        "s-layout",
        "s-layout#m#00000000000000000001",
        "s-layout#m#00000000000000000002",
        "s-layout#t#run-1",
    }
    head = items["s-layout"]
    assert (head["last_seq"]["N"], head["system_prompt"]["S"]) == ("2", "be brief")
    record = json.loads(items["s-layout#m#00000000000000000002"]["record"]["S"])
    assert record["content"] == "a" and items["s-layout#m#00000000000000000002"]["seq"]["N"] == "2"
    assert items["s-layout#t#run-1"]["count"]["N"] == "2"


def test_sort_key_layout_keeps_a_session_in_one_partition(
    dynamodb_client, sorted_table, dynamodb_sorted_factory
):
    memory = dynamodb_sorted_factory("s-sorted")
    memory.commit_turn("run-1", [user("q")])

    keys = {(i["session_id"]["S"], i["sk"]["S"]) for i in items_of(dynamodb_client, sorted_table)}

    assert keys == {
        ("s-sorted", "head"),
        ("s-sorted", "m#00000000000000000001"),
        ("s-sorted", "t#run-1"),
    }


def test_ttl_seconds_puts_an_expiry_on_every_item(dynamodb_client, seed_layout_table, aws_endpoint):
    memory = DynamoDBMemory(
        seed_layout_table, primary_key_value="s-ttl", ttl_seconds=3600, endpoint_url=aws_endpoint
    )
    memory.set_system_message("prompt")
    memory.commit_turn("run-1", [user("q")])
    memory.add_user_message("more")
    memory.clear()

    now = time.time()
    items = items_of(dynamodb_client, seed_layout_table)
    assert len(items) == 4
    for item in items:
        assert now + 3500 < int(item["expires_at"]["N"]) <= now + 3601, item


def test_expired_items_that_ttl_has_not_deleted_yet_are_ignored_and_reused(
    dynamodb_client, seed_layout_table, aws_endpoint
):
    """TTL deletes lazily and in any order: the head may go before its messages."""
    memory = DynamoDBMemory(
        seed_layout_table, primary_key_value="s-exp", ttl_seconds=60, endpoint_url=aws_endpoint
    )
    memory.commit_turn("old-run", [user("old 1"), user("old 2")])
    past = str(int(time.time()) - 10)
    for item in items_of(dynamodb_client, seed_layout_table):
        dynamodb_client.update_item(
            TableName=seed_layout_table,
            Key={"session_id": item["session_id"]},
            UpdateExpression="SET expires_at = :past",
            ExpressionAttributeValues={":past": {"N": past}},
        )
    dynamodb_client.delete_item(TableName=seed_layout_table, Key={"session_id": {"S": "s-exp"}})

    assert memory.get_messages() == [] and not memory.has_turn("old-run")
    assert memory.commit_turn("old-run", [user("new 1")]) is True  # seq 1 is reused

    assert [(m.seq, m.content) for m in memory.get_messages()] == [(1, "new 1")]


# -- costs -----------------------------------------------------------------------


def test_an_append_costs_two_requests_at_ten_messages_and_at_three_thousand(memory):
    counter = RequestCounter(memory.client)
    memory.import_messages(user(f"m{i}") for i in range(10))
    counter.reset()
    memory.add_user_message("at ten")
    small = dict(counter.calls)

    memory.import_messages(user(f"m{i}") for i in range(3000))
    counter.reset()
    memory.add_user_message("at three thousand")

    assert small == dict(counter.calls) == {"GetItem": 1, "TransactWriteItems": 1}


def test_a_fenced_commit_costs_one_request(memory):
    memory.add_user_message("first")
    seen = memory.get_window(0).last_seq
    counter = RequestCounter(memory.client)

    assert memory.commit_turn("run-1", [user("q"), user("r")], expected_last_seq=seen)

    assert dict(counter.calls) == {"TransactWriteItems": 1}


def test_a_window_reads_what_it_returns_not_the_history(memory):
    counter = RequestCounter(memory.client)
    memory.import_messages(user("a message of ordinary length") for _ in range(20))
    budget = sum(m.tokens for m in memory.get_messages()[-8:])
    counter.reset()
    small = memory.get_window(budget)
    small_cost = (dict(counter.calls), counter.batch_keys)

    memory.import_messages(user("a message of ordinary length") for _ in range(4000))
    counter.reset()
    large = memory.get_window(budget)

    assert len(small.messages) == len(large.messages) == 8
    assert (dict(counter.calls), counter.batch_keys) == small_cost
    assert counter.calls["GetItem"] == 1 and counter.calls["BatchGetItem"] <= 2
    assert counter.batch_keys <= 2 * len(large.messages) + 2


def test_clear_is_one_request_whatever_the_history_and_purge_reclaims_it(
    dynamodb_client, seed_layout_table, aws_endpoint
):
    memory = DynamoDBMemory(
        seed_layout_table, primary_key_value="s-clear", endpoint_url=aws_endpoint
    )
    memory.set_system_message("prompt")
    memory.commit_turn("run-1", [user("q")])
    memory.import_messages(user(f"m{i}") for i in range(600))
    counter = RequestCounter(memory.client)

    memory.clear()

    assert dict(counter.calls) == {"UpdateItem": 1}
    assert memory.get_messages() == [] and memory.get_system_message() == "prompt"
    assert len(items_of(dynamodb_client, seed_layout_table)) == 603  # still stored

    assert memory.purge_cleared() == 601
    remaining = {i["session_id"]["S"] for i in items_of(dynamodb_client, seed_layout_table)}
    assert remaining == {"s-clear", "s-clear#t#run-1"}
    assert memory.has_turn("run-1") and memory.purge_cleared() == 0
    memory.add_user_message("after")
    assert [(m.seq, m.content) for m in memory.get_messages()] == [(602, "after")]


def test_bulk_import_lands_after_the_history_in_order(memory):
    memory.add_user_message("before")

    assert memory.import_messages(user(f"i{n}") for n in range(60)) == 60
    memory.add_user_message("after")

    messages = memory.get_messages()
    assert [m.content for m in messages] == ["before", *(f"i{n}" for n in range(60)), "after"]
    assert [m.seq for m in messages] == list(range(1, 63))


# -- size and shape limits ---------------------------------------------------------


def test_no_size_cap_on_a_conversation_and_pages_are_followed(dynamodb_sorted_factory):
    """3 MB of history: several 1 MB Query pages on the sorted table, all read back."""
    memory = dynamodb_sorted_factory(session())
    chunk = "é" * 50_000  # 100 KB of UTF-8
    for turn in range(6):
        memory.commit_turn(f"run-{turn}", [user(f"{turn}-{i} {chunk}") for i in range(5)])

    messages = memory.get_messages()

    assert [m.content.split(" ")[0] for m in messages] == [
        f"{t}-{i}" for t in range(6) for i in range(5)
    ]
    assert messages[-1].content.endswith(chunk)


@pytest.fixture
def large_messages_allowed(monkeypatch):
    monkeypatch.setenv("FENCE_MAX_MESSAGE_BYTES", str(2 * 1024 * 1024))
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


def test_a_message_too_big_for_one_item_is_refused_naming_the_limit(memory, large_messages_allowed):
    memory.add_user_message("kept")
    huge = user("x" * (450 * 1024))

    with pytest.raises(ValueError, match=r"400 KB"):
        memory.commit_turn("run-big", [user("fits"), huge])
    with pytest.raises(ValueError, match=r"400 KB"):
        memory.add_user_message("y" * (401 * 1024))

    assert [m.content for m in memory.get_messages()] == ["kept"]
    assert not memory.has_turn("run-big")


def test_a_turn_over_the_transaction_limits_is_refused_and_writes_nothing(memory):
    memory.add_user_message("kept")

    with pytest.raises(ValueError, match=f"at most {MAX_MESSAGES_PER_TURN} messages"):
        memory.commit_turn("run-long", [user(f"m{i}") for i in range(MAX_MESSAGES_PER_TURN + 1)])
    with pytest.raises(ValueError, match="4 MB"):
        memory.commit_turn("run-heavy", [user("z" * 250_000) for _ in range(20)])

    assert [m.content for m in memory.get_messages()] == ["kept"]
    assert memory.commit_turn("run-full", [user(f"m{i}") for i in range(MAX_MESSAGES_PER_TURN)])
    assert len(memory.get_messages()) == 1 + MAX_MESSAGES_PER_TURN


def test_text_dynamodb_cannot_store_is_refused_before_anything_is_written(memory):
    """A lone surrogate is not UTF-8: refused up front, also on import.

    ``Message`` validation already refuses it; the backend checks again for
    messages built without validation (``model_construct``).
    """
    memory.add_user_message("kept")
    unstorable = Message.model_construct(
        role=Role.USER, content="ok", meta={"note": "\ud800"}, tokens=3
    )

    with pytest.raises(ValueError, match=r"messages\[1\].*surrogate"):
        memory.commit_turn("run-bad", [user("fine"), unstorable])
    with pytest.raises(ValueError, match=r"messages\[2\].*surrogate"):
        memory.import_messages([user("a"), user("b"), unstorable])

    assert [(m.seq, m.content) for m in memory.get_messages()] == [(1, "kept")]
    assert memory.get_window(0).last_seq == 1 and not memory.has_turn("run-bad")


def test_numbers_and_unicode_in_tool_arguments_round_trip(memory):
    arguments = {"f": 0.1, "big": 12345678901234567890, "neg": -1e-7, "s": "naïve 🚀", "n": None}
    call = ToolCall(id="c1", name="calc", arguments=arguments)
    memory.commit_turn("run-1", [Message(role=Role.ASSISTANT, content="", tool_calls=(call,))])

    [stored] = memory.get_messages()

    assert stored.tool_calls[0].arguments == arguments
    assert type(stored.tool_calls[0].arguments["f"]) is float


# -- concurrency inside the commit -------------------------------------------------------


def test_a_commit_that_lost_the_race_retries_on_the_head_the_failure_returned(
    memory, aws_endpoint, monkeypatch
):
    """An unfenced append whose head moved under it lands after the rival's message.

    The cancelled transaction returns the head as it now is, so the retry costs
    one more request, not two.
    """
    memory.add_user_message("first")
    rival = DynamoDBMemory(
        memory.table_name, primary_key_value=memory.session_id, endpoint_url=aws_endpoint
    )
    real_get_head = memory._get_head
    raced = []

    def get_head_then_race():
        head = real_get_head()
        if not raced:
            raced.append(True)
            rival.add_user_message("rival")  # lands between our read and our write
        return head

    monkeypatch.setattr(memory, "_get_head", get_head_then_race)
    counter = RequestCounter(memory.client)
    memory.add_user_message("mine")

    assert dict(counter.calls) == {"GetItem": 1, "TransactWriteItems": 2}
    assert [m.content for m in memory.get_messages()] == ["first", "rival", "mine"]


def test_a_stale_fenced_commit_that_was_already_committed_reports_false(memory):
    seen = memory.get_window(0).last_seq
    assert memory.commit_turn("run-1", [user("q")], expected_last_seq=seen)

    # a redelivered run, fenced on the seq it saw before its first commit
    assert memory.commit_turn("run-1", [user("q")], expected_last_seq=seen) is False
    with pytest.raises(StaleWriteError):
        memory.commit_turn("run-2", [user("q")], expected_last_seq=seen)


# -- errors ----------------------------------------------------------------------------


def test_a_missing_table_is_a_backend_error_naming_the_table(aws_endpoint):
    memory = DynamoDBMemory("no-such-table", primary_key_value="s", endpoint_url=aws_endpoint)

    with pytest.raises(MemoryBackendError, match="'no-such-table'.*aws_setup dynamodb"):
        memory.add_user_message("hi")


def test_access_denied_names_the_table_and_never_a_secret(memory):
    stubber = Stubber(memory.client)
    stubber.add_client_error(
        "get_item",
        service_error_code="AccessDeniedException",
        service_message="User: arn:aws:iam::123456789012:user/w is not authorized",
        http_status_code=400,
    )
    with stubber, pytest.raises(MemoryBackendError) as raised:
        memory.get_messages()

    message = str(raised.value)
    assert memory.table_name in message and "denied" in message
    assert aws_server.DUMMY_ENV["AWS_SECRET_ACCESS_KEY"] not in message
    assert "123456789012" not in message


def test_no_region_anywhere_is_a_clear_error(seed_layout_table, monkeypatch):
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)

    with pytest.raises(MemoryBackendError, match="region"):
        DynamoDBMemory(seed_layout_table, primary_key_value="s")


@pytest.mark.parametrize(
    ("kwargs", "rule"),
    [
        ({"table_name": "agent-memory"}, "primary_key_value"),
        ({"table_name": "x", "primary_key_value": "s"}, "table_name"),
        ({"table_name": "agent-memory", "primary_key_value": "a#b"}, "session_id"),
        ({"table_name": "agent-memory", "primary_key_value": "s", "ttl_seconds": 0}, "ttl"),
        ({"table_name": "agent-memory", "primary_key_value": "s", "primary_key_name": ""}, "key"),
    ],
)
def test_invalid_configuration_is_refused_naming_the_field(kwargs, rule, aws_endpoint):
    with pytest.raises(ValueError, match=rule):
        DynamoDBMemory(endpoint_url=aws_endpoint, **kwargs)


class _Throttle:
    """A ``before-send`` hook answering the first ``times`` GetItem calls as throttled."""

    def __init__(self, times: int) -> None:
        self.times = times
        self.attempts = 0

    def __call__(self, request: Any, **_: Any) -> AWSResponse | None:
        if request.headers.get("X-Amz-Target", b"") != b"DynamoDB_20120810.GetItem":
            return None
        self.attempts += 1
        if self.attempts > self.times:
            return None
        body = json.dumps(
            {
                "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                "message": "The level of configured provisioned throughput was exceeded",
            }
        ).encode()
        return AWSResponse(
            request.url, 400, {"Content-Type": "application/x-amz-json-1.0"}, _Raw(body)
        )


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any):
        yield self.body


@pytest.fixture
def no_backoff_sleep(monkeypatch):
    """botocore's backoff waits up to seconds; the decision to retry is what is tested."""
    delays: list[float] = []
    real = ExponentialBackoff.delay_amount

    def record(self, context):
        delays.append(real(self, context))
        return 0

    monkeypatch.setattr(ExponentialBackoff, "delay_amount", record)
    return delays


def test_throttling_is_retried_with_backoff(memory, no_backoff_sleep):
    throttle = _Throttle(times=3)
    memory.client.meta.events.register_first("before-send.dynamodb", throttle)

    memory.add_user_message("eventually written")

    assert throttle.attempts == 4
    assert len(no_backoff_sleep) == 3 and all(d >= 0 for d in no_backoff_sleep)
    assert [m.content for m in memory.get_messages()] == ["eventually written"]


def test_throttling_that_never_ends_is_a_backend_error_naming_the_table(memory, no_backoff_sleep):
    memory.client.meta.events.register_first("before-send.dynamodb", _Throttle(times=1000))

    with pytest.raises(MemoryBackendError, match=f"'{memory.table_name}'.*throttling"):
        memory.get_messages()


def test_unprocessed_keys_are_fetched_again(aws_endpoint):
    client = aws_server.client("dynamodb", aws_endpoint)
    memory = DynamoDBMemory("agent-memory", primary_key_value="s", client=client)

    def item(seq: int) -> dict[str, Any]:
        return stored_item(memory, seq)

    def keys(*seqs: int) -> list[dict[str, Any]]:
        return [memory._message_key(s) for s in seqs]

    stubber = Stubber(client)
    stubber.add_response(
        "get_item", {"Item": {"session_id": {"S": "s"}, "last_seq": {"N": "3"}}}, None
    )
    stubber.add_response(
        "batch_get_item",
        {
            "Responses": {"agent-memory": [item(3)]},
            "UnprocessedKeys": {"agent-memory": {"Keys": keys(2, 1), "ConsistentRead": True}},
        },
        {"RequestItems": {"agent-memory": {"Keys": keys(3, 2, 1), "ConsistentRead": True}}},
    )
    stubber.add_response(
        "batch_get_item",
        {"Responses": {"agent-memory": [item(1), item(2)]}},
        {"RequestItems": {"agent-memory": {"Keys": keys(2, 1), "ConsistentRead": True}}},
    )
    with stubber:
        messages = memory.get_messages()
    stubber.assert_no_pending_responses()

    assert [(m.seq, m.content) for m in messages] == [(1, "m1"), (2, "m2"), (3, "m3")]


def test_query_pages_are_followed_with_their_start_key(aws_endpoint):
    client = aws_server.client("dynamodb", aws_endpoint)
    memory = DynamoDBMemory("t-sorted", primary_key_value="s", sort_key_name="sk", client=client)

    def item(seq: int) -> dict[str, Any]:
        return stored_item(memory, seq)

    stubber = Stubber(client)
    stubber.add_response(
        "get_item", {"Item": {"session_id": {"S": "s"}, "last_seq": {"N": "3"}}}, None
    )
    page_end = memory._message_key(2)
    stubber.add_response("query", {"Items": [item(3), item(2)], "LastEvaluatedKey": page_end}, None)
    stubber.add_response(
        "query", {"Items": [item(1)]}, {**_any_query(), "ExclusiveStartKey": page_end}
    )
    with stubber:
        messages = memory.get_messages()
    stubber.assert_no_pending_responses()

    assert [m.seq for m in messages] == [1, 2, 3]


def _any_query() -> dict[str, Any]:
    return {
        "TableName": ANY,
        "KeyConditionExpression": ANY,
        "ExpressionAttributeNames": ANY,
        "ExpressionAttributeValues": ANY,
        "ScanIndexForward": False,
        "ConsistentRead": True,
        "Limit": ANY,
    }


def test_an_unreachable_endpoint_is_a_backend_error_naming_the_table(aws_env, no_backoff_sleep):
    memory = DynamoDBMemory(
        "agent-memory", primary_key_value="s", endpoint_url="http://127.0.0.1:9"
    )

    with pytest.raises(MemoryBackendError, match="cannot reach.*'agent-memory'"):
        memory.add_user_message("hi")
