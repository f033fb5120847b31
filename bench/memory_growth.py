"""Does memory get slower as a conversation grows?

For each backend and history size, measures the median latency of appending
one message and of loading a 1,000-token window, and prints them with their
ratio to the smallest history in the same run (target: <= 1.3x).

    python bench/memory_growth.py                      # 10 .. 100,000 messages
    python bench/memory_growth.py --sizes 10 1000 --backends sqlite
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fence.memory import BaseMemory, FleetingMemory, SQLiteMemory  # noqa: E402
from fence.messages import Message, Role  # noqa: E402

WINDOW_TOKENS = 1_000
FILL_BATCH = 1_000
MemoryFactory = Callable[[str], BaseMemory]


@contextmanager
def fleeting() -> Iterator[MemoryFactory]:
    yield lambda session_id: FleetingMemory(session_id)


@contextmanager
def sqlite() -> Iterator[MemoryFactory]:
    with tempfile.TemporaryDirectory() as tmp:
        yield lambda session_id: SQLiteMemory(Path(tmp) / "bench.db", session_id)


BACKENDS: dict[str, Callable[[], AbstractContextManager[MemoryFactory]]] = {
    "fleeting": fleeting,
    "sqlite": sqlite,
}


def fill(memory: BaseMemory, count: int) -> None:
    """Write ``count`` messages in turns of ``FILL_BATCH`` (setup, not measured)."""
    template = [
        Message(role=Role.USER if i % 2 == 0 else Role.ASSISTANT, content=f"message {i} " * 8)
        for i in range(min(count, FILL_BATCH))
    ]
    written = 0
    while written < count:
        batch = template[: min(FILL_BATCH, count - written)]
        memory.commit_turn(f"fill-{written}", batch)
        written += len(batch)


def median_us(action: Callable[[], object], repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1e6)
    return statistics.median(samples)


def measure(open_memory: MemoryFactory, size: int, repeats: int) -> tuple[float, float]:
    memory = open_memory(f"bench-{size}-{uuid.uuid4().hex[:8]}")
    fill(memory, size)
    text = "one more message of ordinary length " * 4
    append = median_us(lambda: memory.add_user_message(text), repeats)
    window = median_us(lambda: memory.get_window(WINDOW_TOKENS), repeats)
    return append, window


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 1_000, 10_000, 100_000])
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=list(BACKENDS))
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args(argv)

    print(f"window = {WINDOW_TOKENS} tokens; median of {args.repeats} operations each")
    header = f"{'backend':<10} {'messages':>9} {'append µs':>10} {'x base':>7} "
    header += f"{'window µs':>10} {'x base':>7}"
    print(header)
    print("-" * len(header))
    worst = 0.0
    for name in args.backends:
        with BACKENDS[name]() as open_memory:
            base: tuple[float, float] | None = None
            for size in args.sizes:
                append, window = measure(open_memory, size, args.repeats)
                base = base or (append, window)
                ratios = (append / base[0], window / base[1])
                worst = max(worst, *ratios)
                print(
                    f"{name:<10} {size:>9,} {append:>10.1f} {ratios[0]:>6.2f}x "
                    f"{window:>10.1f} {ratios[1]:>6.2f}x"
                )
    print(f"worst ratio to the smallest history: {worst:.2f}x (target <= 1.30x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
