"""``fence stack --memory dynamodb``: moto's DynamoDB on loopback, with the memory table."""

from __future__ import annotations

import logging
import os
import threading

from producer.stack.config import StackError

LOCAL_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "fence-local",
    "AWS_SECRET_ACCESS_KEY": "fence-local",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
"""Dummy credentials for the local DynamoDB endpoint, so no real account is used."""

LOCAL_TABLE = "agent-memory"


class LocalDynamoDB:
    """moto's DynamoDB on loopback, inside this process, one request at a time.

    Serialised on purpose: moto's ``TransactWriteItems`` restores a table copy
    when a condition fails, erasing concurrent writes; real DynamoDB isolates
    transactions. Its data lives in memory and is gone when the stack stops.
    """

    def __init__(self, port: int = 0) -> None:
        try:
            from moto.moto_server.werkzeug_app import (
                DomainDispatcherApplication,
                MotoRequestHandler,
                create_backend_app,
            )
            from werkzeug.serving import make_server
        except ImportError as error:
            raise StackError(
                f"--memory dynamodb needs moto's server ({error}): pip install 'moto[server]' "
                "(it is in the dev extra: pip install -e '.[dev]')"
            ) from None

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        app = DomainDispatcherApplication(create_backend_app)
        lock = threading.Lock()

        def serialised(environ, start_response):  # type: ignore[no-untyped-def]
            with lock:
                return list(app(environ, start_response))

        self._server = make_server(
            "127.0.0.1", port, serialised, threaded=True, request_handler=MotoRequestHandler
        )
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="local-dynamodb", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    def create_memory_table(self) -> str:
        """Create the memory table; return the ``FENCE_MEMORY`` URL that names it here.

        Sets the dummy credentials in this process too: it reads the table as well
        (the demo's history check)."""
        from fence.memory.aws_setup import create_dynamodb_table

        os.environ.update(LOCAL_AWS_ENV)
        region = LOCAL_AWS_ENV["AWS_REGION"]
        try:
            create_dynamodb_table(LOCAL_TABLE, endpoint_url=self.url, region=region)
        except Exception as error:
            raise StackError(f"--memory dynamodb: could not create the table: {error}") from None
        return f"dynamodb://{LOCAL_TABLE}?region={region}&endpoint_url={self.url}"
