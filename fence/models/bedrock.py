"""Amazon Bedrock models through the Converse API (``bedrock-runtime`` ``converse``).

Converse is stricter than fence's history, so the conversion below decides:

- **System prompt and system notes** go in ``system``: the prompt first, then
  every system note of the history in order. A note keeps system authority
  (as it does on OpenAI) instead of becoming user text that a user could
  imitate; the price is that its position among the messages is not kept.
  Fence writes notes mostly as summaries at the head of a cleared history,
  where nothing is lost.
- **Roles alternate, user first.** Tool results travel as ``toolResult``
  blocks in a user message, and consecutive messages of one role (tool
  results, or a user message after a removed system note) are merged into
  one message.
- **A leading assistant message** (an Agent's ``prefill`` opens a session
  with one) gets a minimal user message before it, ``CONVERSATION_START``,
  so the model still sees that it said the prefill itself.
- **Tool calls without tools.** Converse rejects ``toolUse``/``toolResult``
  blocks when the request has no ``toolConfig``; a call without tools (a
  summary, or an agent without tools reading history another agent wrote)
  sends those calls and results as plain text instead.

``stream`` uses ``converse_stream``. Its text deltas join to the same
content as ``converse``'s text blocks (a newline between blocks), and a tool
call's ``toolUse.input`` fragments join to its JSON input. An exception event
in the stream (``throttlingException``, ``modelStreamErrorException``, ...) is
retried or not as the same error of a ``converse`` call would be.

The client is built on the first call, with botocore's retries off, so
``Model.invoke`` is the one place that retries (with fence's bounded backoff).
A ``client`` you pass in is used as it is: configure its retries yourself.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import boto3
import urllib3.exceptions
from botocore.config import Config
from botocore.eventstream import ParserError as EventStreamParserError
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EventStreamError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from fence.errors import MissingCredentialError, ModelError
from fence.messages import Message, Role, ToolCall
from fence.models.base import Model, ModelResponse, StreamItem, ToolSpec, Usage
from fence.models.converse_stream import ConverseStreamReply
from fence.models.streaming import json_object

CONVERSATION_START = "[conversation start]"
"""User text put before a conversation that opens with an assistant message."""

CLAUDE_35_SONNET_ID = "anthropic.claude-3-5-sonnet-20240620-v1:0"
"""On-demand model id, valid without an inference profile in the regions that serve it."""

RETRYABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "ServiceUnavailableException",
        "InternalServerException",
        "ModelNotReadyException",
        "ModelTimeoutException",
        "ModelStreamErrorException",
    }
)
"""Error codes worth a fresh call; a stream's exception events use them in lower camel case."""
MALFORMED_STOP_REASONS = frozenset({"malformed_model_output", "malformed_tool_use"})
"""Stop reasons of a bad sample: a fresh one may succeed, so these are retryable."""
DEFAULT_TIMEOUT_S = 120.0
_TOOL_USE_ID = re.compile(r"^[a-zA-Z0-9_.:-]{1,64}$")
_METADATA_UNSAFE = re.compile(r"[^a-zA-Z0-9\s:_@$#=/+,\-.]")


def bedrock_tool_use_id(call_id: str) -> str:
    """A tool call id Bedrock accepts; ids from other providers are hashed if they do not fit."""
    if _TOOL_USE_ID.fullmatch(call_id):
        return call_id
    return "fence_" + hashlib.sha256(call_id.encode()).hexdigest()[:40]


def to_converse(
    messages: Sequence[Message], system: str | None, tools: Sequence[ToolSpec]
) -> dict[str, Any]:
    """The ``system``, ``messages`` and ``toolConfig`` of one Converse request.

    See the module docstring for how system notes, role alternation, a
    leading assistant message and tool calls without tools are handled.
    """
    system_blocks: list[dict[str, Any]] = []
    if system and system.strip():
        system_blocks.append({"text": system})
    with_tools = bool(tools)
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message.role is Role.SYSTEM:
            system_blocks.append({"text": message.content})
            continue
        role, blocks = _blocks(message, with_tools)
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    if turns and turns[0]["role"] == "assistant":
        turns.insert(0, {"role": "user", "content": [{"text": CONVERSATION_START}]})
    request: dict[str, Any] = {"messages": turns}
    if system_blocks:
        request["system"] = system_blocks
    if with_tools:
        request["toolConfig"] = {
            "tools": [
                {
                    "toolSpec": {
                        "name": tool.name,
                        "description": tool.description,
                        "inputSchema": {"json": tool.parameters},
                    }
                }
                for tool in tools
            ]
        }
    return request


def _blocks(message: Message, with_tools: bool) -> tuple[str, list[dict[str, Any]]]:
    if message.role is Role.USER:
        return "user", [{"text": message.content}]
    if message.role is Role.TOOL:
        call_id = message.tool_call_id or ""
        if not with_tools:
            label = f"tool {message.name}" if message.name else "tool"
            return "user", [{"text": f"[result of {label} call {call_id}]\n{message.content}"}]
        return "user", [
            {
                "toolResult": {
                    "toolUseId": bedrock_tool_use_id(call_id),
                    "content": [{"text": message.content}],
                }
            }
        ]
    blocks: list[dict[str, Any]] = []
    if message.content.strip():  # Converse rejects blank text blocks
        blocks.append({"text": message.content})
    for call in message.tool_calls:
        if with_tools:
            blocks.append(
                {
                    "toolUse": {
                        "toolUseId": bedrock_tool_use_id(call.id),
                        "name": call.name,
                        "input": call.arguments,
                    }
                }
            )
        else:
            blocks.append(
                {
                    "text": f"[called tool {call.name} (call {call.id}) with "
                    f"{json.dumps(call.arguments)}]"
                }
            )
    return "assistant", blocks


class BedrockConverse(Model):
    """Any Bedrock model that supports Converse, with tool use.

    ``region`` falls back to the AWS configuration (``AWS_REGION``, profile);
    credentials come from the usual AWS chain (environment, ``AWS_PROFILE``,
    instance or task role) when the first call is made. ``inference_config``
    is sent as Converse's ``inferenceConfig`` (e.g. ``{"maxTokens": 1024}``).
    ``source`` is sent as ``requestMetadata`` so Bedrock's invocation logs
    can be filtered by calling application.
    """

    def __init__(
        self,
        model_id: str,
        *,
        region: str | None = None,
        client: Any | None = None,
        source: str | None = None,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        inference_config: dict[str, Any] | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        super().__init__(source=source, max_retries=max_retries, backoff_s=backoff_s)
        if not isinstance(model_id, str) or not model_id.strip():
            raise ValueError("model_id: must be a non-empty string")
        if timeout <= 0:
            raise ValueError(f"timeout: must be > 0 seconds (got {timeout})")
        self.model_id = model_id
        self.region = region
        self.inference_config = dict(inference_config or {})
        self.timeout = timeout
        self._client = client
        self._client_lock = threading.Lock()

    def _get_client(self) -> Any:
        with self._client_lock:
            if self._client is None:
                config = Config(
                    retries={"total_max_attempts": 1, "mode": "standard"},
                    connect_timeout=10,
                    read_timeout=self.timeout,
                )
                try:
                    # A session of our own: boto3's default session is not thread-safe.
                    self._client = boto3.session.Session().client(
                        "bedrock-runtime", region_name=self.region, config=config
                    )
                except NoRegionError as error:
                    raise ModelError(
                        f"model {self.model_id!r}: no AWS region configured; pass "
                        "region=... or set AWS_REGION"
                    ) from error
            return self._client

    def build_request(
        self, messages: Sequence[Message], system: str | None, tools: Sequence[ToolSpec]
    ) -> dict[str, Any]:
        """The keyword arguments of one ``converse`` call."""
        request = {"modelId": self.model_id, **to_converse(messages, system, tools)}
        if self.inference_config:
            request["inferenceConfig"] = self.inference_config
        if self.source:
            request["requestMetadata"] = {"source": _METADATA_UNSAFE.sub("_", self.source)[:256]}
        return request

    def _complete(
        self, messages: list[Message], system: str | None, tools: list[ToolSpec]
    ) -> ModelResponse:
        client = self._get_client()
        with self._translated_errors():
            response = client.converse(**self.build_request(messages, system, tools))
        blocks = response.get("output", {}).get("message", {}).get("content", [])
        uses = [block["toolUse"] for block in blocks if "toolUse" in block]
        tool_calls = tuple(
            self._tool_call(use.get("toolUseId"), use.get("name"), use.get("input") or {})
            for use in uses
        )
        return self._response(
            "\n".join(block["text"] for block in blocks if "text" in block),
            tool_calls,
            response.get("stopReason"),
            response.get("usage", {}),
        )

    def _stream(
        self, messages: list[Message], system: str | None, tools: list[ToolSpec]
    ) -> Iterator[StreamItem]:
        client = self._get_client()
        reply = ConverseStreamReply()
        with self._translated_errors():
            events = client.converse_stream(**self.build_request(messages, system, tools))["stream"]
            try:
                for event in events:
                    yield from reply.read(event)
            finally:
                events.close()
        tool_calls = tuple(
            self._tool_call(call_id, name, json_object(raw))
            for call_id, name, raw in reply.fragments.calls()
        )
        yield self._response(reply.content, tool_calls, reply.stop_reason, reply.usage)

    @contextmanager
    def _translated_errors(self) -> Iterator[None]:
        """botocore errors, before or during a stream, as ``ModelError``."""
        try:
            yield
        except ClientError as error:  # includes a stream's exception events
            raise self._client_error(error) from error
        except (NoCredentialsError, PartialCredentialsError) as error:
            raise MissingCredentialError(
                f"model {self.model_id!r} needs AWS credentials: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run with an IAM role"
            ) from error
        except (
            BotoConnectionError,
            HTTPClientError,
            urllib3.exceptions.HTTPError,  # a stream cut or timed out while it is read
            EventStreamParserError,  # a damaged stream
        ) as error:
            raise ModelError(
                f"model {self.model_id!r}: {type(error).__name__}: {error}", retryable=True
            ) from error
        except BotoCoreError as error:
            raise ModelError(f"model {self.model_id!r}: {type(error).__name__}: {error}") from error

    def _client_error(self, error: ClientError) -> ModelError:
        """Retry throttling, unavailable or not-ready models and server errors; not the rest."""
        details = error.response.get("Error", {})
        code = details.get("Code", "Unknown")
        detail = details.get("Message", "")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        retryable = code[:1].upper() + code[1:] in RETRYABLE_CODES or status >= 500
        where = "in the stream" if isinstance(error, EventStreamError) else f"HTTP {status}"
        return ModelError(
            f"Bedrock model {self.model_id!r}: {code} ({where}): {detail}", retryable=retryable
        )

    def _response(
        self,
        content: str,
        tool_calls: tuple[ToolCall, ...],
        stop_reason: str | None,
        usage: dict[str, Any],
    ) -> ModelResponse:
        if not content.strip() and not tool_calls:
            raise ModelError(
                f"Bedrock model {self.model_id!r} returned an empty reply "
                f"(stopReason={stop_reason!r}); there is nothing to store",
                retryable=stop_reason in MALFORMED_STOP_REASONS,
            )
        return ModelResponse(
            content=content,
            tool_calls=tool_calls,
            usage=Usage(
                input_tokens=usage.get("inputTokens", 0),
                output_tokens=usage.get("outputTokens", 0),
            ),
            stop_reason=stop_reason,
        )

    def _tool_call(self, call_id: str | None, name: str | None, arguments: Any) -> ToolCall:
        try:
            return ToolCall(id=call_id, name=name, arguments=arguments)
        except ValueError as error:  # input that is not a JSON object, say
            raise ModelError(
                f"Bedrock model {self.model_id!r} returned a malformed tool call: {error}",
                retryable=True,
            ) from None


class Claude35Sonnet(BedrockConverse):
    """Anthropic Claude 3.5 Sonnet on Bedrock (``CLAUDE_35_SONNET_ID`` by default).

    Pass ``model_id`` for another version or a cross-region inference profile
    (e.g. ``us.anthropic.claude-3-5-sonnet-20240620-v1:0``) where on-demand
    use of the base id is not offered.
    """

    def __init__(
        self,
        *,
        region: str | None = None,
        model_id: str = CLAUDE_35_SONNET_ID,
        **options: Any,
    ) -> None:
        super().__init__(model_id, region=region, **options)
