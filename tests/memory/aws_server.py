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

moto's AgentCore data plane lacks what the service does beyond storing
events (long-term retrieval, throttling, newest-first pages, metadata
filters); ``AGENTCORE_EXTRAS`` (``tests/memory/agentcore_extras.py``) answers
those requests on the same port, in the service's wire format.
"""

from __future__ import annotations

import logging
import os
import threading
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

from tests.memory.agentcore_extras import AGENTCORE_EXTRAS

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


@contextmanager
def dummy_aws_process_environ() -> Iterator[None]:
    """This process's environment as ``dummy_aws_environ`` makes it, restored after
    (for a benchmark that talks to the endpoint from this process)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(dummy_aws_environ(saved))
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


class _KeepAliveHandler(MotoRequestHandler):
    """HTTP/1.1 keeps connections open: no TCP handshake per request."""

    protocol_version = "HTTP/1.1"


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
