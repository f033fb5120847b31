"""Set-up helpers: the DynamoDB table and the AgentCore memory, from Python and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from fence.errors import MemoryBackendError
from fence.memory import DynamoDBMemory
from fence.memory.aws_setup import create_agentcore_memory, create_dynamodb_table
from tests.memory import aws_server


def _ttl(client, table: str) -> dict:
    return client.describe_time_to_live(TableName=table)["TimeToLiveDescription"]


def test_creating_the_table_twice_creates_it_once_with_ttl(dynamodb_client, table_name):
    first = create_dynamodb_table(table_name, client=dynamodb_client)
    second = create_dynamodb_table(table_name, client=dynamodb_client)

    assert (first["created"], second["created"]) == (True, False)
    assert first["key_schema"] == second["key_schema"] == {"HASH": "session_id"}
    table = dynamodb_client.describe_table(TableName=table_name)["Table"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert _ttl(dynamodb_client, table_name) == {
        "TimeToLiveStatus": "ENABLED",
        "AttributeName": "expires_at",
    }


def test_ttl_is_added_to_the_seeds_table_that_lacks_it(dynamodb_client, seed_layout_table):
    assert _ttl(dynamodb_client, seed_layout_table)["TimeToLiveStatus"] == "DISABLED"

    result = create_dynamodb_table(
        seed_layout_table, point_in_time_recovery=True, client=dynamodb_client
    )

    assert result["created"] is False
    assert _ttl(dynamodb_client, seed_layout_table)["AttributeName"] == "expires_at"
    backups = dynamodb_client.describe_continuous_backups(TableName=seed_layout_table)
    pitr = backups["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]
    assert pitr["PointInTimeRecoveryStatus"] == "ENABLED"


def test_a_table_with_another_key_schema_is_refused_not_used(dynamodb_client, seed_layout_table):
    with pytest.raises(MemoryBackendError, match="key schema"):
        create_dynamodb_table(seed_layout_table, sort_key_name="sk", client=dynamodb_client)


def test_the_command_line_creates_a_sorted_table_a_memory_can_use(aws_endpoint, table_name):
    command = [
        sys.executable,
        "-m",
        "fence.memory.aws_setup",
        "--endpoint-url",
        aws_endpoint,
        "--region",
        "us-east-1",
        "dynamodb",
        "--table",
        table_name,
        "--sort-key",
        "sk",
    ]
    env = aws_server.dummy_aws_environ()
    runs = [subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)]
    runs.append(subprocess.run(command, env=env, capture_output=True, text=True, timeout=120))

    assert [r.returncode for r in runs] == [0, 0], runs[0].stderr + runs[1].stderr
    results = [json.loads(r.stdout) for r in runs]
    assert [r["created"] for r in results] == [True, False]
    assert results[0]["key_schema"] == {"HASH": "session_id", "RANGE": "sk"}

    memory = DynamoDBMemory(
        table_name, primary_key_value="s", sort_key_name="sk", endpoint_url=aws_endpoint
    )
    memory.add_user_message("works")
    assert [m.content for m in memory.get_messages()] == ["works"]


def test_the_command_line_reports_errors_without_a_traceback(aws_endpoint, dynamodb_client):
    name = f"t-{uuid.uuid4().hex[:8]}"
    aws_server.create_seed_table(dynamodb_client, name)
    failed = subprocess.run(
        [
            sys.executable,
            "-m",
            "fence.memory.aws_setup",
            "--endpoint-url",
            aws_endpoint,
            "dynamodb",
            "--table",
            name,
            "--partition-key",
            "pk",
        ],
        env=aws_server.dummy_aws_environ(),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert failed.returncode == 1
    assert failed.stderr.startswith("error: ") and "key schema" in failed.stderr
    assert "Traceback" not in failed.stderr


def test_creating_the_agentcore_memory_twice_gives_one_memory(aws_endpoint):
    control = aws_server.client("bedrock-agentcore-control", aws_endpoint)
    name = f"fence_{uuid.uuid4().hex[:8]}"

    first = create_agentcore_memory(name, event_expiry_days=30, client=control)
    second = create_agentcore_memory(name, client=control)

    assert first["created"] is True and second["created"] is False
    assert first["memory_id"] == second["memory_id"] and first["status"] == "ACTIVE"
    memory = control.get_memory(memoryId=first["memory_id"])["memory"]
    assert (memory["name"], memory["eventExpiryDuration"]) == (name, 30)


def test_the_command_line_prints_the_memory_id_to_export(aws_endpoint):
    name = f"fence_{uuid.uuid4().hex[:8]}"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fence.memory.aws_setup",
            "--endpoint-url",
            aws_endpoint,
            "agentcore",
            "--name",
            name,
        ],
        env=aws_server.dummy_aws_environ(),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    memory_id = json.loads(done.stdout)["memory_id"]
    assert f"export FENCE_AGENTCORE_MEMORY_ID={memory_id}" in done.stderr
