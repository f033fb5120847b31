"""Offline, deterministic models for the demo, tests and benchmarks."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from fence.errors import ModelError
from fence.messages import Message, Role, ToolCall
from fence.models.base import Model, ModelResponse, StreamItem, ToolSpec, Usage
from fence.models.streaming import TextDelta, tool_call_deltas

_WORD = re.compile(r"\s*\S+\s*|\s+")


class EchoModel(Model):
    """Replies with how many conversation messages it was sent and the last user message.

    A reader of the reply can see memory at work: the count grows turn by turn
    and shrinks when a token window trims history. ``latency`` simulates a
    slow provider: the wait before the answer (or its first token). ``stream``
    sends the answer word by word (each word with the whitespace after it),
    waiting ``token_delay_s`` before each word; ``invoke`` does not wait for them.
    """

    model_id = "echo"

    def __init__(
        self, latency: float = 0.0, *, source: str | None = None, token_delay_s: float = 0.0
    ) -> None:
        super().__init__(source=source, max_retries=0)
        if latency < 0:
            raise ValueError(f"latency: must be >= 0 seconds (got {latency})")
        if token_delay_s < 0:
            raise ValueError(f"token_delay_s: must be >= 0 seconds (got {token_delay_s})")
        self.latency = latency
        self.token_delay_s = token_delay_s

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

    def _stream(
        self, messages: list[Message], system: str | None, tools: list[ToolSpec]
    ) -> Iterator[StreamItem]:
        # Built on _complete, so a subclass that changes the answer streams its own answer.
        response = self._checked(self._complete(messages, system, tools))
        for word in words(response.content):
            if self.token_delay_s:
                time.sleep(self.token_delay_s)
            yield TextDelta(text=word)
        yield from tool_call_deltas(response.tool_calls)
        yield response


class ToolEchoModel(EchoModel):
    """Calls the tool the user's message names, then says what it returned.

    Offline tool use for demos and tests: when the newest user message names a tool
    (a word equal to its name) and the turn holds no tool result yet, the reply asks
    for that tool, with arguments from the message's ``name=value`` words (a value that
    reads as JSON, such as ``500``, is sent as that). Once the tool's result is in the
    turn, the answer is ``<tool>: <result>``. Any other message gets ``EchoModel``'s
    answer.
    """

    model_id = "tool-echo"

    def _complete(
        self, messages: list[Message], system: str | None, tools: list[ToolSpec]
    ) -> ModelResponse:
        if messages and messages[-1].role is Role.TOOL:
            result = messages[-1]
            return ModelResponse(content=f"{result.name}: {result.content}", stop_reason="end_turn")
        last_user = next((m.content for m in reversed(messages) if m.role is Role.USER), "")
        named = {spec.name for spec in tools} & set(last_user.split())
        if not named:
            return super()._complete(messages, system, tools)
        arguments = {
            name: _json_or_text(value)
            for name, sep, value in (word.partition("=") for word in last_user.split())
            if sep and name
        }
        call = ToolCall(id=f"call-{len(messages)}", name=min(named), arguments=arguments)
        return ModelResponse(tool_calls=(call,), stop_reason="tool_use")


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def words(text: str) -> list[str]:
    """``text`` as words, each with the whitespace after it: the pieces join back to ``text``."""
    return _WORD.findall(text)


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
