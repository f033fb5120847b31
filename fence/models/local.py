"""Offline, deterministic models for the demo, tests and benchmarks."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

from fence.errors import ModelError
from fence.messages import Message, Role
from fence.models.base import Model, ModelResponse, ToolSpec, Usage


class EchoModel(Model):
    """Replies with how many conversation messages it was sent and the last user message.

    A reader of the reply can see memory at work: the count grows turn by turn
    and shrinks when a token window trims history. ``latency`` simulates a
    slow provider.
    """

    model_id = "echo"

    def __init__(self, latency: float = 0.0, *, source: str | None = None) -> None:
        super().__init__(source=source, max_retries=0)
        if latency < 0:
            raise ValueError(f"latency: must be >= 0 seconds (got {latency})")
        self.latency = latency

    def _complete(
        self, messages: list[Message], system: str | None, tools: list[ToolSpec]
    ) -> ModelResponse:
        if self.latency:
            time.sleep(self.latency)
        last_user = next((m.content for m in reversed(messages) if m.role is Role.USER), "")
        reply = f"I was sent {len(messages)} messages. You said: {last_user}"
        return ModelResponse(
            content=reply,
            usage=Usage(input_tokens=sum(m.tokens or 0 for m in messages)),
            stop_reason="end_turn",
        )


class ScriptedModel(Model):
    """Plays back a fixed list of responses, one per call; records what it was sent.

    An item that is an exception is raised instead of answered, to script
    failures. Used to drive tool loops and error paths deterministically.
    Call ``n`` was sent ``calls[n]`` (the conversation), ``systems[n]`` (the
    system prompt) and ``tools[n]`` (the tool specs).
    """

    model_id = "scripted"

    def __init__(
        self,
        responses: Iterable[ModelResponse | str | ModelError],
        *,
        source: str | None = None,
        max_retries: int = 0,
    ) -> None:
        super().__init__(source=source, max_retries=max_retries, backoff_s=0.0)
        self._responses = list(responses)
        self._lock = threading.Lock()
        self.calls: list[list[Message]] = []
        self.systems: list[str | None] = []
        self.tools: list[list[ToolSpec]] = []

    def _complete(
        self, messages: list[Message], system: str | None, tools: list[ToolSpec]
    ) -> ModelResponse:
        with self._lock:
            self.calls.append(list(messages))
            self.systems.append(system)
            self.tools.append(list(tools))
            if not self._responses:
                raise ModelError("ScriptedModel ran out of responses")
            item = self._responses.pop(0)
        if isinstance(item, ModelError):
            raise item
        return item if isinstance(item, ModelResponse) else ModelResponse(content=item)
