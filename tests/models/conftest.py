"""Wire-level doubles: an in-process OpenAI endpoint and stubbed Bedrock clients.

Nothing here leaves the machine. The OpenAI double sits under a real
``openai`` client as an ``httpx.MockTransport``; Bedrock tests use a real
``bedrock-runtime`` client with ``botocore.stub.Stubber``, which validates
every request and reply against the service's own model. Streamed calls go
to a ``LocalServer`` on loopback (``tests/models/wire.py``), which speaks
each provider's real streaming format.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.stub import Stubber

from fence.messages import Message, Role
from fence.models.base import ToolSpec
from tests.models.wire import LocalServer

AWS_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_BEARER_TOKEN_BEDROCK",
)

WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather for a city.",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
)
"""The tool the provider tests offer their models."""


def user(text: str) -> Message:
    return Message(role=Role.USER, content=text)


class OpenAIServer:
    """An OpenAI-compatible endpoint in this process: queued replies, recorded requests."""

    def __init__(self) -> None:
        self.replies: list[httpx.Response | Exception] = []
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if not self.replies:
            raise AssertionError(f"unexpected request #{len(self.requests)} to {request.url}")
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply

    def queue(self, *replies: httpx.Response | Exception) -> OpenAIServer:
        self.replies.extend(replies)
        return self

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(request.content) for request in self.requests]

    def http_client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self))


def completion(
    content: str | None = None,
    *,
    tool_calls: list[tuple[str, str, str]] = (),
    finish_reason: str = "stop",
    usage: tuple[int, int] | None = (11, 7),
) -> httpx.Response:
    """A chat-completions reply; ``tool_calls`` are (id, name, JSON arguments text)."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = [
            {"id": id_, "type": "function", "function": {"name": name, "arguments": args}}
            for id_, name, args in tool_calls
        ]
    body: dict[str, Any] = {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
    }
    if usage:
        body["usage"] = {
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
            "total_tokens": sum(usage),
        }
    return httpx.Response(200, json=body)


def api_error(
    status: int, message: str, *, code: str | None = None, type_: str = "invalid_request_error"
) -> httpx.Response:
    """An error reply shaped like OpenAI's."""
    return httpx.Response(
        status, json={"error": {"message": message, "type": type_, "param": None, "code": code}}
    )


@pytest.fixture
def openai_server() -> OpenAIServer:
    return OpenAIServer()


@pytest.fixture
def aws_env(monkeypatch, tmp_path) -> None:
    """No AWS settings from the machine running the tests, and no metadata-service lookups."""
    for name in AWS_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def bedrock_client(aws_env) -> Any:
    """A real ``bedrock-runtime`` client with throwaway credentials."""
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    return session.client("bedrock-runtime")


@pytest.fixture
def local_server() -> Iterator[LocalServer]:
    server = LocalServer()
    yield server
    server.close()


@pytest.fixture
def local_bedrock_client(aws_env, local_server) -> Any:
    """A real ``bedrock-runtime`` client sending to ``local_server``, one attempt per call."""
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    config = Config(retries={"total_max_attempts": 1, "mode": "standard"}, read_timeout=10)
    return session.client("bedrock-runtime", endpoint_url=local_server.url, config=config)


@pytest.fixture
def stubber(bedrock_client) -> Iterator[Stubber]:
    with Stubber(bedrock_client) as stub:
        yield stub


def converse_reply(
    *blocks: dict[str, Any], stop_reason: str = "end_turn", usage: tuple[int, int] = (12, 7)
) -> dict[str, Any]:
    """A Converse response carrying ``blocks`` as the assistant's content."""
    return {
        "output": {"message": {"role": "assistant", "content": list(blocks)}},
        "stopReason": stop_reason,
        "usage": {"inputTokens": usage[0], "outputTokens": usage[1], "totalTokens": sum(usage)},
        "metrics": {"latencyMs": 42},
    }


def expect_converse(stubber: Stubber, model_id: str, reply: dict[str, Any], **params: Any) -> None:
    """Queue ``reply`` for a ``converse`` call that must be exactly ``modelId`` plus ``params``."""
    stubber.add_response("converse", reply, expected_params={"modelId": model_id, **params})
