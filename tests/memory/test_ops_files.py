"""ops/dynamodb-table.yaml and ops/iam-worker-policy.json, checked offline.

The template goes through cfn-lint (its Python API, the same rules as the
CLI); the policy is checked for
shape, for naming only real API operations, and against the calls the
backends actually make (recorded while they work), so it is neither too
narrow for a worker nor wider than one needs.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import boto3
import pytest
from cfnlint.api import ManualArgs, lint
from cfnlint.decode import decode

from fence.errors import StaleWriteError
from fence.messages import Message, Role

OPS = Path(__file__).resolve().parents[2] / "ops"
TEMPLATE = OPS / "dynamodb-table.yaml"
POLICY = OPS / "iam-worker-policy.json"

# IAM authorises each action inside TransactWriteItems as its own operation.
IAM_ACTIONS_OF = {"TransactWriteItems": ("PutItem", "UpdateItem")}
IAM_PREFIX = {"dynamodb": "dynamodb", "bedrock-agentcore": "bedrock-agentcore"}


def _lint(text: str) -> list[str]:
    """cfn-lint's findings (errors, warnings and informational) for a template."""
    return [str(match) for match in lint(text, config=ManualArgs(regions=["us-east-1"]))]


def test_the_table_template_passes_cfn_lint():
    assert _lint(TEMPLATE.read_text()) == []


def test_cfn_lint_does_reject_a_broken_table():
    """The check above can fail: a bad billing mode is an error."""
    findings = _lint(TEMPLATE.read_text().replace("PAY_PER_REQUEST", "WHENEVER"))

    assert any("E3030" in f and "WHENEVER" in f for f in findings), findings


def test_the_table_is_on_demand_with_ttl_pitr_and_the_seeds_key():
    template, problems = decode(str(TEMPLATE))
    assert not problems
    table = template["Resources"]["MemoryTable"]
    properties = table["Properties"]

    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["TimeToLiveSpecification"]["Enabled"] is True
    assert template["Parameters"]["TtlAttributeName"]["Default"] == "expires_at"
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["DeletionPolicy"] == "Retain"
    assert template["Parameters"]["PartitionKeyName"]["Default"] == "session_id"
    assert template["Parameters"]["SortKeyName"]["Default"] == ""  # the seed's layout
    without_sort_key = properties["KeySchema"]["Fn::If"][2]
    assert without_sort_key == [{"AttributeName": {"Ref": "PartitionKeyName"}, "KeyType": "HASH"}]


def _policy() -> dict:
    return json.loads(POLICY.read_text())


def _allowed() -> set[str]:
    return {action for statement in _policy()["Statement"] for action in statement["Action"]}


def test_the_worker_policy_is_a_well_formed_least_privilege_policy():
    policy = _policy()

    assert policy["Version"] == "2012-10-17"
    for statement in policy["Statement"]:
        assert set(statement) == {"Sid", "Effect", "Action", "Resource"}
        assert statement["Effect"] == "Allow"
        assert all("*" not in action for action in statement["Action"])
        resource = statement["Resource"]
        assert resource != "*" and resource.startswith("arn:aws:")
    resources = {s["Resource"] for s in policy["Statement"]}
    assert "arn:aws:dynamodb:*:*:table/agent-memory" in resources
    assert "arn:aws:bedrock-agentcore:*:*:memory/fence_memory-*" in resources


def test_every_action_in_the_policy_is_a_real_api_operation():
    session = boto3.session.Session(region_name="us-east-1")
    for action in _allowed():
        service, _, operation = action.partition(":")
        model = session.client(service).meta.service_model  # no request is made
        assert operation in model.operation_names, action


@pytest.fixture
def recorded_operations(dynamodb_factory, dynamodb_sorted_factory, agentcore_factory):
    """Every operation the three backends call while doing a worker's job."""
    operations: set[str] = set()

    def record(model, **_):
        operations.add(f"{model.service_model.service_id.hyphenize()}:{model.name}")

    for factory in (dynamodb_factory, dynamodb_sorted_factory, agentcore_factory):
        memory = factory(f"s-{uuid.uuid4().hex[:8]}")
        memory.client.meta.events.register("before-call", record)
        memory.set_system_message("prompt")
        memory.get_system_message()
        memory.add_user_message("hello")
        seen = memory.get_window(100).last_seq
        turn = [Message(role=Role.USER, content="q"), Message(role=Role.ASSISTANT, content="a")]
        memory.commit_turn("run-1", turn, expected_last_seq=seen)
        memory.commit_turn("run-1", turn)
        with pytest.raises(StaleWriteError):
            memory.commit_turn("run-2", turn, expected_last_seq=seen)
        memory.has_turn("run-1")
        memory.get_messages()
        memory.clear()
        memory.is_empty()
    return operations


def test_the_policy_allows_what_workers_call_and_little_more(recorded_operations):
    needed = set()
    for operation in recorded_operations:
        service, _, name = operation.partition(":")
        for action in IAM_ACTIONS_OF.get(name, (name,)):
            needed.add(f"{IAM_PREFIX[service]}:{action}")

    allowed = _allowed()

    assert needed <= allowed, sorted(needed - allowed)
    # DeleteEvent: an AgentCore writer deletes its own event when it finds a rival
    # on its seq (see fence.memory.agentcore), which this solo run never meets;
    # RetrieveMemoryRecords: the long-term option (Agent(long_term=...)), which it
    # does not use.
    assert allowed - needed == {
        "bedrock-agentcore:DeleteEvent",
        "bedrock-agentcore:RetrieveMemoryRecords",
    }
