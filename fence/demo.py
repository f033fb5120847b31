"""A local demo: two agents, several sessions, one SQLite file, the offline model.

    python -m fence.demo                          # writes .fence/demo.db, replaced each run
    python -m fence.demo --db /tmp/demo.db --sessions 5

A support agent talks to each customer in a session of its own (one agent,
a new memory per session) and looks orders up with a Python tool; a notes
agent shares a team session with it; later a customer comes back and a fresh
agent on a re-opened memory picks the conversation up. Then every session's
history is read back from the database and printed.

The model is ``EchoModel``, which says how many messages it was sent and
repeats the user's last message, so the growing counts show memory at work.
It needs no network, and the output is the same on every run.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from fence.agents import Agent
from fence.memory import SQLiteMemory
from fence.messages import Message, Role, ToolCall
from fence.models.base import ModelResponse, ToolSpec
from fence.models.local import EchoModel

DEFAULT_DB = Path(".fence") / "demo.db"
CUSTOMERS = ("Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi")
FIRST_ORDER = 98765
TEAM_SESSION = "team-notes"
SUPPORT_ROLE = "You are a helpful customer support agent. Be polite and brief."
NOTES_ROLE = "You keep the support team's notes."
PREFILL = "Hello! I'm the support bot. How can I help?"

WIDTH = len("tool:lookup_order")
TOOL_CALL = re.compile(r"\b([A-Za-z_]\w*)\(([^()]*)\)")


class DemoModel(EchoModel):
    """EchoModel that also uses tools, so the demo shows the tool loop.

    When the newest message is the user's and names an offered tool as
    ``tool_name(argument)``, it calls that tool with the argument as the
    tool's first parameter. Once the result is back it answers as EchoModel
    does and quotes the result.
    """

    model_id = "echo-tools"

    def _complete(
        self, messages: list[Message], system: str | None, tools: list[ToolSpec]
    ) -> ModelResponse:
        newest = messages[-1] if messages else None
        if newest is not None and newest.role is Role.USER:
            offered = {spec.name: spec for spec in tools}
            for name, argument in TOOL_CALL.findall(newest.content):
                if name in offered:
                    parameters = list(offered[name].parameters.get("properties", {}))
                    arguments = {parameters[0]: argument.strip(" '\"")} if parameters else {}
                    call = ToolCall(id=f"call_{len(messages)}", name=name, arguments=arguments)
                    return ModelResponse(tool_calls=(call,), stop_reason="tool_use")
        reply = super()._complete(messages, system, tools)
        if newest is not None and newest.role is Role.TOOL:
            quoted = f"{reply.content} ({newest.name} says: {newest.content})"
            reply = reply.model_copy(update={"content": quoted})
        return reply


def lookup_order(order_id: str) -> dict[str, str]:
    """Look up an order's shipping status by its order number."""
    if not order_id.isdigit() or not FIRST_ORDER <= int(order_id) < FIRST_ORDER + 100:
        raise KeyError(f"no order {order_id}")
    return {"order": order_id, "status": "shipped" if int(order_id) % 2 else "packing"}


def notebook() -> Callable[[str], str]:
    """A fresh notebook's ``save_note`` tool."""
    notes: list[str] = []

    def save_note(text: str) -> str:
        """Save a note for the support team."""
        notes.append(text)
        return f"saved as note {len(notes)}"

    return save_note


def customer(index: int) -> tuple[str, str]:
    """The name and order number of the demo's ``index``-th customer."""
    name = CUSTOMERS[index % len(CUSTOMERS)]
    if index >= len(CUSTOMERS):
        name = f"{name} {index // len(CUSTOMERS) + 1}"
    return name, str(FIRST_ORDER + index)


def fresh_database(db_path: Path) -> None:
    """Create the directory and remove a previous run's database."""
    db_path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)


def run_conversations(db_path: Path, sessions: int) -> list[str]:
    """Run the demo's turns; return the session ids in the order they were started."""
    support = Agent(
        identifier="support",
        model=DemoModel(source="fence-demo"),
        role=SUPPORT_ROLE,
        tools=[lookup_order],
        prefill=PREFILL,
        max_memory_size=2_000,
    )
    notes = Agent(
        identifier="notes",
        model=DemoModel(source="fence-demo"),
        role=NOTES_ROLE,
        tools=[notebook()],
    )
    session_ids = []

    # One support agent, given a new memory per customer session.
    for index in range(sessions):
        name, order = customer(index)
        session_id = f"customer-{index + 1}"
        session_ids.append(session_id)
        support.memory = SQLiteMemory(db_path, session_id)
        support.run(f"Hi, I'm {name}. My order number is #{order}.")
        support.run(f"Where is it? lookup_order({order})")
        support.run("Thanks! What was my order number again?")

    # Two agents sharing one session.
    team = SQLiteMemory(db_path, TEAM_SESSION)
    team.set_system_message("Shared by the support and notes agents.")
    session_ids.append(TEAM_SESSION)
    support.memory = team
    notes.memory = team
    name, order = customer(0)
    notes.run("save_note(shift started)")
    support.run(f"Handover: {name} asked about order #{order}; it has shipped.")
    notes.run("What did support hand over?")

    # Later, in a different process: a fresh agent on a re-opened memory.
    returning = Agent(
        identifier="support",
        model=DemoModel(source="fence-demo"),
        memory=SQLiteMemory(db_path, "customer-1"),
        role=SUPPORT_ROLE,
        tools=[lookup_order],
        prefill=PREFILL,
    )
    returning.run("I'm back. Can you also check lookup_order(12345)?")
    return session_ids


def describe(message: Message) -> tuple[str, str]:
    """Who wrote a message, and its text, for printing."""
    if message.role is Role.TOOL:
        return f"tool:{message.name}", message.content
    if message.role is Role.ASSISTANT:
        who = str(message.meta.get("agent", "assistant"))
        if message.tool_calls:
            calls = ", ".join(
                f"{call.name}({', '.join(f'{k}={v!r}' for k, v in call.arguments.items())})"
                for call in message.tool_calls
            )
            return who, f"-> calls {calls}"
        return who, message.content
    return message.role.value, message.content


def print_sessions(db_path: Path, session_ids: Sequence[str], out: TextIO) -> None:
    """Read every session back from the database and print it, then a summary line."""
    print(
        f"Fence demo: the support agent serves {len(session_ids) - 1} customer(s), one "
        f"session each; support and notes share {TEAM_SESSION!r}; customer-1 comes back "
        "later on a re-opened memory. The model is the offline EchoModel.\n",
        file=out,
    )
    total_messages = 0
    turns: set[tuple[str, str]] = set()
    agents: set[str] = set()
    for session_id in session_ids:
        window = SQLiteMemory(db_path, session_id).get_window()
        messages = window.messages
        print(f"== session {session_id} ({len(messages)} messages) ==", file=out)
        if system := window.system:
            print(f"   {'system prompt':<{WIDTH}} | {system}", file=out)
        for message in messages:
            who, text = describe(message)
            print(f"   {who:<{WIDTH}} | {text}", file=out)
            if "agent" in message.meta:
                agents.add(str(message.meta["agent"]))
            if message.turn_id:
                turns.add((session_id, message.turn_id))
        print(file=out)
        total_messages += len(messages)
    print(
        f"{len(session_ids)} sessions, {len(turns)} turns, {total_messages} messages "
        f"by agents {', '.join(sorted(agents))}, stored in {db_path}",
        file=out,
    )


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {value})")
    return value


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fence.demo",
        description="Run several agents over several sessions with SQLite memory, offline.",
    )
    parser.add_argument(
        "--db",
        type=Path,
        default=DEFAULT_DB,
        help=f"SQLite file to write; replaced on each run (default: {DEFAULT_DB})",
    )
    parser.add_argument(
        "--sessions",
        type=positive_int,
        default=3,
        help="number of customer sessions (default: 3); a shared team session is added",
    )
    args = parser.parse_args(argv)

    fresh_database(args.db)
    session_ids = run_conversations(args.db, args.sessions)
    print_sessions(args.db, session_ids, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
