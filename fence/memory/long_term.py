"""Long-term memory for an Agent: records recalled for each prompt, within a token budget.

A session's history is what was said; long-term memory is what a service
distilled from many sessions (facts, preferences, summaries). Anything with
``search(query, *, namespace=None, top_k=...)`` returning ``MemoryRecord`` s
can supply it (``AgentCoreMemory`` does, over ``RetrieveMemoryRecords``);
the other backends do not, so for them the option is simply absent.

``Agent(..., long_term=LongTermRecall(source))`` searches ``source`` with the
user's prompt before each turn and sends the records that fit
``max_tokens`` to the model with the system prompt. They are context for
that turn only: never stored in the session. ``recall_from_settings(memory)``
builds the option from ``FENCE_LONG_TERM_*``, as the runtime's built-in agents
do.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from fence.settings import Settings, get_settings
from fence.tokens import count_tokens

log = logging.getLogger(__name__)

CONTEXT_HEADER = (
    "Long-term memory: records recalled for this message from earlier conversations. "
    "They may be incomplete or out of date."
)


@dataclass(frozen=True)
class MemoryRecord:
    """One long-term record: its text, and where it came from when the source says."""

    text: str
    score: float | None = None
    namespace: str | None = None
    record_id: str | None = None


@runtime_checkable
class LongTermMemory(Protocol):
    """A source of long-term records."""

    def search(
        self, query: str, *, namespace: str | None = None, top_k: int = 5
    ) -> list[MemoryRecord]:
        """The records that best match ``query``, best first, at most ``top_k``."""
        ...


@dataclass(frozen=True)
class LongTermRecall:
    """The Agent option: before each turn, the ``top_k`` records for the prompt.

    Records are taken best first while the context block (header included)
    stays within ``max_tokens``, and stop at the first that does not fit, as
    ``max_memory_size`` does for history. A failed search logs a warning and
    the turn goes on without records; with ``strict`` it fails the turn
    (before anything is written).
    """

    source: LongTermMemory
    top_k: int = 5
    max_tokens: int = 500
    namespace: str | None = None
    strict: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.source, LongTermMemory):
            raise ValueError(
                "source: must offer search(query, *, namespace=None, top_k=...), as "
                f"AgentCoreMemory does (got {type(self.source).__name__})"
            )
        for name in ("top_k", "max_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: must be a positive integer (got {value!r})")

    def recall(self, prompt: str, *, session_id: str | None = None) -> list[MemoryRecord]:
        """The records for ``prompt`` that fit the budget (none if the search failed)."""
        try:
            found = self.source.search(prompt, namespace=self.namespace, top_k=self.top_k)
            records = [r for r in found if isinstance(r, MemoryRecord) and r.text.strip()]
        except Exception as exc:
            if self.strict:
                raise
            log.warning(
                "session_id=%s long-term recall failed; the turn goes on without it: %s: %s",
                session_id,
                type(exc).__name__,
                exc,
            )
            return []
        return _within(records[: self.top_k], self.max_tokens)


def recall_from_settings(memory: object, settings: Settings | None = None) -> LongTermRecall | None:
    """``FENCE_LONG_TERM_TOP_K``, ``_MAX_TOKENS`` and ``_STRICT`` as the option for an
    agent on ``memory``: None while the top k is 0 (the default).

    Raises ``ValueError`` naming the setting when it is on and ``memory`` has no
    ``search``: only AgentCore memory has long-term records.
    """
    settings = settings or get_settings()
    if not settings.long_term_top_k:
        return None
    if not isinstance(memory, LongTermMemory):
        raise ValueError(
            "FENCE_LONG_TERM_TOP_K: long-term memory needs a memory that can search it, "
            f"such as agentcore://<memory-id>; {type(memory).__name__} cannot "
            "(set FENCE_LONG_TERM_TOP_K=0 to turn it off)"
        )
    return LongTermRecall(
        memory,
        top_k=settings.long_term_top_k,
        max_tokens=settings.long_term_max_tokens,
        strict=settings.long_term_strict,
    )


def _within(records: Sequence[MemoryRecord], max_tokens: int) -> list[MemoryRecord]:
    used = count_tokens(CONTEXT_HEADER)
    kept: list[MemoryRecord] = []
    for record in records:
        cost = count_tokens(_line(record))
        if used + cost > max_tokens:
            break
        kept.append(record)
        used += cost
    return kept


def _line(record: MemoryRecord) -> str:
    return f"\n- {record.text.strip()}"


def with_recalled(system: str | None, records: Sequence[MemoryRecord]) -> str | None:
    """The system prompt with the recalled records after it (unchanged if none)."""
    if not records:
        return system
    block = CONTEXT_HEADER + "".join(_line(r) for r in records)
    return f"{system}\n\n{block}" if system else block
