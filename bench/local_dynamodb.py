"""DynamoDB on loopback in a process of its own, so a benchmark can SIGSTOP it.

The server is the tests' ``python -m tests.memory.moto_process`` (moto, one
request at a time, item-level transaction rollback); ``local_dynamodb``
starts it and creates the seed's partition-key-only table.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fence.memory.aws_setup import create_dynamodb_table
from producer.stack.processes import ManagedProcess

READY = r"moto ready on (\S+)"
TABLE = "agent-memory"
REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class LocalDynamoDB:
    """The running server, the ``FENCE_MEMORY`` URL of its table, and the fake AWS
    credentials every process that opens that memory needs in its environment."""

    process: ManagedProcess
    memory_url: str
    env: dict[str, str]


@contextlib.contextmanager
def local_dynamodb(directory: Path) -> Iterator[LocalDynamoDB]:
    """Start the server (on a free port) and its table; stop the server on exit.
    Also puts the fake credentials in this process's environment: it reads the memory."""
    from tests.memory.aws_server import DUMMY_ENV  # imports moto: only when asked for

    server = ManagedProcess(
        "dynamodb",
        [sys.executable, "-m", "tests.memory.moto_process", "0"],
        env={**DUMMY_ENV, "PYTHONPATH": str(REPO)},
        cwd=REPO,
        log_path=directory / "dynamodb.log",
    )
    try:
        url = re.search(READY, server.wait_for(READY, timeout=60)).group(1)  # type: ignore[union-attr]
        os.environ.update(DUMMY_ENV)
        region = DUMMY_ENV["AWS_REGION"]
        create_dynamodb_table(TABLE, endpoint_url=url, region=region)
        yield LocalDynamoDB(
            server, f"dynamodb://{TABLE}?region={region}&endpoint_url={url}", dict(DUMMY_ENV)
        )
    finally:
        server.stop(timeout=10)
