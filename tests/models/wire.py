"""A local HTTP server for streamed model calls, and the providers' streaming formats.

``LocalServer`` listens on 127.0.0.1 and answers each request with the next
queued ``Reply``, written piece by piece with chunked transfer encoding, so a
client reads each piece as it arrives. A reply with ``cut=True`` closes the
connection before its body ends, as a dropped connection does.

The bodies are the providers' real streaming formats: OpenAI's server-sent
``data:`` chunks ending with ``data: [DONE]``, and Bedrock's binary
``application/vnd.amazon.eventstream`` messages (encoded here as
``botocore/eventstream.py`` decodes them).
"""

from __future__ import annotations

import json
import struct
import sys
import threading
from binascii import crc32
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """A response; with ``hold_after``, the server waits for ``resume`` after that many pieces."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    pieces: list[bytes] = field(default_factory=list)
    cut: bool = False
    hold_after: int | None = None
    resume: threading.Event = field(default_factory=threading.Event)


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class LocalServer:
    """An HTTP/1.1 server in a thread: queued replies, recorded requests."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        self._http = _QuietServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._http.server_address[:2]
        return f"http://{host}:{port}"

    def queue(self, *replies: Reply) -> LocalServer:
        with self._lock:
            self.replies.extend(replies)
        return self

    def take(self, request: Received) -> Reply:
        with self._lock:
            self.requests.append(request)
            if self.replies:
                return self.replies.pop(0)
        unexpected = {"message": f"unexpected request #{len(self.requests)} to {request.path}"}
        return json_reply({"error": unexpected, **unexpected}, status=400)

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up (as the stream tests make them do) is not an error."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _handler(server: LocalServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {name.lower(): value for name, value in self.headers.items()}
            reply = server.take(Received("POST", self.path, headers, body))
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for number, piece in enumerate(reply.pieces):
                if number == reply.hold_after:
                    reply.resume.wait(timeout=10)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
            if reply.cut:
                self.close_connection = True  # no last chunk: the body ends short
                return
            self.wfile.write(b"0\r\n\r\n")

        def log_message(self, *_: Any) -> None:
            pass

    return Handler


def json_reply(body: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    return Reply(
        status,
        {"Content-Type": "application/json", **(headers or {})},
        [json.dumps(body).encode()],
    )


# -- OpenAI chat completions: server-sent chunks ----------------------------------------


def chat_chunk(
    delta: dict[str, Any] | None = None,
    *,
    finish_reason: str | None = None,
    usage: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """One ``chat.completion.chunk``; with ``usage``, the last one (no choices)."""
    chunk: dict[str, Any] = {
        "id": "chatcmpl-stream",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_test",
        "choices": [],
        "usage": None,
    }
    if usage:
        chunk["usage"] = {
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
            "total_tokens": sum(usage),
        }
    else:
        chunk["choices"] = [
            {"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish_reason}
        ]
    return chunk


def tool_call_chunks(index: int, call_id: str, name: str, *fragments: str) -> list[dict]:
    """A tool call as OpenAI streams it: id and name first, then argument fragments."""
    first = {"index": index, "id": call_id, "type": "function"}
    chunks = [chat_chunk({"tool_calls": [{**first, "function": {"name": name, "arguments": ""}}]})]
    for fragment in fragments:
        call = {"index": index, "function": {"arguments": fragment}}
        chunks.append(chat_chunk({"tool_calls": [call]}))
    return chunks


def streamed_completion(
    *texts: str,
    tool_calls: list[dict] = (),
    finish_reason: str = "stop",
    usage: tuple[int, int] = (11, 7),
) -> list[dict[str, Any]]:
    """The chunks of a whole streamed reply: role, text pieces, tool calls, finish, usage."""
    opening = chat_chunk({"role": "assistant", "content": "", "refusal": None})
    pieces = [chat_chunk({"content": text}) for text in texts]
    closing = [chat_chunk(finish_reason=finish_reason), chat_chunk(usage=usage)]
    return [opening, *pieces, *tool_calls, *closing]


def sse_reply(chunks: list[dict[str, Any]], *, cut_after: int | None = None) -> Reply:
    """``chunks`` as ``data:`` events ending with ``[DONE]``, or cut after ``cut_after`` of them."""
    pieces = [f"data: {json.dumps(chunk)}\n\n".encode() for chunk in chunks]
    if cut_after is None:
        pieces.append(b"data: [DONE]\n\n")
    else:
        pieces = pieces[:cut_after]
    return Reply(200, {"Content-Type": "text/event-stream"}, pieces, cut=cut_after is not None)


# -- Bedrock ConverseStream: binary event-stream messages -----------------------------------


def event_stream_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude (total and headers length, CRC32), string
    headers, payload, and the CRC32 of all that precedes it."""
    encoded = b"".join(
        bytes([len(name)]) + name.encode() + b"\x07" + struct.pack("!H", len(value)) + value
        for name, value in ((name, value.encode()) for name, value in headers.items())
    )
    prelude = struct.pack("!II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    message = prelude + struct.pack("!I", crc32(prelude)) + encoded + payload
    return message + struct.pack("!I", crc32(message))


def converse_event(event_type: str, body: dict[str, Any]) -> bytes:
    headers = {
        ":event-type": event_type,
        ":content-type": "application/json",
        ":message-type": "event",
    }
    return event_stream_message(headers, json.dumps(body).encode())


def converse_exception(exception_type: str, message: str) -> bytes:
    headers = {
        ":exception-type": exception_type,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return event_stream_message(headers, json.dumps({"message": message}).encode())


def converse_stream_events(
    *blocks: dict[str, Any], stop_reason: str = "end_turn", usage: tuple[int, int] = (12, 7)
) -> list[bytes]:
    """The events of a whole ConverseStream reply carrying ``blocks``.

    A block is ``{"text": [pieces]}`` or ``{"toolUse": (id, name, [input fragments])}``.
    """
    events = [converse_event("messageStart", {"role": "assistant"})]
    for index, block in enumerate(blocks):
        if "text" in block:
            events += [
                converse_event(
                    "contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": t}}
                )
                for t in block["text"]
            ]
        else:
            call_id, name, fragments = block["toolUse"]
            start = {"toolUse": {"toolUseId": call_id, "name": name}}
            events.append(
                converse_event("contentBlockStart", {"contentBlockIndex": index, "start": start})
            )
            events += [
                converse_event(
                    "contentBlockDelta",
                    {"contentBlockIndex": index, "delta": {"toolUse": {"input": fragment}}},
                )
                for fragment in fragments
            ]
        events.append(converse_event("contentBlockStop", {"contentBlockIndex": index}))
    metadata = {
        "usage": {"inputTokens": usage[0], "outputTokens": usage[1], "totalTokens": sum(usage)},
        "metrics": {"latencyMs": 42},
    }
    events.append(converse_event("messageStop", {"stopReason": stop_reason}))
    events.append(converse_event("metadata", metadata))
    return events


def event_stream_reply(events: list[bytes], *, cut: bool = False) -> Reply:
    return Reply(200, {"Content-Type": "application/vnd.amazon.eventstream"}, events, cut=cut)
