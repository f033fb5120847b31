"""What a streamed model call yields: text and tool-call deltas, then the whole response.

``Model.stream`` yields ``TextDelta`` and ``ToolCallDelta`` items as the
provider sends them and ends with the complete ``ModelResponse``. The text
deltas concatenate to the response's ``content``; the tool-call deltas of one
``index`` concatenate to that call's JSON arguments. A failure after the first
delta is a ``StreamInterruptedError``: the caller has seen partial output, so
``Model.stream`` leaves the decision to try again to it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from pydantic import BaseModel

from fence.errors import ModelError
from fence.messages import ToolCall


class TextDelta(BaseModel):
    """A piece of the reply's text, as the provider sent it."""

    text: str


class ToolCallDelta(BaseModel):
    """A piece of one tool call of the reply.

    ``index`` is the call's position among the reply's tool calls, from 0.
    ``id`` and ``name`` come with the call's first delta (``None`` after it);
    ``arguments`` is a fragment of the call's JSON arguments text, unparsed.
    """

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


ModelDelta = TextDelta | ToolCallDelta


class StreamInterruptedError(ModelError):
    """A streamed call failed after ``after_deltas`` deltas had been yielded.

    ``Model.stream`` does not retry it: a retry would repeat output the caller
    already has. The caller decides, e.g. discards the partial reply and runs
    the step again. ``retryable`` is the provider's verdict on the failure
    itself, which is chained as ``__cause__``.
    """

    def __init__(self, message: str, *, after_deltas: int, retryable: bool = False) -> None:
        super().__init__(message, retryable=retryable)
        self.after_deltas = after_deltas

    @classmethod
    def after(cls, error: ModelError, deltas: int) -> StreamInterruptedError:
        return cls(
            f"{error} (the stream broke after {deltas} delta{'' if deltas == 1 else 's'}; "
            "not retried)",
            after_deltas=deltas,
            retryable=error.retryable,
        )


class ToolCallFragments:
    """Tool calls put together from their deltas: first id and name, arguments joined."""

    def __init__(self) -> None:
        self._calls: dict[int, tuple[str | None, str | None, list[str]]] = {}

    def add(self, delta: ToolCallDelta) -> None:
        call_id, name, arguments = self._calls.get(delta.index, (None, None, []))
        arguments.append(delta.arguments)
        self._calls[delta.index] = (call_id or delta.id, name or delta.name, arguments)

    def calls(self) -> list[tuple[str | None, str | None, str]]:
        """``(id, name, arguments text)`` of each call, in index order."""
        return [
            (call_id, name, "".join(arguments))
            for _, (call_id, name, arguments) in sorted(self._calls.items())
        ]


def tool_call_deltas(calls: Sequence[ToolCall]) -> Iterator[ToolCallDelta]:
    """One delta per finished call, for models that do not stream their tool calls."""
    for index, call in enumerate(calls):
        yield ToolCallDelta(
            index=index, id=call.id, name=call.name, arguments=json.dumps(call.arguments)
        )


def json_object(raw: str | dict[str, Any] | None) -> dict[str, Any] | None:
    """Tool-call arguments as a dict: blank text is ``{}``; text that is no JSON object is None.

    An object passes as it is (some OpenAI-compatible servers send one);
    NaN and Infinity are refused, as they are not JSON and cannot be stored as such.
    """
    if isinstance(raw, dict):
        return raw
    if not (raw or "").strip():
        return {}
    try:
        parsed = json.loads(raw, parse_constant=_reject)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _reject(constant: str) -> Any:
    raise ValueError(f"{constant} is not valid JSON")
