"""The model contract: adding a model is one subclass and one method.

Subclass ``Model``, set ``model_id``, and implement ``_complete`` to turn the
conversation into one provider request and its answer into a
``ModelResponse``. ``invoke`` adds what every model shares: retries with
backoff on retryable errors, and a record of each call tagged with ``source``.

``stream`` is ``invoke`` delivered as it is generated (see
``fence.models.streaming``). A model streams its provider's reply by also
implementing ``_stream``; one that does not streams its whole answer at once.
"""

from __future__ import annotations

import logging
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from pydantic import BaseModel, Field

from fence.errors import ModelError
from fence.messages import Message, ToolCall
from fence.models.streaming import (
    ModelDelta,
    StreamInterruptedError,
    TextDelta,
    tool_call_deltas,
)

log = logging.getLogger(__name__)


class ToolSpec(BaseModel):
    """What a model is told about a tool: its name, purpose and JSON-schema arguments."""

    name: str
    description: str
    parameters: dict[str, Any]


class Usage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0


class ModelResponse(BaseModel):
    """One model answer: text, tool calls, or both."""

    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = Field(default_factory=Usage)
    stop_reason: str | None = None


StreamItem = ModelDelta | ModelResponse
"""What ``Model.stream`` yields: deltas, then one ``ModelResponse`` last."""

ModelCallObserver = Callable[["Model", ModelResponse, float], None]
_observers: list[ModelCallObserver] = []


def observe_model_calls(observer: ModelCallObserver) -> None:
    """Call ``observer(model, response, latency_s)`` after every successful model call.

    How the runtime counts model latency and tokens without the library
    knowing about metrics. A streamed call counts once, when its response is complete.
    """
    _observers.append(observer)


class Model(ABC):
    """A chat model. ``source`` names the application calling it, for attribution."""

    model_id: str = "unknown"

    def __init__(
        self,
        *,
        source: str | None = None,
        max_retries: int = 3,
        backoff_s: float = 0.5,
    ) -> None:
        if max_retries < 0:
            raise ValueError(f"max_retries: must be >= 0 (got {max_retries})")
        self.source = source
        self.max_retries = max_retries
        self.backoff_s = backoff_s

    def invoke(
        self,
        messages: Sequence[Message],
        *,
        system: str | None = None,
        tools: Sequence[ToolSpec] = (),
    ) -> ModelResponse:
        """Ask the model for its next message, retrying retryable failures with backoff."""
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                response = self._checked(self._complete(list(messages), system, list(tools)))
            except ModelError as error:
                self._back_off(error, attempt)
                attempt += 1
                continue
            self._record(response, time.perf_counter() - started)
            return response

    def stream(
        self,
        messages: Sequence[Message],
        *,
        system: str | None = None,
        tools: Sequence[ToolSpec] = (),
    ) -> Iterator[StreamItem]:
        """``invoke``, as it is generated: deltas as they arrive, then the ``ModelResponse``.

        The response is the one ``invoke`` would return for the same reply.
        Failures are retried with backoff as ``invoke`` does while nothing has
        been yielded; one after the first delta raises ``StreamInterruptedError``.
        Closing the iterator early closes the provider's stream.
        """
        attempt = 0
        while True:
            started = time.perf_counter()
            sent = 0
            items = self._stream(list(messages), system, list(tools))
            try:
                for item in items:
                    if isinstance(item, ModelResponse):
                        response = self._checked(item)
                        break
                    sent += 1
                    yield item
                else:
                    raise ModelError(
                        f"model {self.model_id!r} ended its stream without a response",
                        retryable=True,
                    )
            except ModelError as error:
                if sent:
                    raise StreamInterruptedError.after(error, sent) from error
                self._back_off(error, attempt)
                attempt += 1
                continue
            finally:
                close = getattr(items, "close", None)
                if close is not None:
                    close()
            self._record(response, time.perf_counter() - started)
            yield response
            return

    @abstractmethod
    def _complete(
        self, messages: list[Message], system: str | None, tools: list[ToolSpec]
    ) -> ModelResponse:
        """Make one provider call. Raise ``ModelError(retryable=...)`` on failure."""

    def _stream(
        self, messages: list[Message], system: str | None, tools: list[ToolSpec]
    ) -> Iterator[StreamItem]:
        """Make one streamed provider call: yield its deltas, then its ``ModelResponse``.

        Raise ``ModelError(retryable=...)`` on failure, as ``_complete`` does.
        This default streams ``_complete``'s answer whole: its text as one
        delta, each tool call as one delta.
        """
        response = self._checked(self._complete(messages, system, tools))  # retried if empty
        if response.content:
            yield TextDelta(text=response.content)
        yield from tool_call_deltas(response.tool_calls)
        yield response

    def _checked(self, response: ModelResponse) -> ModelResponse:
        if not response.content.strip() and not response.tool_calls:
            raise ModelError(
                f"model {self.model_id!r} returned neither text nor tool calls", retryable=True
            )
        return response

    def _back_off(self, error: ModelError, attempt: int) -> None:
        """Sleep before retry ``attempt + 1``, or raise ``error`` if it is not to be retried."""
        if not error.retryable or attempt >= self.max_retries:
            raise error
        delay = self.backoff_s * (2**attempt) * (0.5 + random.random())
        log.warning(
            "model call failed, retrying: %s",
            error,
            extra={
                "model": self.model_id,
                "source": self.source,
                "attempt": attempt + 1,
                "delay_s": delay,
            },
        )
        time.sleep(delay)

    def _record(self, response: ModelResponse, latency: float) -> None:
        log.debug(
            "model call",
            extra={
                "model": self.model_id,
                "source": self.source,
                "latency_s": latency,
                "input_tokens": response.usage.input_tokens,
                "output_tokens": response.usage.output_tokens,
            },
        )
        for observer in _observers:
            observer(self, response, latency)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model_id={self.model_id!r}, source={self.source!r})"
