"""Create the AWS resources the shared memories need. Safe to run again.

From Python::

    from fence.memory.aws_setup import create_dynamodb_table, create_agentcore_memory
    create_dynamodb_table("agent-memory")                  # the seed's layout + TTL
    create_dynamodb_table("agent-memory-sk", sort_key_name="sk")
    memory_id = create_agentcore_memory("fence_memory")["memory_id"]

From the command line (region and endpoint follow boto3's usual settings,
``--region`` / ``--endpoint-url`` override them)::

    python -m fence.memory.aws_setup dynamodb --table agent-memory [--sort-key sk] [--pitr]
    python -m fence.memory.aws_setup agentcore --name fence_memory [--event-expiry-days 90]
        [--strategies semantic,summary,user_preference | --strategies none]

The AgentCore memory gets AgentCore's built-in long-term strategies (semantic
facts, session summaries, user preferences), each writing to a namespace that
starts with the actor id and, for summaries, names the session (see
``fence.memory.agentcore.strategies``), so ``AgentCoreMemory.search`` finds an
actor's records under one path.

Both are idempotent: an existing table is checked (its key schema must match)
and gets TTL enabled if it lacks it; an existing memory of the same name is
reused, and gets the strategies asked for that it lacks (those it has are
left as they are). For production, ``ops/dynamodb-table.yaml`` creates the
table with CloudFormation instead.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import boto3
from botocore.client import BaseClient
from botocore.exceptions import ClientError, WaiterError

from fence.errors import FenceError, MemoryBackendError
from fence.memory import _aws
from fence.memory.agentcore.strategies import STRATEGIES
from fence.memory.dynamodb import TTL_ATTRIBUTE

DEFAULT_TABLE = "agent-memory"
DEFAULT_MEMORY_NAME = "fence_memory"
DEFAULT_STRATEGIES = tuple(STRATEGIES)
"""semantic, summary and user_preference."""


def create_dynamodb_table(
    table_name: str = DEFAULT_TABLE,
    *,
    primary_key_name: str = "session_id",
    sort_key_name: str | None = None,
    ttl_attribute: str = TTL_ATTRIBUTE,
    point_in_time_recovery: bool = False,
    region: str | None = None,
    endpoint_url: str | None = None,
    boto3_session: boto3.session.Session | None = None,
    client: BaseClient | None = None,
    wait: bool = True,
) -> dict[str, Any]:
    """Create an on-demand table for ``DynamoDBMemory`` with TTL on ``ttl_attribute``.

    Returns ``{"table_name", "table_arn", "created", "key_schema", "ttl_attribute"}``.
    An existing table with another key schema raises ``MemoryBackendError``
    rather than being used wrongly.
    """
    what = f"DynamoDB table {table_name!r}"
    ddb = _aws.make_client(
        "dynamodb",
        what=what,
        client=client,
        region=region,
        endpoint_url=endpoint_url,
        boto3_session=boto3_session,
    )
    wanted = [{"AttributeName": primary_key_name, "KeyType": "HASH"}]
    attributes = [{"AttributeName": primary_key_name, "AttributeType": "S"}]
    if sort_key_name:
        wanted.append({"AttributeName": sort_key_name, "KeyType": "RANGE"})
        attributes.append({"AttributeName": sort_key_name, "AttributeType": "S"})

    def call(operation: str, **params: Any) -> dict[str, Any]:
        return _aws.call(
            ddb,
            operation,
            what=what,
            not_found="it could not be created",
            passthrough=frozenset({"ResourceInUseException"}),
            **params,
        )

    created = True
    try:
        call(
            "create_table",
            TableName=table_name,
            AttributeDefinitions=attributes,
            KeySchema=wanted,
            BillingMode="PAY_PER_REQUEST",
        )
    except ClientError:  # ResourceInUseException: it exists (or is being created)
        created = False
    if wait:
        try:
            ddb.get_waiter("table_exists").wait(
                TableName=table_name, WaiterConfig={"Delay": 2, "MaxAttempts": 150}
            )
        except WaiterError as exc:
            raise MemoryBackendError(f"{what} did not become ACTIVE: {exc}") from exc
    table = call("describe_table", TableName=table_name)["Table"]
    found = sorted((k["KeyType"], k["AttributeName"]) for k in table["KeySchema"])
    if found != sorted((k["KeyType"], k["AttributeName"]) for k in wanted):
        raise MemoryBackendError(
            f"{what} exists with key schema {found}; DynamoDBMemory was asked for "
            f"partition key {primary_key_name!r} and sort key {sort_key_name!r}: pass the "
            "table's own key names or use another table"
        )
    ttl = call("describe_time_to_live", TableName=table_name).get("TimeToLiveDescription", {})
    if ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
        if ttl.get("AttributeName") != ttl_attribute:
            raise MemoryBackendError(
                f"{what} already has TTL on {ttl.get('AttributeName')!r}; DynamoDBMemory writes "
                f"{ttl_attribute!r}. A table has one TTL attribute: use that table's or another"
            )
    else:
        call(
            "update_time_to_live",
            TableName=table_name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl_attribute},
        )
    if point_in_time_recovery:
        call(
            "update_continuous_backups",
            TableName=table_name,
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
        )
    return {
        "table_name": table_name,
        "table_arn": table.get("TableArn"),
        "created": created,
        "key_schema": {k["KeyType"]: k["AttributeName"] for k in table["KeySchema"]},
        "ttl_attribute": ttl_attribute,
    }


def create_agentcore_memory(
    name: str = DEFAULT_MEMORY_NAME,
    *,
    event_expiry_days: int = 90,
    strategies: Sequence[str] = DEFAULT_STRATEGIES,
    description: str | None = None,
    region: str | None = None,
    endpoint_url: str | None = None,
    boto3_session: boto3.session.Session | None = None,
    client: BaseClient | None = None,
    wait: bool = True,
    timeout_s: float = 600.0,
) -> dict[str, Any]:
    """Create (or find) the AgentCore memory called ``name``; wait until it is ACTIVE.

    ``strategies`` names built-in long-term strategies (``semantic``,
    ``summary``, ``user_preference``; all three by default, ``()`` for none);
    an existing memory gets those it lacks. Returns ``{"memory_id", "arn",
    "name", "status", "created", "strategies"}``, the last a list of
    ``{"type", "id", "namespaces"}``; set ``FENCE_AGENTCORE_MEMORY_ID`` to
    ``memory_id``. Events expire after ``event_expiry_days`` (3-3650), which
    is also how long cleared events linger (see ``fence.memory.agentcore``).
    """
    unknown = sorted(set(strategies) - set(STRATEGIES))
    if unknown:
        raise ValueError(f"strategies: unknown {unknown}; choose from {sorted(STRATEGIES)}")
    what = f"AgentCore memory {name!r}"
    control = _aws.make_client(
        "bedrock-agentcore-control",
        what=what,
        client=client,
        region=region,
        endpoint_url=endpoint_url,
        boto3_session=boto3_session,
    )

    def call(operation: str, **params: Any) -> dict[str, Any]:
        return _aws.call(control, operation, what=what, not_found="it was not found", **params)

    wanted = [STRATEGIES[key] for key in dict.fromkeys(strategies)]
    memory = _find_memory(call, name)
    created = memory is None
    if memory is None:
        params: dict[str, Any] = {
            "name": name,
            "eventExpiryDuration": event_expiry_days,
            "memoryStrategies": [strategy.request() for strategy in wanted],
            # the same name gives the same token: a retried create makes one memory
            "clientToken": _token("fence-memory", name),
        }
        if description:
            params["description"] = description
        memory = call("create_memory", **params)["memory"]
    memory = _wait_active(call, memory, what, wait, timeout_s)
    present = {s.get("type") for s in memory.get("strategies") or []}
    missing = [strategy for strategy in wanted if strategy.type not in present]
    if missing:
        call(
            "update_memory",
            memoryId=memory["id"],
            memoryStrategies={"addMemoryStrategies": [s.request() for s in missing]},
            clientToken=_token("fence-strategies", memory["id"], *(s.type for s in missing)),
        )
        memory = _wait_active(
            call, call("get_memory", memoryId=memory["id"])["memory"], what, wait, timeout_s
        )
    return {
        "memory_id": memory["id"],
        "arn": memory["arn"],
        "name": memory.get("name", name),
        "status": memory["status"],
        "created": created,
        "strategies": [
            {
                "type": s.get("type"),
                "id": s.get("strategyId"),
                "namespaces": s.get("namespaceTemplates") or s.get("namespaces") or [],
            }
            for s in memory.get("strategies") or []
        ],
    }


def _token(*parts: str) -> str:
    """A client token that is the same for the same request, so a retry makes one change."""
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def _wait_active(
    call: Any, memory: dict[str, Any], what: str, wait: bool, timeout_s: float
) -> dict[str, Any]:
    """``memory`` once it is ACTIVE (polling ``get_memory``), or as it is without ``wait``."""
    deadline = time.monotonic() + timeout_s
    while wait and memory["status"] != "ACTIVE":
        if memory["status"] == "FAILED":
            raise MemoryBackendError(
                f"{what} failed to create: {memory.get('failureReason', 'no reason given')}"
            )
        if time.monotonic() > deadline:
            raise MemoryBackendError(
                f"{what} is still {memory['status']} after {timeout_s:.0f} s; check it in the "
                "console and run this again"
            )
        memory = call("get_memory", memoryId=memory["id"])["memory"]
        if memory["status"] not in ("ACTIVE", "FAILED"):
            time.sleep(2)
    return memory


def _find_memory(call: Any, name: str) -> dict[str, Any] | None:
    """The memory called ``name``, if any.

    AWS memory ids start with ``<name>-``, so those are checked first; emulators
    that mint other ids are handled by checking the rest.
    """
    summaries: list[dict[str, Any]] = []
    params: dict[str, Any] = {"maxResults": 100}
    while True:
        page = call("list_memories", **params)
        summaries.extend(page.get("memories", []))
        if not page.get("nextToken"):
            break
        params["nextToken"] = page["nextToken"]
    live = [s for s in summaries if s.get("status") not in ("DELETING", "FAILED")]
    likely = [s for s in live if str(s.get("id", "")).startswith(f"{name}-")]
    for summary in likely or live:
        memory = call("get_memory", memoryId=summary["id"])["memory"]
        if memory.get("name") == name:
            return memory
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; prints the result as JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m fence.memory.aws_setup",
        description="Create the DynamoDB table or AgentCore memory fence uses (idempotent).",
    )
    parser.add_argument("--region", help="AWS region (default: boto3's usual settings)")
    parser.add_argument("--endpoint-url", help="endpoint override, e.g. a local emulator")
    commands = parser.add_subparsers(dest="command", required=True)

    table = commands.add_parser("dynamodb", help="create the DynamoDBMemory table with TTL")
    table.add_argument("--table", default=DEFAULT_TABLE, help=f"default {DEFAULT_TABLE}")
    table.add_argument("--partition-key", default="session_id", help="default session_id")
    table.add_argument("--sort-key", default=None, help="add a string sort key of this name")
    table.add_argument("--ttl-attribute", default=TTL_ATTRIBUTE, help=f"default {TTL_ATTRIBUTE}")
    table.add_argument("--pitr", action="store_true", help="enable point-in-time recovery")

    memory = commands.add_parser("agentcore", help="create the AgentCore memory")
    memory.add_argument(
        "--name", default=DEFAULT_MEMORY_NAME, help=f"default {DEFAULT_MEMORY_NAME}"
    )
    memory.add_argument("--event-expiry-days", type=int, default=90, help="3-3650, default 90")
    memory.add_argument(
        "--strategies",
        default=",".join(DEFAULT_STRATEGIES),
        help="long-term strategies, comma-separated, or none (default: all three)",
    )
    memory.add_argument("--description", default=None)

    args = parser.parse_args(argv)
    where = {"region": args.region, "endpoint_url": args.endpoint_url}
    try:
        if args.command == "dynamodb":
            result = create_dynamodb_table(
                args.table,
                primary_key_name=args.partition_key,
                sort_key_name=args.sort_key,
                ttl_attribute=args.ttl_attribute,
                point_in_time_recovery=args.pitr,
                **where,
            )
        else:
            result = create_agentcore_memory(
                args.name,
                event_expiry_days=args.event_expiry_days,
                strategies=_strategy_names(args.strategies),
                description=args.description,
                **where,
            )
    except (FenceError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    if args.command == "agentcore":
        print(f"export FENCE_AGENTCORE_MEMORY_ID={result['memory_id']}", file=sys.stderr)
    return 0


def _strategy_names(text: str) -> tuple[str, ...]:
    if text.strip().lower() == "none":
        return ()
    return tuple(part.strip() for part in text.split(",") if part.strip())


if __name__ == "__main__":
    raise SystemExit(main())
