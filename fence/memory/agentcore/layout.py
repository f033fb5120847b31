"""How messages map onto AgentCore event payloads, both ways (the wire layout).

A turn Fence writes is one event: one ``conversational`` payload per message
that has text (what the SDK and AgentCore's long-term extraction read), then
one companion ``blob`` holding, per message, the rest of its record (tool
calls, ``tool_call_id``, ``name``, ``meta``, token count) and the index of its
conversational payload. Reading an event puts the two back together; events
of earlier Fence versions (one blob per message) still read. Conversational
payloads of events Fence did not write become messages of their own.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from fence.messages import Message, Role

EVENT_PAYLOAD_CAP = 100
"""An event holds at most 100 payload entries."""
MAX_MESSAGES_PER_TURN = EVENT_PAYLOAD_CAP - 1
"""One conversational payload per message, plus the companion blob."""
CONVERSATIONAL_TEXT_MAX = 100_000
"""Characters a conversational payload's text may hold; longer text stays in the blob."""

AGENTCORE_ROLE = {
    Role.USER: "USER",
    Role.ASSISTANT: "ASSISTANT",
    Role.TOOL: "TOOL",
    Role.SYSTEM: "OTHER",
}
"""Fence's roles as AgentCore's; a system note is ``OTHER``."""

Decoder = Callable[[], Message]
"""Builds one stored message when a reader keeps it (decoding costs; windows skip most)."""


def event_time(event: dict[str, Any]) -> int:
    """The event's timestamp in epoch milliseconds (the service keeps milliseconds).

    Falls back to the ``<epoch ms>#...`` prefix of the event id.
    """
    stamp = event.get("eventTimestamp")
    if isinstance(stamp, datetime):
        return round(stamp.timestamp() * 1000)
    millis = str(event.get("eventId", "")).partition("#")[0]
    return int(millis) if millis.isdigit() else 0


def event_order(event_id: str) -> tuple[int, str]:
    """Event ids look like ``<epoch ms>#<hex>``; order by time, then the hex."""
    millis, _, rest = event_id.partition("#")
    return (int(millis) if millis.isdigit() else 0, rest)


def _has_conversational_text(message: Message) -> bool:
    return bool(message.content.strip()) and len(message.content) <= CONVERSATIONAL_TEXT_MAX


def turn_payload(messages: list[Message]) -> list[dict[str, Any]]:
    """The payload of a turn's event: conversational entries, then the companion blob.

    The caller keeps ``len(messages) <= MAX_MESSAGES_PER_TURN``. Seqs and the
    turn id travel in the event's metadata, not here.
    """
    payload: list[dict[str, Any]] = []
    entries: list[dict[str, Any]] = []
    for message in messages:
        record = message.to_record()
        entry: dict[str, Any] = {}
        if _has_conversational_text(message):
            entry["text"] = len(payload)
            del record["content"]
            payload.append(
                {
                    "conversational": {
                        "role": AGENTCORE_ROLE[message.role],
                        "content": {"text": message.content},
                    }
                }
            )
        entry["record"] = json.dumps(record, ensure_ascii=False)
        entries.append(entry)
    payload.append({"blob": {"fence": "turn", "messages": entries}})
    return payload


def turn_metadata(first: int, last: int, turn_id: str | None, fence: int | None) -> dict[str, str]:
    """The metadata of a turn's event: its seq range, turn id and fencing token."""
    metadata = {"fence_kind": "turn", "fence_seq": str(first), "fence_last": str(last)}
    if turn_id is not None:
        metadata["fence_turn"] = turn_id
    if fence is not None:
        metadata["fence_token"] = str(fence)
    return metadata


def fence_blobs(payload: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The payload's blobs that Fence wrote (a dict with a ``fence`` key)."""
    return [
        entry["blob"]
        for entry in payload
        if isinstance(entry.get("blob"), dict) and "fence" in entry["blob"]
    ]


def turn_decoders(
    payload: list[dict[str, Any]], first: int, turn_id: str | None
) -> list[tuple[int, Decoder]]:
    """(seq, decoder) of each message of a Fence turn event, in the event's order.

    Reads both layouts: the companion blob of this version, and the one blob
    per message (``{"fence": "message", "seq", "record", "turn_id"}``) that
    earlier versions wrote.
    """
    decoders: list[tuple[int, Decoder]] = []
    for blob in fence_blobs(payload):
        if blob["fence"] == "message":
            seq = int(blob["seq"])
            decoders.append((seq, _decoder(blob["record"], None, seq, blob.get("turn_id"))))
        elif blob["fence"] == "turn":
            for offset, entry in enumerate(blob["messages"]):
                text = _text_at(payload, entry.get("text"))
                decoders.append(
                    (first + offset, _decoder(entry["record"], text, first + offset, turn_id))
                )
    return decoders


def _text_at(payload: list[dict[str, Any]], index: int | None) -> str | None:
    if index is None:
        return None
    return payload[index]["conversational"]["content"]["text"]


def _decoder(record: str, text: str | None, seq: int, turn_id: str | None) -> Decoder:
    def decode() -> Message:
        fields = json.loads(record)
        if text is not None:
            fields["content"] = text
        return Message.from_record(fields, seq=seq, turn_id=turn_id)

    return decode


def foreign_decoders(event: dict[str, Any]) -> list[Decoder]:
    """Decoders of the conversational payloads of an event another tool wrote.

    ``USER`` and ``ASSISTANT`` keep their role. ``TOOL`` and ``OTHER`` become
    user messages: a model cannot be sent a tool result without the call that
    asked for it, and another writer's text must not gain system authority.
    Each message's ``meta`` names the event and the role it had; it has no seq.
    Blank texts and other payload types (blob, json) are skipped.
    """
    event_id = event["eventId"]
    decoders: list[Decoder] = []
    for entry in event.get("payload") or []:
        conversational = entry.get("conversational")
        if not isinstance(conversational, dict):
            continue
        text = (conversational.get("content") or {}).get("text")
        if not isinstance(text, str) or not text.strip():
            continue
        role = str(conversational.get("role", "OTHER"))
        decoders.append(_foreign_decoder(event_id, role, text))
    return decoders


def _foreign_decoder(event_id: str, role: str, text: str) -> Decoder:
    def decode() -> Message:
        fence_role = Role.ASSISTANT if role == "ASSISTANT" else Role.USER
        meta = {"agentcore_event_id": event_id, "agentcore_role": role}
        return Message.from_record({"role": fence_role.value, "content": text, "meta": meta})

    return decode
