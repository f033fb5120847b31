"""OpenAI chat completions, and any server that speaks the same API (Ollama, vLLM, ...).

The ``openai`` package is an optional extra (``pip install 'fence[openai]'``),
so it is imported here lazily: ``import fence.models`` never needs it.

The SDK client is built on the first call, not in ``__init__``: the seed's
examples construct ``GPT4omini(source="app")`` at import time, where a missing
``OPENAI_API_KEY`` must not fail yet, and a Celery worker that forks after
import gets a fresh connection pool in each child. The SDK's own retries are
off (``max_retries=0``) so ``Model.invoke`` is the one place that retries.

``stream`` asks for ``stream: true`` with usage in the last chunk, and reads
the server-sent chunks as they come: text in ``delta.content``, tool-call
argument fragments in ``delta.tool_calls`` keyed by ``index``.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from fence.errors import MissingCredentialError, ModelError
from fence.messages import Message, Role, ToolCall
from fence.models.base import Model, ModelResponse, StreamItem, ToolSpec, Usage
from fence.models.streaming import TextDelta, ToolCallDelta, ToolCallFragments, json_object

if TYPE_CHECKING:
    import openai as openai_sdk

API_KEY_ENV = "OPENAI_API_KEY"
DEFAULT_TIMEOUT_S = 120.0
_MAX_DETAIL_CHARS = 500
_AUTH_STATUSES = (401, 403)
_RETRYABLE_STREAM_ERRORS = frozenset({"server_error", "rate_limit_exceeded", "requests", "tokens"})
"""An error sent inside a stream with one of these as ``type`` or ``code`` is retryable, as a 429
or 5xx is; rate-limit errors have type ``requests`` or ``tokens``."""


def _import_openai() -> Any:
    """The ``openai`` module, or an ImportError that says which extra to install."""
    try:
        import openai
    except ImportError as error:
        raise ImportError(
            "fence.models.openai needs the 'openai' package: pip install 'fence[openai]'"
        ) from error
    return openai


def to_openai_tools(tools: Sequence[ToolSpec]) -> list[dict[str, Any]]:
    """Fence tool specs as chat-completions ``tools`` (type ``function``)."""
    return [
        {
            "type": "function",
            "function": {
                "name": tool.name,
                "description": tool.description,
                "parameters": tool.parameters,
            },
        }
        for tool in tools
    ]


def to_openai_messages(messages: Sequence[Message], system: str | None) -> list[dict[str, Any]]:
    """Fence messages as chat-completions messages, the system prompt first.

    System notes stored in the history keep the ``system`` role at their
    position; tool results answer their call by ``tool_call_id``.
    """
    converted: list[dict[str, Any]] = []
    if system:
        converted.append({"role": "system", "content": system})
    for message in messages:
        if message.role is Role.TOOL:
            converted.append(
                {
                    "role": "tool",
                    "tool_call_id": message.tool_call_id,
                    "content": message.content,
                }
            )
        elif message.role is Role.ASSISTANT and message.tool_calls:
            converted.append(
                {
                    "role": "assistant",
                    "content": message.content if message.content.strip() else None,
                    "tool_calls": [
                        {
                            "id": call.id,
                            "type": "function",
                            "function": {
                                "name": call.name,
                                "arguments": json.dumps(call.arguments),
                            },
                        }
                        for call in message.tool_calls
                    ],
                }
            )
        else:
            converted.append({"role": message.role.value, "content": message.content})
    return converted


class OpenAIChat(Model):
    """A chat model behind an OpenAI-compatible ``/chat/completions`` endpoint.

    ``base_url`` points it at another server (e.g. ``http://localhost:11434/v1``
    for Ollama); such servers usually ignore the key, but one must still be
    given (any string). The key comes from ``api_key`` or ``OPENAI_API_KEY``
    and is read on the first call. ``source`` is sent as the request's
    ``user`` field, so provider-side usage can be attributed to the calling
    application. ``http_client`` (an ``httpx`` client) is for proxies and tests.
    """

    def __init__(
        self,
        model_id: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        source: str | None = None,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        timeout: float = DEFAULT_TIMEOUT_S,
        http_client: Any | None = None,
    ) -> None:
        super().__init__(source=source, max_retries=max_retries, backoff_s=backoff_s)
        if not isinstance(model_id, str) or not model_id.strip():
            raise ValueError("model_id: must be a non-empty string")
        if timeout <= 0:
            raise ValueError(f"timeout: must be > 0 seconds (got {timeout})")
        # Imported at construction: a missing extra fails here, not mid-turn.
        self._openai = _import_openai()
        self.model_id = model_id
        self.base_url = base_url
        self.timeout = timeout
        self._api_key = api_key
        self._http_client = http_client
        self._client: openai_sdk.OpenAI | None = None
        self._client_lock = threading.Lock()

    def _get_client(self) -> openai_sdk.OpenAI:
        with self._client_lock:
            if self._client is None:
                api_key = self._api_key or os.environ.get(API_KEY_ENV)
                if not api_key:
                    raise MissingCredentialError(
                        f"model {self.model_id!r} needs an OpenAI API key: set the "
                        f"{API_KEY_ENV} environment variable or pass api_key=..."
                    )
                self._api_key = api_key
                self._client = self._openai.OpenAI(
                    api_key=api_key,
                    base_url=self.base_url,
                    timeout=self.timeout,
                    max_retries=0,
                    http_client=self._http_client,
                )
            return self._client

    def build_request(
        self, messages: Sequence[Message], system: str | None, tools: Sequence[ToolSpec]
    ) -> dict[str, Any]:
        """The keyword arguments of one ``chat.completions.create`` call."""
        request: dict[str, Any] = {
            "model": self.model_id,
            "messages": to_openai_messages(messages, system),
        }
        if tools:  # an empty ``tools`` list is rejected by the API
            request["tools"] = to_openai_tools(tools)
        if self.source:
            request["user"] = self.source
        return request

    def _complete(
        self, messages: list[Message], system: str | None, tools: list[ToolSpec]
    ) -> ModelResponse:
        client = self._get_client()
        with self._translated_errors():
            completion = client.chat.completions.create(
                **self.build_request(messages, system, tools)
            )
        if not completion.choices:
            raise ModelError(f"model {self.model_id!r} returned no choices")
        choice = completion.choices[0]
        message = choice.message
        tool_calls = tuple(
            self._tool_call(call.id, call.function.name, call.function.arguments)
            for call in (message.tool_calls or ())
            if _is_function(call)
        )
        return self._response(
            message.content or getattr(message, "refusal", None) or "",
            tool_calls,
            choice.finish_reason,
            completion.usage,
        )

    def _stream(
        self, messages: list[Message], system: str | None, tools: list[ToolSpec]
    ) -> Iterator[StreamItem]:
        client = self._get_client()
        request = self.build_request(messages, system, tools)
        text: list[str] = []
        fragments = ToolCallFragments()
        finish_reason = usage = None
        with (
            self._translated_errors(),
            client.chat.completions.create(
                **request, stream=True, stream_options={"include_usage": True}
            ) as chunks,
        ):
            for chunk in chunks:
                usage = chunk.usage or usage
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                finish_reason = choice.finish_reason or finish_reason
                piece = choice.delta.content or getattr(choice.delta, "refusal", None)
                if piece:
                    text.append(piece)
                    yield TextDelta(text=piece)
                for position, call in enumerate(choice.delta.tool_calls or ()):
                    delta = _tool_call_delta(call, position)
                    fragments.add(delta)
                    yield delta
        tool_calls = tuple(self._tool_call(*call) for call in fragments.calls())
        yield self._response("".join(text), tool_calls, finish_reason, usage)

    @contextmanager
    def _translated_errors(self) -> Iterator[None]:
        """SDK errors, before or during a stream, as ``ModelError``."""
        try:
            yield
        except self._openai.OpenAIError as error:
            # Chain the SDK error for debugging, except an auth failure's: it may echo the key.
            cause = None if self._refused_credentials(error) else error
            raise self._model_error(error) from cause

    def _response(
        self,
        content: str,
        tool_calls: tuple[ToolCall, ...],
        finish_reason: str | None,
        usage: Any,
    ) -> ModelResponse:
        if not content.strip() and not tool_calls:
            raise ModelError(
                f"model {self.model_id!r} returned an empty reply "
                f"(finish_reason={finish_reason!r}); there is nothing to store"
            )
        return ModelResponse(
            content=content,
            tool_calls=tool_calls,
            usage=Usage(
                input_tokens=(usage.prompt_tokens or 0) if usage else 0,
                output_tokens=(usage.completion_tokens or 0) if usage else 0,
            ),
            stop_reason=finish_reason,
        )

    def _tool_call(self, call_id: str | None, name: str | None, raw: Any) -> ToolCall:
        arguments = json_object(raw)  # some servers send null or "" for no arguments
        if arguments is None:
            # A fresh sample usually fixes malformed arguments, so let invoke retry.
            raise ModelError(
                f"model {self.model_id!r} called tool {name!r} with arguments "
                "that are not a JSON object",
                retryable=True,
            )
        try:
            return ToolCall(
                id=call_id or f"call_{uuid.uuid4().hex[:24]}", name=name, arguments=arguments
            )
        except ValueError as error:  # e.g. no tool name
            raise ModelError(
                f"model {self.model_id!r} returned a malformed tool call: {error}", retryable=True
            ) from None

    def _refused_credentials(self, error: Exception) -> bool:
        """An HTTP 401/403: the server's message may echo part of the key."""
        return (
            isinstance(error, self._openai.APIStatusError) and error.status_code in _AUTH_STATUSES
        )

    def _model_error(self, error: Exception) -> ModelError:
        """Translate an SDK error: retry rate limits, server errors and lost connections."""
        where = f"model {self.model_id!r}"
        name = type(error).__name__
        if isinstance(error, self._openai.APIConnectionError):  # includes APITimeoutError
            return ModelError(f"{where}: {name}: {self._scrub(str(error))}", retryable=True)
        if self._refused_credentials(error):  # the server's message is not passed on
            return ModelError(
                f"{where}: the API refused the credentials (HTTP {error.status_code}); "
                f"check {API_KEY_ENV} or api_key=..."
            )
        if isinstance(error, self._openai.APIStatusError):
            status = error.status_code
            code = getattr(error, "code", None)
            retryable = status in (408, 429) or status >= 500
            if code == "insufficient_quota":  # a 429 that waiting will not fix
                retryable = False
            detail = self._scrub(_error_detail(error))
            suffix = f" [{code}]" if code else ""
            return ModelError(f"{where}: HTTP {status}{suffix}: {detail}", retryable=retryable)
        body = getattr(error, "body", None)
        if isinstance(error, self._openai.APIError) and isinstance(body, dict):  # sent in a stream
            kinds = {body.get("type"), body.get("code")}
            retryable = bool(kinds & _RETRYABLE_STREAM_ERRORS) and "insufficient_quota" not in kinds
            detail = self._scrub(_error_detail(error))
            return ModelError(f"{where}: error in the stream: {detail}", retryable=retryable)
        return ModelError(f"{where}: {name}: {self._scrub(str(error))}")

    def _scrub(self, text: str) -> str:
        if self._api_key:
            text = text.replace(self._api_key, "***")
        return text[:_MAX_DETAIL_CHARS]


class GPT4o(OpenAIChat):
    """OpenAI ``gpt-4o``."""

    def __init__(self, *, source: str | None = None, **options: Any) -> None:
        super().__init__("gpt-4o", source=source, **options)


class GPT4omini(OpenAIChat):
    """OpenAI ``gpt-4o-mini``."""

    def __init__(self, *, source: str | None = None, **options: Any) -> None:
        super().__init__("gpt-4o-mini", source=source, **options)


def _is_function(call: Any) -> bool:
    is_function_type = getattr(call, "type", "function") == "function"
    return is_function_type and getattr(call, "function", None) is not None


def _tool_call_delta(call: Any, position: int) -> ToolCallDelta:
    """One ``delta.tool_calls`` item; a server that sends no ``index`` gets its position."""
    function = call.function
    arguments = function.arguments if function else None
    if isinstance(arguments, dict):  # some compatible servers send an object, not a string
        arguments = json.dumps(arguments)
    return ToolCallDelta(
        index=call.index if isinstance(call.index, int) else position,
        id=call.id,
        name=function.name if function else None,
        arguments=arguments or "",
    )


def _error_detail(error: Any) -> str:
    body = getattr(error, "body", None)
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    return str(getattr(error, "message", error))
