"""The runtime's step journal: a run's finished steps in Redis, written only under the
lease (``fence.agents.journal`` says what is recorded and how a turn replays it).

It lives under the run's session hash tag, is bounded by ``FENCE_JOURNAL_MAX_BYTES``,
expires with the run record and is deleted when the run finishes. A retried write
may append an entry twice; replay keeps the first of each step.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from fence.errors import FenceError
from fence.runs.scripts import Journaled
from fence.runs.store import Lease, LeaseLost, RunStore

T = TypeVar("T")
Retry = Callable[[str, Callable[[], T]], T]
"""How a Redis call is made: ``retry(operation, call)`` (a worker's outage policy)."""


class JournalFull(FenceError):
    """The turn's steps outgrew ``FENCE_JOURNAL_MAX_BYTES``: it cannot be made durable."""


class RunJournal:
    """``Journal`` for the run a lease holds, for one delivery; ``record`` raises
    ``LeaseLost`` once the lease is not ours, so a stale worker journals nothing.

    While the lease is held nobody else writes the journal, so it is read from Redis
    at most once, and not at all on a run's first delivery (nothing can be in it
    yet); the delivery's own entries are kept here too."""

    def __init__(self, store: RunStore, lease: Lease, retry: Retry | None = None) -> None:
        self.store = store
        self.lease = lease
        self._retry: Retry = retry or (lambda operation, call: call())
        first = lease.record.deliveries == 1 and lease.record.waits == 0
        self._entries: list[dict[str, Any]] | None = [] if first else None

    def entries(self) -> list[dict[str, Any]]:
        if self._entries is None:
            stored = self._retry("read_journal", lambda: self.store.journal(self.lease))
            self._entries = [json.loads(entry) for entry in stored]
        return list(self._entries)

    def record(self, entry: dict[str, Any]) -> None:
        known = self.entries()  # read before it is added to
        text = json.dumps(entry)
        outcome = self._retry("record_step", lambda: self.store.record_step(self.lease, text))
        if outcome is Journaled.LOST:
            raise LeaseLost(self.lease.session_id, self.lease.run_id)
        if outcome is Journaled.FULL:
            limit = self.store.settings.journal_max_bytes
            raise JournalFull(
                f"the turn's steps need more than {limit} bytes of journal "
                "(FENCE_JOURNAL_MAX_BYTES)"
            )
        assert self._entries is not None
        self._entries = [*known, entry]
