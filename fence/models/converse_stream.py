"""Reading a Bedrock ``converse_stream`` reply: its events as deltas, and what it adds up to."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fence.models.streaming import ModelDelta, TextDelta, ToolCallDelta, ToolCallFragments


class ConverseStreamReply:
    """One ``converse_stream`` reply, gathered from its events as they are read."""

    def __init__(self) -> None:
        self.fragments = ToolCallFragments()
        self.stop_reason: str | None = None
        self.usage: dict[str, Any] = {}
        self._texts: list[str] = []
        self._text_blocks: set[int] = set()
        self._tool_calls: dict[int, int] = {}  # content block index -> tool call index

    @property
    def content(self) -> str:
        """The reply's text: its text deltas joined."""
        return "".join(self._texts)

    def read(self, event: dict[str, Any]) -> Iterator[ModelDelta]:
        """The deltas of one stream event; the rest of the reply is kept."""
        if "contentBlockStart" in event:
            start = event["contentBlockStart"]
            tool_use = start.get("start", {}).get("toolUse")
            if tool_use:
                yield self._tool_call(
                    start["contentBlockIndex"],
                    id=tool_use.get("toolUseId"),
                    name=tool_use.get("name"),
                )
        elif "contentBlockDelta" in event:
            block = event["contentBlockDelta"]["contentBlockIndex"]
            delta = event["contentBlockDelta"]["delta"]
            if "text" in delta:
                if block not in self._text_blocks:
                    if self._text_blocks:  # converse joins text blocks with a newline
                        yield self._text_delta("\n")
                    self._text_blocks.add(block)
                yield self._text_delta(delta["text"])
            elif "toolUse" in delta:
                yield self._tool_call(block, arguments=delta["toolUse"].get("input", ""))
        elif "messageStop" in event:
            self.stop_reason = event["messageStop"].get("stopReason")
        elif "metadata" in event:
            self.usage = event["metadata"].get("usage", {})

    def _text_delta(self, text: str) -> TextDelta:
        self._texts.append(text)
        return TextDelta(text=text)

    def _tool_call(self, block: int, **fields: Any) -> ToolCallDelta:
        index = self._tool_calls.setdefault(block, len(self._tool_calls))
        delta = ToolCallDelta(index=index, **fields)
        self.fragments.add(delta)
        return delta
