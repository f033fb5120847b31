"""OpenAI chat completions, and any server that speaks the same API (Ollama, vLLM, ...).

The ``openai`` package is an optional extra (``pip install 'fence[openai]'``),
so it is imported here lazily: ``import fence.models`` never needs it.

The SDK client is built on the first call, not in ``__init__``: the seed's
examples construct ``GPT4omini(source="app")`` at import time, where a missing
``OPENAI_API_KEY`` must not fail yet, and a Celery worker that forks after
import gets a fresh connection pool in each child. The SDK's own retries are
off (``max_retries=0``) so ``Model.invoke`` is the one place that retries.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fence.errors import MissingCredentialError, ModelError
from fence.messages import Message, Role, ToolCall
from fence.models.base import Model, ModelResponse, ToolSpec, Usage

if TYPE_CHECKING:
    import openai as openai_sdk

API_KEY_ENV = "OPENAI_API_KEY"
DEFAULT_TIMEOUT_S = 120.0
_MAX_DETAIL_CHARS = 500
_AUTH_STATUSES = (401, 403)


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
        try:
            completion = client.chat.completions.create(
                **self.build_request(messages, system, tools)
            )
        except self._openai.OpenAIError as error:
            # Chain the SDK error for debugging, except an auth failure's: it may echo the key.
            cause = None if self._refused_credentials(error) else error
            raise self._model_error(error) from cause
        return self._parse(completion)

    def _parse(self, completion: Any) -> ModelResponse:
        if not completion.choices:
            raise ModelError(f"model {self.model_id!r} returned no choices")
        choice = completion.choices[0]
        message = choice.message
        content = message.content or getattr(message, "refusal", None) or ""
        tool_calls = tuple(
            self._parse_tool_call(call) for call in (message.tool_calls or ()) if _is_function(call)
        )
        if not content.strip() and not tool_calls:
            raise ModelError(
                f"model {self.model_id!r} returned an empty reply "
                f"(finish_reason={choice.finish_reason!r}); there is nothing to store"
            )
        usage = completion.usage
        return ModelResponse(
            content=content,
            tool_calls=tool_calls,
            usage=Usage(
                input_tokens=(usage.prompt_tokens or 0) if usage else 0,
                output_tokens=(usage.completion_tokens or 0) if usage else 0,
            ),
            stop_reason=choice.finish_reason,
        )

    def _parse_tool_call(self, call: Any) -> ToolCall:
        raw = call.function.arguments
        arguments: Any
        if isinstance(raw, dict):  # some compatible servers send an object, not a string
            arguments = raw
        elif not (raw or "").strip():  # some send null or "" for a tool without arguments
            arguments = {}
        else:
            try:
                arguments = json.loads(raw, parse_constant=_reject)
            except ValueError:  # also NaN/Infinity: not JSON, and not storable as such
                arguments = None
        if not isinstance(arguments, dict):
            # A fresh sample usually fixes malformed arguments, so let invoke retry.
            raise ModelError(
                f"model {self.model_id!r} called tool {call.function.name!r} with arguments "
                "that are not a JSON object",
                retryable=True,
            )
        try:
            return ToolCall(
                id=call.id or f"call_{uuid.uuid4().hex[:24]}",
                name=call.function.name,
                arguments=arguments,
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


def _reject(constant: str) -> Any:
    raise ValueError(f"{constant} is not valid JSON")


def _error_detail(error: Any) -> str:
    body = getattr(error, "body", None)
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    return str(getattr(error, "message", error))
