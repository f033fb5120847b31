"""Messages: the unit of conversation history, validated and token-counted once."""

from __future__ import annotations

import json
import re
from enum import StrEnum
from typing import Any

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from fence.settings import get_settings
from fence.tokens import count_tokens
from fence.validation import InputModel, clip

IDENTIFIER_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$")
"""Session ids, turn ids, agent names and idempotency keys: no ``{}`` (Redis hash
tags), no ``#`` (DynamoDB keys), nothing a URL path would need to escape."""
IDENTIFIER_RULE = (
    "1-128 characters of letters, digits and _ . : @ -, starting with a letter or digit"
)
MESSAGE_OVERHEAD_TOKENS = 3
"""Tokens a chat format spends on each message's role and separators."""


class Role(StrEnum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


def validate_identifier(value: object, field: str) -> str:
    """Return ``value`` or raise ``ValueError`` naming ``field`` and the rule it breaks."""
    if not isinstance(value, str) or not IDENTIFIER_PATTERN.fullmatch(value):
        raise ValueError(f"{field}: must be {IDENTIFIER_RULE} (got {clip(repr(value))})")
    return value


def validate_session_id(session_id: object, field: str = "session_id") -> str:
    return validate_identifier(session_id, field)


def _stored(info: ValidationInfo) -> bool:
    """Validating a message read back from a memory: it was checked when written."""
    return bool(info.context and info.context.get("stored"))


MAX_JSON_DEPTH = 64
"""Deepest nesting of ``meta`` and tool-call ``arguments``: deeper JSON could not be
read back by every reader (Python's parser recurses)."""
MAX_JSON_KEY_CHARS = 1024


def _require_json(value: dict[str, Any], field: str) -> dict[str, Any]:
    """Refuse values every backend could not store and read back the same way (they
    store JSON), without recursing into them."""
    from fence.plain_json import check_plain  # it builds on ``utf8`` below

    check_plain(value, field, max_depth=MAX_JSON_DEPTH, max_key_chars=MAX_JSON_KEY_CHARS)
    return value


def utf8(text: str, field: str) -> bytes:
    """``text`` as UTF-8; text that cannot be stored (lone surrogates) is refused."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{field}: must be valid Unicode text (found a lone surrogate)") from None


def validate_turn_id(turn_id: object) -> str:
    return validate_identifier(turn_id, "turn_id")


class ToolCall(InputModel):
    """A model's request to run one tool with JSON arguments."""

    model_config = ConfigDict(frozen=True, hide_input_in_errors=True)

    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    arguments: dict[str, Any] = Field(default_factory=dict)

    @field_validator("arguments")
    @classmethod
    def _arguments_are_json(cls, arguments: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        return arguments if _stored(info) else _require_json(arguments, "arguments")


class Message(InputModel):
    """One message of a conversation.

    ``tokens`` is counted when the message is created and stored with it, so
    building a context window never re-tokenizes history. ``seq`` and
    ``turn_id`` are set by the memory that stored the message.
    """

    model_config = ConfigDict(frozen=True, hide_input_in_errors=True)

    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)
    tokens: int | None = Field(default=None, ge=0)
    seq: int | None = None
    turn_id: str | None = None

    @field_validator("content")
    @classmethod
    def _content_fits(cls, content: str, info: ValidationInfo) -> str:
        if _stored(info):
            return content  # accepted when written; a lowered limit must not hide history
        limit = get_settings().max_message_bytes
        size = len(utf8(content, "content"))
        if size > limit:
            raise ValueError(
                f"content is {size} bytes; the limit is {limit} (FENCE_MAX_MESSAGE_BYTES)"
            )
        return content

    @field_validator("meta")
    @classmethod
    def _meta_is_json(cls, meta: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        return meta if _stored(info) else _require_json(meta, "meta")

    @model_validator(mode="after")
    def _check_shape(self, info: ValidationInfo) -> Message:
        if not _stored(info) and (self.tool_calls or self.meta):
            limit = get_settings().max_message_bytes
            extra = json.dumps([[c.model_dump() for c in self.tool_calls], self.meta])
            size = len(utf8(self.content, "content")) + len(extra.encode())
            if size > limit:
                raise ValueError(
                    f"message is {size} bytes with its tool calls and meta; the limit is "
                    f"{limit} (FENCE_MAX_MESSAGE_BYTES)"
                )
        if not self.content.strip() and not (self.role is Role.ASSISTANT and self.tool_calls):
            raise ValueError(
                "content: must be a non-empty string (only an assistant message that "
                "carries tool_calls may have empty content)"
            )
        if self.tool_calls and self.role is not Role.ASSISTANT:
            raise ValueError("tool_calls: only assistant messages may carry tool calls")
        if self.role is Role.TOOL and not self.tool_call_id:
            raise ValueError("tool_call_id: a tool message must name the tool call it answers")
        if self.tokens is None:
            extra = json.dumps([c.model_dump() for c in self.tool_calls]) if self.tool_calls else ""
            counted = count_tokens(self.content) + count_tokens(extra) + MESSAGE_OVERHEAD_TOKENS
            object.__setattr__(self, "tokens", counted)
        return self

    def to_record(self) -> dict[str, Any]:
        """The JSON-serialisable form stored by backends (without ``seq``/``turn_id``)."""
        record: dict[str, Any] = {
            "role": self.role.value,
            "content": self.content,
            "tokens": self.tokens,
        }
        if self.tool_calls:
            record["tool_calls"] = [c.model_dump() for c in self.tool_calls]
        if self.tool_call_id:
            record["tool_call_id"] = self.tool_call_id
        if self.name:
            record["name"] = self.name
        if self.meta:
            record["meta"] = self.meta
        return record

    @classmethod
    def from_record(
        cls, record: dict[str, Any], *, seq: int | None = None, turn_id: str | None = None
    ) -> Message:
        """Rebuild a stored message; its token count is read, not recounted."""
        return cls.model_validate(
            {**record, "seq": seq, "turn_id": turn_id}, context={"stored": True}
        )
