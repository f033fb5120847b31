"""``fence history``: a session's messages, read from the memory backend (``FENCE_MEMORY``),
or through the gateway's history pages."""

from __future__ import annotations

import argparse
import json
from typing import Any

from fence.messages import Message, validate_session_id
from fence.settings import Settings
from producer.cli.arguments import positive_int
from producer.cli.backend import connect
from producer.cli.errors import EXIT_OK
from producer.cli.output import emit_json


def add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    history = commands.add_parser(
        "history", parents=[common], help="a session's messages (from FENCE_MEMORY)"
    )
    history.add_argument("session", help="session id")
    history.add_argument("--limit", type=positive_int, help="only the newest N messages")
    history.set_defaults(handler=cmd_history)


def cmd_history(args: argparse.Namespace, settings: Settings) -> int:
    validate_session_id(args.session, "session")
    history = connect(args, settings).history(args.session, args.limit)
    messages, system = history.messages, history.system
    if args.json:
        emit_json(
            {
                "session_id": args.session,
                "system": system,
                "messages": [m.model_dump(mode="json") for m in messages],
            }
        )
        return EXIT_OK
    print(f"session {args.session}: {len(messages)} message(s) in {history.source}")
    if system:
        print(f"  system prompt: {system}")
    for message in messages:
        print(message_line(message))
    return EXIT_OK


def message_line(message: Message) -> str:
    """One message: its seq, turn, author and text (tool calls written out)."""
    text = message.content
    if message.tool_calls:
        calls = ", ".join(f"{c.name}({json.dumps(c.arguments)})" for c in message.tool_calls)
        text = f"{text} -> calls {calls}".strip()
    who = message.role.value + (f":{message.name}" if message.name else "")
    turn = f"[{message.turn_id[:12]}]" if message.turn_id else "[-]"
    return f"  {message.seq or '-':>5}  {turn:<14} {who:<10} {text}"
