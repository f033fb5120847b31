"""Does memory get slower as a conversation grows?

For each backend and history size, measures the median latency of appending
one message and of loading a 1,000-token window, and prints them with their
ratio to the smallest history in the same run (target: <= 1.3x). For AWS
backends it also counts the API requests each operation makes (targets: at
most 2 per append; a window's requests follow the window, not the history).

    python bench/memory_growth.py                      # 10 .. 100,000 messages
    python bench/memory_growth.py --sizes 10 1000 --backends sqlite
    python bench/memory_growth.py --smoke              # small sizes, in seconds

``dynamodb`` runs DynamoDBMemory over HTTP against moto in server mode on a
free loopback port, on the seed's partition-key-only table. moto as shipped
deep-copies the whole table on every TransactWriteItems (O(table), which real
DynamoDB is not), so the main table uses moto with item-level rollback (see
tests/memory/aws_server.py) and a second table measures moto as shipped: that
cost is the emulator's, and the request counts carry the claim.

``agentcore`` compares AgentCoreMemory before issue 14 (commit 0b1d2f7) and
after, on the same kind of local endpoint: payload entries and request bytes
of one turn's event, then ``ListEvents`` calls and time per window load at
``--turns`` turns (see bench/_agentcore.py).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fence.memory import BaseMemory, DynamoDBMemory, FleetingMemory, SQLiteMemory  # noqa: E402
from fence.messages import Message, Role  # noqa: E402

WINDOW_TOKENS = 1_000
FILL_BATCH = 1_000
EMULATOR_PROBES = 5
MemoryFactory = Callable[[str], BaseMemory]


@contextmanager
def fleeting() -> Iterator[MemoryFactory]:
    yield lambda session_id: FleetingMemory(session_id)


@contextmanager
def sqlite() -> Iterator[MemoryFactory]:
    with tempfile.TemporaryDirectory() as tmp:
        yield lambda session_id: SQLiteMemory(Path(tmp) / "bench.db", session_id)


@contextmanager
def dynamodb() -> Iterator[MemoryFactory]:
    """The seed's table in moto server mode, with fake credentials."""
    from tests.memory import aws_server

    with aws_server.dummy_aws_process_environ(), aws_server.moto_server() as url:
        client = aws_server.client("dynamodb", url)
        aws_server.create_seed_table(client, "agent-memory")
        yield lambda session_id: DynamoDBMemory(  # a client each, to count its requests
            table_name="agent-memory",
            primary_key_name="session_id",
            primary_key_value=session_id,
            endpoint_url=url,
        )


BACKENDS: dict[str, Callable[[], AbstractContextManager[MemoryFactory]]] = {
    "fleeting": fleeting,
    "sqlite": sqlite,
    "dynamodb": dynamodb,
}


@dataclass
class Result:
    append_us: float
    window_us: float
    append_requests: float | None = None
    window_requests: float | None = None
    window_messages: int = 0


class RequestCounter:
    """Counts API calls made by a boto3 client (one per operation, not per HTTP retry)."""

    def __init__(self, client: Any) -> None:
        self.count = 0
        client.meta.events.register("before-call", self._seen)

    def _seen(self, **_: Any) -> None:
        self.count += 1


def fill(memory: BaseMemory, count: int) -> None:
    """Write ``count`` messages in turns of ``FILL_BATCH`` (setup, not measured).

    DynamoDB turns hold at most 98 messages, so it is filled with its bulk
    ``import_messages`` (BatchWriteItem) in the same item layout instead.
    """
    template = [
        Message(role=Role.USER if i % 2 == 0 else Role.ASSISTANT, content=f"message {i} " * 8)
        for i in range(min(count, FILL_BATCH))
    ]
    written = 0
    while written < count:
        batch = template[: min(FILL_BATCH, count - written)]
        if isinstance(memory, DynamoDBMemory):
            memory.import_messages(batch)
        else:
            memory.commit_turn(f"fill-{written}", batch)
        written += len(batch)


def _timed_us(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1e6


def median_us(action: Callable[[], object], repeats: int) -> float:
    return statistics.median(_timed_us(action) for _ in range(repeats))


def measure(memories: list[BaseMemory], repeats: int) -> list[Result]:
    """Median append and window latency of each filled memory, and requests per op.

    The histories take turns, one operation each per round, so a burst of load
    on the machine slows every size alike instead of skewing one row.
    """
    counters = [
        RequestCounter(m.client) if getattr(m, "client", None) is not None else None
        for m in memories
    ]
    text = "one more message of ordinary length " * 4
    appends: list[list[float]] = [[] for _ in memories]
    windows: list[list[float]] = [[] for _ in memories]
    starts = [c.count if c else 0 for c in counters]
    for _ in range(repeats):
        for i, memory in enumerate(memories):
            appends[i].append(_timed_us(lambda m=memory: m.add_user_message(text)))
    middles = [c.count if c else 0 for c in counters]
    for _ in range(repeats):
        for i, memory in enumerate(memories):
            windows[i].append(_timed_us(lambda m=memory: m.get_window(WINDOW_TOKENS)))
    ends = [c.count if c else 0 for c in counters]
    results = []
    for i, memory in enumerate(memories):
        result = Result(
            statistics.median(appends[i]),
            statistics.median(windows[i]),
            window_messages=len(memory.get_window(WINDOW_TOKENS).messages),
        )
        counter = counters[i]
        if counter is not None:
            result.append_requests = (middles[i] - starts[i]) / repeats
            result.window_requests = (ends[i] - middles[i]) / repeats
        results.append(result)
    return results


def emulator_transaction_ms(memory: DynamoDBMemory) -> tuple[float, float]:
    """Median ms of one tiny TransactWriteItems on a fresh key: moto as shipped, then
    with item-level rollback. Real DynamoDB's cost does not depend on the table."""
    from tests.memory import aws_server

    def probe() -> None:
        key = {"session_id": {"S": f"probe-{uuid.uuid4().hex}"}}
        memory.client.transact_write_items(
            TransactItems=[{"Put": {"TableName": memory.table_name, "Item": key}}]
        )

    with aws_server.moto_as_shipped():
        shipped = median_us(probe, EMULATOR_PROBES) / 1000
    patched = median_us(probe, EMULATOR_PROBES) / 1000
    return shipped, patched


def _requests(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def report_backends(names: list[str], sizes: list[int], repeats: int) -> None:
    """The table of append and window latency by history size, for these backends."""
    print(f"window = {WINDOW_TOKENS} tokens (msgs: messages in it); median of {repeats} ops each")
    header = f"{'backend':<10} {'messages':>9} {'append µs':>10} {'x base':>7} "
    header += f"{'window µs':>10} {'x base':>7} {'msgs':>5} {'req/append':>10} {'req/window':>10}"
    print(header)
    print("-" * len(header))
    worst: dict[str, float] = {}
    emulator: list[tuple[int, float, float]] = []
    for name in names:
        with BACKENDS[name]() as open_memory:
            memories = []
            stored = 0
            for size in sizes:
                memory = open_memory(f"bench-{size}-{uuid.uuid4().hex[:8]}")
                fill(memory, size)
                memories.append(memory)
                if isinstance(memory, DynamoDBMemory):
                    stored += size + 1  # messages + head
                    emulator.append((stored, *emulator_transaction_ms(memory)))
            results = measure(memories, repeats)
            base = results[0]
            for size, result in zip(sizes, results, strict=True):
                ratios = (result.append_us / base.append_us, result.window_us / base.window_us)
                worst[name] = max(worst.get(name, 0.0), *ratios)
                print(
                    f"{name:<10} {size:>9,} {result.append_us:>10.1f} {ratios[0]:>6.2f}x "
                    f"{result.window_us:>10.1f} {ratios[1]:>6.2f}x {result.window_messages:>5} "
                    f"{_requests(result.append_requests):>10} "
                    f"{_requests(result.window_requests):>10}",
                    flush=True,
                )
    for name, ratio in worst.items():
        print(f"{name}: worst ratio to the smallest history {ratio:.2f}x (target <= 1.30x)")
    if emulator:
        print()
        print("moto's own cost: one 1-item TransactWriteItems vs items in the table")
        print("(measured after each fill; real DynamoDB's cost does not depend on the table)")
        print(f"{'table items':>12} {'moto as shipped ms':>19} {'item-level rollback ms':>23}")
        for items, shipped, patched in emulator:
            print(f"{items:>12,} {shipped:>19.1f} {patched:>23.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    names = [*BACKENDS, "agentcore"]
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 1_000, 10_000, 100_000])
    parser.add_argument("--turns", type=int, nargs="+", default=[10, 1_000, 10_000])
    parser.add_argument("--backends", nargs="+", default=names, choices=names)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument(
        "--agentcore-repeats", type=int, default=5, help="window loads per AgentCore session"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="10 and 100 messages, 10 and 250 AgentCore turns"
    )
    args = parser.parse_args(argv)
    if args.smoke:  # 250 turns: more than one ListEvents page of 100
        args.sizes, args.turns, args.repeats, args.agentcore_repeats = [10, 100], [10, 250], 20, 3

    generic = [name for name in args.backends if name in BACKENDS]
    if generic:
        report_backends(generic, args.sizes, args.repeats)
    if "agentcore" in args.backends:
        from bench import _agentcore

        _agentcore.report(args.turns, WINDOW_TOKENS, args.agentcore_repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
