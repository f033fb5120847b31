"""A local AWS endpoint for tests and benchmarks: moto in server mode, over HTTP.

``MotoServer`` is moto's ``ThreadedMotoServer`` on a free loopback port that
handles one request at a time. That is deliberate: moto's DynamoDB is not
thread-safe. Its ``TransactWriteItems`` deep-copies the table and, when a
condition fails, restores that copy, erasing whatever other threads wrote in
between; real DynamoDB isolates transactions. Serialising requests gives the
emulator DynamoDB's isolation, so concurrency tests test our code and not
moto's races. Clients may still be many threads and processes.

That same deep copy makes every ``TransactWriteItems`` cost O(items in the
table) in moto (about 50 ms at 1,000 items, seconds at 100,000), where
DynamoDB's cost follows the transaction. ``item_level_rollback()`` (on by
default in ``moto_server``) snapshots only the items a transaction touches
and restores those on failure: the same conditions, evaluated by moto's own
code, and the same all-or-nothing outcome, at O(transaction) cost. Pass
``fast_transactions=False`` to measure moto as shipped.

moto's AgentCore data plane has no ``RetrieveMemoryRecords`` (long-term
memory is extracted by the service, with a model) and never throttles.
``AGENTCORE_EXTRAS`` answers those two on the same port, in the service's
wire format (rest-json, botocore parses the answers as it parses AWS's):
records a test puts in with ``add_record`` are retrieved by a naive word
overlap score, and ``throttle("CreateEvent", n)`` answers the next ``n``
``CreateEvent`` requests with ``429 ThrottledException``. Everything else is
moto's.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import boto3
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.server import ThreadedMotoServer
from werkzeug.serving import make_server

DUMMY_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}
"""Fake credentials and region; real ones are removed so no test can reach AWS."""

SEED_TABLE_CLI = [
    "dynamodb",
    "create-table",
    "--table-name",
    "agent-memory",
    "--attribute-definitions",
    "AttributeName=session_id,AttributeType=S",
    "--key-schema",
    "AttributeName=session_id,KeyType=HASH",
    "--billing-mode",
    "PAY_PER_REQUEST",
]
"""The seed's ``aws dynamodb create-table`` command, word for word."""


def dummy_aws_environ(environ: dict[str, str] | None = None) -> dict[str, str]:
    """``environ`` without real AWS settings, plus the fake ones."""
    base = {k: v for k, v in (environ or os.environ).items() if not k.startswith("AWS_")}
    return {**base, **DUMMY_ENV}


class _KeepAliveHandler(MotoRequestHandler):
    """HTTP/1.1 keeps connections open: no TCP handshake per request."""

    protocol_version = "HTTP/1.1"


WireResponse = tuple[int, dict[str, Any]]
CREATE_EVENT_PATH = re.compile(r"^/memories/[^/]+/events$")
RETRIEVE_PATH = re.compile(r"^/memories/([^/]+)/retrieve$")


class AgentCoreExtras:
    """What moto lacks of AgentCore, answered before moto sees the request (see the
    module notes). One per process: tests reach it as ``AGENTCORE_EXTRAS``."""

    def __init__(self) -> None:
        self._records: dict[str, list[dict[str, Any]]] = {}
        self._throttles: dict[str, int] = {}
        self.retrievals: list[dict[str, Any]] = []
        """The body of every ``RetrieveMemoryRecords`` request, for tests to inspect."""
        self.denied_retrievals = 0
        """Answer that many retrievals with AccessDeniedException (a role without the
        permission)."""

    def add_record(self, memory_id: str, namespace: str, text: str) -> None:
        """A long-term record, as an extraction strategy would have left it."""
        records = self._records.setdefault(memory_id, [])
        records.append(
            {
                "memoryRecordId": f"mem-{len(records):040d}",
                "content": {"text": text},
                "memoryStrategyId": "fence_semantic-abcdefghij",
                "namespaces": [namespace],
                "createdAt": time.time(),
            }
        )

    def throttle(self, operation: str, times: int) -> None:
        """Answer the next ``times`` requests of ``operation`` with ThrottledException."""
        self._throttles[operation] = times

    def __call__(self, app: Any, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        answer = self._answer(environ)
        if answer is None:
            return app(environ, start_response)
        status, body = answer
        headers = [("Content-Type", "application/json")]
        if status >= 400:
            headers.append(("x-amzn-ErrorType", body["__type"]))
        reason = {200: "OK", 403: "Forbidden", 429: "Too Many Requests"}[status]
        start_response(f"{status} {reason}", headers)
        return [json.dumps(body).encode()]

    def _answer(self, environ: dict[str, Any]) -> WireResponse | None:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD")
        if method != "POST":
            return None
        if CREATE_EVENT_PATH.match(path) and self._throttles.get("CreateEvent"):
            self._throttles["CreateEvent"] -= 1
            return 429, {"__type": "ThrottledException", "message": "Rate exceeded"}
        retrieve = RETRIEVE_PATH.match(path)
        if not retrieve:
            return None
        size = int(environ.get("CONTENT_LENGTH") or 0)
        body = json.loads(environ["wsgi.input"].read(size) or b"{}")
        environ["wsgi.input"] = io.BytesIO(b"")
        self.retrievals.append(body)
        if self.denied_retrievals:
            self.denied_retrievals -= 1
            return 403, {"__type": "AccessDeniedException", "message": "not authorized"}
        return 200, {"memoryRecordSummaries": self._retrieve(retrieve.group(1), body)}

    def _retrieve(self, memory_id: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        criteria = body["searchCriteria"]
        words = set(re.findall(r"\w+", criteria["searchQuery"].lower()))
        scored = []
        for record in self._records.get(memory_id, []):
            namespace = record["namespaces"][0]
            if "namespace" in body and namespace != body["namespace"]:
                continue
            if "namespacePath" in body and not namespace.startswith(body["namespacePath"]):
                continue
            found = set(re.findall(r"\w+", record["content"]["text"].lower()))
            score = len(words & found) / max(1, len(words))
            if score:
                scored.append({**record, "score": score})
        scored.sort(key=lambda r: -r["score"])
        return scored[: criteria.get("topK", 10)]


AGENTCORE_EXTRAS = AgentCoreExtras()


class MotoServer(ThreadedMotoServer):
    """moto on 127.0.0.1 and ``port`` (0: a free one), one request at a time (see module notes)."""

    def __init__(self, port: int = 0) -> None:
        super().__init__(ip_address="127.0.0.1", port=port, verbose=False)

    def _server_entry(self) -> None:
        app = DomainDispatcherApplication(create_backend_app)
        lock = threading.Lock()

        def serialised(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            with lock:
                return list(AGENTCORE_EXTRAS(app, environ, start_response))

        self._server = make_server(
            self._ip_address, self._port, serialised, True, request_handler=_KeepAliveHandler
        )
        self._server_ready_event.set()
        self._server.serve_forever()

    @property
    def url(self) -> str:
        host, port = self.get_host_and_port()
        return f"http://{host}:{port}"


_patches: dict[str, tuple[Any, Any]] = {}
"""``"shipped"`` and ``"item_level"``: (moto's ``copy`` module, ``transact_write_items``)."""


@contextmanager
def item_level_rollback() -> Iterator[None]:
    """Make moto's ``TransactWriteItems`` roll back touched items, not copy tables.

    Valid only while requests are serialised (``MotoServer``). See the module notes.
    """
    if _patches:  # already on (a second server in this process)
        yield
        return
    from moto.dynamodb import models as ddb_models
    from moto.dynamodb.models.table import Table

    real_copy = ddb_models.copy
    shipped = ddb_models.DynamoDBBackend.transact_write_items

    class _NoTableCopy:
        """``copy`` for moto's module: tables are not copied, everything else is."""

        @staticmethod
        def deepcopy(obj: Any, memo: Any = None) -> Any:
            return obj if isinstance(obj, Table) else real_copy.deepcopy(obj, memo)

        def __getattr__(self, name: str) -> Any:
            return getattr(real_copy, name)

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        saved = []
        for entry in transact_items:
            op_type, op = next(iter(entry.items()))
            try:
                table = self.get_table(op["TableName"])
                keys = op["Item"] if op_type == "Put" else op["Key"]
                hash_key, range_key = self.get_keys_value(table, keys)
            except Exception:  # moto reports the invalid request itself below
                continue
            before = real_copy.deepcopy(table.get_item(hash_key, range_key))
            saved.append((table, hash_key, range_key, before))
        try:
            shipped(self, transact_items)
        except Exception:
            for table, hash_key, range_key, before in reversed(saved):
                if range_key is None:
                    if before is None:
                        table.items.pop(hash_key, None)
                    else:
                        table.items[hash_key] = before
                elif before is None:
                    table.items.get(hash_key, {}).pop(range_key, None)
                else:
                    table.items[hash_key][range_key] = before
            raise

    _patches["shipped"] = (real_copy, shipped)
    _patches["item_level"] = (_NoTableCopy(), transact_write_items)
    _apply("item_level")
    try:
        yield
    finally:
        _apply("shipped")
        _patches.clear()


def _apply(which: str) -> None:
    from moto.dynamodb import models as ddb_models

    ddb_models.copy, ddb_models.DynamoDBBackend.transact_write_items = _patches[which]


@contextmanager
def moto_as_shipped() -> Iterator[None]:
    """Inside ``item_level_rollback``: moto's own transactions again, to measure them."""
    _apply("shipped")
    try:
        yield
    finally:
        _apply("item_level")


@contextmanager
def moto_server(fast_transactions: bool = True) -> Iterator[str]:
    """Start a ``MotoServer``; yield its URL; stop it."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = MotoServer()
    with item_level_rollback() if fast_transactions else nullcontext():
        server.start()
        try:
            yield server.url
        finally:
            server.stop()


def create_seed_table(client: Any, table_name: str) -> None:
    """The boto3 equivalent of the seed's ``create-table`` (partition key only)."""
    client.create_table(
        TableName=table_name,
        AttributeDefinitions=[{"AttributeName": "session_id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "session_id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )


def client(service: str, endpoint_url: str) -> Any:
    return boto3.session.Session(region_name="us-east-1").client(service, endpoint_url=endpoint_url)
