"""memory_growth.py on AgentCore: before issue 14 (commit 0b1d2f7) against now.

Before, a turn was one event of one ``blob`` per message, and every read listed
the whole session (``nextToken`` to the end). Now a turn is one event of
conversational entries and one companion blob, and a window read stops once it
has the window. Both run on the suite's local endpoint (moto, with
``tests/memory/agentcore_extras.py`` answering ``ListEvents`` as the service
does: newest first, in pages, filtered on metadata; a request there costs about
its page, not the session).

Sessions are filled by writing each layout's events directly, one turn (a user
message and an answer) every 4 s, the pace the ``CreateEvent`` quota lets one
session sustain: a fill through ``commit_turn`` lists the whole session twice per
turn. Both read with 100 events per ``ListEvents`` page, Fence's default.
"""

from __future__ import annotations

import json
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fence.memory import AgentCoreMemory
from fence.memory.agentcore.layout import turn_metadata, turn_payload
from fence.memory.agentcore.listing import NOT_TURNS, EventPages
from fence.memory.agentcore.state import SessionState
from fence.memory.aws_setup import create_agentcore_memory
from fence.memory.base import Window, take_window
from fence.messages import Message, Role, ToolCall

QUOTA_PACE = timedelta(seconds=4)
PAGE_SIZE = 100

Payload = Callable[[list[Message], int, str], list[dict[str, Any]]]
"""(the turn's messages, its first seq, its turn id) -> the event's payload."""


def blob_only_payload(messages: list[Message], first: int, turn_id: str) -> list[dict[str, Any]]:
    """A turn as commit 0b1d2f7 wrote it: one blob per message, holding its whole record."""
    return [
        {
            "blob": {
                "fence": "message",
                "seq": first + offset,
                "record": json.dumps(message.to_record(), ensure_ascii=False),
                "turn_id": turn_id,
            }
        }
        for offset, message in enumerate(messages)
    ]


def conversational_payload(messages: list[Message], first: int, turn_id: str) -> list[dict]:
    """A turn as Fence writes it now (seq and turn id travel in the metadata)."""
    return turn_payload(messages)


def whole_session_window(memory: AgentCoreMemory, max_tokens: int) -> Window:
    """A window as commit 0b1d2f7 read it: every page of the session, then the newest
    messages that fit."""
    state = SessionState.of(_pages(memory).all(payloads=True))
    newest_first = (readable.decode() for readable in reversed(state.readable()))
    return take_window(newest_first, max_tokens, False, state.last_seq, system=state.system)


@dataclass(frozen=True)
class Layout:
    name: str
    payload: Payload
    window: Callable[[AgentCoreMemory, int], Window]


LAYOUTS = [
    Layout("before", blob_only_payload, whole_session_window),
    Layout("after", conversational_payload, lambda memory, tokens: memory.get_window(tokens)),
]


def _pages(memory: AgentCoreMemory) -> EventPages:
    where = {"actorId": memory.actor_id, "sessionId": memory.agentcore_session_id}

    def list_events(**params: Any) -> dict[str, Any]:
        return memory.client.list_events(memoryId=memory.memory_id, **params)

    return EventPages(list_events, where, PAGE_SIZE)


def _create(memory: AgentCoreMemory, payload: list, metadata: dict, at: datetime) -> int:
    """Write one event; returns the bytes of the ``CreateEvent`` request body."""
    sizes: list[int] = []

    def measure(request: Any, **_: Any) -> None:
        sizes.append(len(request.body or b""))

    memory.client.meta.events.register("before-send.bedrock-agentcore.CreateEvent", measure)
    try:
        memory.client.create_event(
            memoryId=memory.memory_id,
            actorId=memory.actor_id,
            sessionId=memory.agentcore_session_id,
            eventTimestamp=at,
            payload=payload,
            metadata={key: {"stringValue": value} for key, value in metadata.items()},
            clientToken=uuid.uuid4().hex,
        )
    finally:
        memory.client.meta.events.unregister("before-send.bedrock-agentcore.CreateEvent", measure)
    return sizes[-1]


def _write_turn(
    memory: AgentCoreMemory, layout: Layout, messages: list[Message], first: int, at: datetime
) -> tuple[int, int]:
    """One turn's event in ``layout``; returns (payload entries, request bytes)."""
    turn_id = f"run-{first}"
    payload = layout.payload(messages, first, turn_id)
    metadata = turn_metadata(first, first + len(messages) - 1, turn_id, None)
    return len(payload), _create(memory, payload, metadata, at)


SAMPLE_TURNS = {
    "chat (2 messages)": [
        Message(role=Role.USER, content="What is the status of order 98765? " * 3),
        Message(role=Role.ASSISTANT, content="Order 98765 shipped on Monday. " * 4),
    ],
    "tool loop (4 messages)": [
        Message(role=Role.USER, content="Where is order 98765?"),
        Message(
            role=Role.ASSISTANT,
            content="",
            tool_calls=(ToolCall(id="c1", name="lookup", arguments={"order": 98765}),),
        ),
        Message(role=Role.TOOL, content='{"status": "shipped"}', tool_call_id="c1", name="lookup"),
        Message(role=Role.ASSISTANT, content="It shipped on Monday."),
    ],
}


def fill_turn(index: int) -> list[Message]:
    return [
        Message(role=Role.USER, content=f"message {2 * index} " * 8),
        Message(role=Role.ASSISTANT, content=f"message {2 * index + 1} " * 8),
    ]


@dataclass
class WindowResult:
    lists: float
    ms: float
    messages: int


def _measure_windows(
    memories: list[AgentCoreMemory], layout: Layout, tokens: int, repeats: int
) -> list[WindowResult]:
    """ListEvents per window load and its median time, the sessions taking turns
    (after one load each: the emulator sorts a session's events on its first list)."""
    for memory in memories:
        layout.window(memory, tokens)
    counts = [_list_counter(memory) for memory in memories]
    times: list[list[float]] = [[] for _ in memories]
    for _ in range(repeats):
        for index, memory in enumerate(memories):
            started = time.perf_counter()
            layout.window(memory, tokens)
            times[index].append((time.perf_counter() - started) * 1000)
    return [
        WindowResult(
            len(count) / repeats, statistics.median(ms), len(layout.window(m, tokens).messages)
        )
        for m, count, ms in zip(memories, counts, times, strict=True)
    ]


def _list_counter(memory: AgentCoreMemory) -> list[int]:
    calls: list[int] = []
    memory.client.meta.events.register(
        "before-call.bedrock-agentcore.ListEvents", lambda **_: calls.append(1)
    )
    return calls


@contextmanager
def _local_memory() -> Iterator[Callable[[], AgentCoreMemory]]:
    from tests.memory import aws_server

    with aws_server.dummy_aws_process_environ(), aws_server.moto_server() as url:
        control = aws_server.client("bedrock-agentcore-control", url)
        memory_id = create_agentcore_memory("fence_bench", client=control)["memory_id"]
        yield lambda: AgentCoreMemory(
            agent_id="bench",
            session_id=f"bench-{uuid.uuid4().hex[:12]}",
            memory_id=memory_id,
            endpoint_url=url,
            page_size=PAGE_SIZE,
        )


def report(turn_counts: list[int], tokens: int, repeats: int) -> None:
    """Print both tables: per-turn size, then window loads by session length."""
    with _local_memory() as open_memory:
        _print_turn_sizes(open_memory)
        _print_windows(open_memory, turn_counts, tokens, repeats)


def _print_turn_sizes(open_memory: Callable[[], AgentCoreMemory]) -> None:
    print()
    print("AgentCore: one turn's event, before (0b1d2f7, blob-only) and after")
    header = f"{'turn':<23} {'layout':<7} {'entries':>7} {'x before':>8} "
    header += f"{'request bytes':>13} {'x before':>8}"
    print(header)
    print("-" * len(header))
    memory = open_memory()
    now = datetime.now(UTC)
    for name, messages in SAMPLE_TURNS.items():
        base: tuple[int, int] | None = None
        for layout in LAYOUTS:
            entries, size = _write_turn(memory, layout, messages, 1, now)
            base = base or (entries, size)
            print(
                f"{name:<23} {layout.name:<7} {entries:>7} {entries / base[0]:>7.2f}x "
                f"{size:>13,} {size / base[1]:>7.2f}x"
            )


def _filled(
    open_memory: Callable[[], AgentCoreMemory], layout: Layout, count: int
) -> AgentCoreMemory:
    """A session of ``count`` turns in ``layout``, ``QUOTA_PACE`` apart, ending now."""
    memory = open_memory()
    at = datetime.now(UTC) - count * QUOTA_PACE
    for index in range(count):
        _write_turn(memory, layout, fill_turn(index), 2 * index + 1, at + index * QUOTA_PACE)
    return memory


def _print_windows(
    open_memory: Callable[[], AgentCoreMemory], turn_counts: list[int], tokens: int, repeats: int
) -> None:
    print()
    print(
        f"AgentCore: loading a {tokens:,}-token window, before (0b1d2f7: every page) and "
        f"after; median of {repeats}; x first: against the {turn_counts[0]:,}-turn session"
    )
    header = f"{'layout':<7} {'turns':>7} {'ListEvents':>10} {'x first':>8} {'x before':>8} "
    header += f"{'window ms':>10} {'x first':>8} {'x before':>8} {'msgs':>5}"
    print(header)
    print("-" * len(header))
    before: list[WindowResult] = []
    for layout in LAYOUTS:
        memories = [_filled(open_memory, layout, count) for count in turn_counts]
        results = _measure_windows(memories, layout, tokens, repeats)
        before = before or results
        for count, result, old in zip(turn_counts, results, before, strict=True):
            print(
                f"{layout.name:<7} {count:>7,} {result.lists:>10.2f} "
                f"{result.lists / results[0].lists:>7.2f}x {result.lists / old.lists:>7.2f}x "
                f"{result.ms:>10.1f} {result.ms / results[0].ms:>7.2f}x "
                f"{result.ms / old.ms:>7.2f}x {result.messages:>5}",
                flush=True,
            )
    _print_endpoint_cost(memories, turn_counts, repeats)


def _print_endpoint_cost(
    memories: list[AgentCoreMemory], turn_counts: list[int], repeats: int
) -> None:
    """The local endpoint's own share of the after rows: its metadata filter scans
    every event of the session (the service does not publish how its filter costs)."""
    print()
    print("the local endpoint's own cost: the window's filtered ListEvents (prompts, clears,")
    print("claims) scans every event of the session there")
    print(f"{'turns':>7} {'filtered ListEvents ms':>23}")
    for count, memory in zip(turn_counts, memories, strict=True):
        pages = _pages(memory)
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            pages.all(payloads=True, only=NOT_TURNS)
            times.append((time.perf_counter() - started) * 1000)
        print(f"{count:>7,} {statistics.median(times):>23.1f}")
