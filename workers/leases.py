"""Keep this process's session leases alive while their turns run.

One thread per process renews every lease the process holds, in one Redis
round trip per period, instead of a thread per turn. A lease whose renewal
fails is marked lost; its turn stops at its next checkpoint.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from fence.runs import Lease, RunStore

log = logging.getLogger(__name__)


class LeaseRenewer:
    def __init__(self, store: RunStore, interval_s: float) -> None:
        self._store = store
        self._interval = interval_s
        self._lock = threading.Lock()
        self._held: dict[tuple[str, str], tuple[Lease, threading.Event]] = {}
        self._thread: threading.Thread | None = None
        self._pid: int | None = None

    @contextmanager
    def hold(self, lease: Lease) -> Iterator[threading.Event]:
        """Renew ``lease`` until the block ends; the event is set if it is lost."""
        key = (lease.session_id, lease.token)
        lost = threading.Event()
        with self._lock:
            self._start_thread()
            self._held[key] = (lease, lost)
        try:
            yield lost
        finally:
            with self._lock:
                self._held.pop(key, None)

    def _start_thread(self) -> None:
        """Start the renewal thread in this process (threads do not survive a fork)."""
        if self._pid == os.getpid() and self._thread is not None and self._thread.is_alive():
            return
        self._pid = os.getpid()
        self._thread = threading.Thread(
            target=self._renew_forever, name="fence-leases", daemon=True
        )
        self._thread.start()

    def _renew_forever(self) -> None:
        tick = threading.Event()  # never set: waits one period at a time
        while not tick.wait(self._interval):
            with self._lock:
                held = list(self._held.values())
            if not held:
                continue
            try:
                renewed = self._store.renew([lease for lease, _ in held])
            except Exception as error:  # Redis unreachable: leases may be expiring; keep trying
                log.warning("lease renewal failed: %s: %s", type(error).__name__, error)
                continue
            for (lease, lost), ok in zip(held, renewed, strict=True):
                if not ok:
                    log.warning(
                        "lease lost",
                        extra={"session_id": lease.session_id, "run_id": lease.run_id},
                    )
                    lost.set()
