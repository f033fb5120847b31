"""A real stack for the client libraries: redis-server, a ``celery worker`` on the test
agents (``tests.runtime.agents``) and the gateway as ``python -m producer.gateway`` with
tokens; plus gateways of a test's own (``spare_gateway``) that a test may stop, restart
on the same port, or start with other settings."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from producer.http import AsyncFenceClient, FenceClient
from producer.stack.launch import gateway_missing, start_gateway, start_redis
from producer.stack.processes import ManagedProcess, free_port
from tests.support import REPO, Runtime

TOKEN = "tok-client-5c1d"
MAX_BODY = 64 * 1024
MAX_MESSAGE = 4096


@dataclass
class Gateway:
    """A gateway process on a fixed port, which ``stop`` and ``start`` cycle."""

    env: dict[str, str]
    directory: Path
    port: int = field(default_factory=free_port)
    process: ManagedProcess | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.starts += 1
        log = self.directory / f"gateway-{self.port}-{self.starts}.log"
        self.process = start_gateway(self.env, self.port, cwd=REPO, log_path=log)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


@dataclass
class Stack:
    runtime: Runtime
    gateway: Gateway

    def client(self, **options) -> FenceClient:
        return FenceClient(self.gateway.url, token=TOKEN, **options)

    def async_client(self, **options) -> AsyncFenceClient:
        return AsyncFenceClient(self.gateway.url, token=TOKEN, **options)


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Iterator[Stack]:
    missing = gateway_missing()
    if missing:
        pytest.skip(f"the HTTP gateway cannot start: {missing}")
    directory = tmp_path_factory.mktemp("http-client")
    redis_process, redis_url = start_redis(directory / "redis")
    runtime = Runtime(redis_url, directory)
    env = {
        **runtime.env,
        "FENCE_API_TOKENS": TOKEN,
        "FENCE_API_MAX_BODY_BYTES": str(MAX_BODY),
        "FENCE_MAX_MESSAGE_BYTES": str(MAX_MESSAGE),
        "FENCE_API_HEARTBEAT_S": "0.5",
    }
    gateway = Gateway(env, directory)
    try:
        runtime.start_worker(concurrency=4)
        gateway.start()
        yield Stack(runtime, gateway)
    finally:
        gateway.stop()
        runtime.stop()
        redis_process.stop()


@pytest.fixture
def client(stack: Stack) -> Iterator[FenceClient]:
    with stack.client(retries=2, backoff=0.05) as client:
        yield client


@pytest.fixture
def spare_gateway(stack: Stack, tmp_path) -> Iterator[Callable[..., Gateway]]:
    """``spare_gateway(**env)``: a started gateway of the test's own on the stack's Redis,
    with these settings on top of the stack's; stopped at the end."""
    started: list[Gateway] = []

    def start(**env: str) -> Gateway:
        gateway = Gateway({**stack.gateway.env, **env}, tmp_path)
        gateway.start()
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.stop()


class Recording(httpx.HTTPTransport):
    """The real transport, noting each try: ``tries`` holds ``(method, path, status)``
    (status None for a transport error), ``times`` when each began (monotonic), and
    ``on_try`` is called after each."""

    def __init__(self, on_try: Callable[[httpx.Request, int | None], None] = lambda *_: None):
        super().__init__()
        self.tries: list[tuple[str, str, int | None]] = []
        self.times: list[float] = []
        self.on_try = on_try

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.times.append(time.monotonic())
        try:
            response = super().handle_request(request)
        except httpx.TransportError:
            self.note(request, None)
            raise
        self.note(request, response.status_code)
        return response

    def note(self, request: httpx.Request, status: int | None) -> None:
        self.tries.append((request.method, request.url.path, status))
        self.on_try(request, status)


class AsyncRecording(httpx.AsyncHTTPTransport):
    """``Recording`` for ``AsyncFenceClient``."""

    def __init__(self, on_try: Callable[[httpx.Request, int | None], None] = lambda *_: None):
        super().__init__()
        self.tries: list[tuple[str, str, int | None]] = []
        self.times: list[float] = []
        self.on_try = on_try

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.times.append(time.monotonic())
        try:
            response = await super().handle_async_request(request)
        except httpx.TransportError:
            self.note(request, None)
            raise
        self.note(request, response.status_code)
        return response

    note = Recording.note
