"""Where the run commands send their calls: to Redis through ``Producer`` (the default),
or to the HTTP gateway through ``FenceClient`` (``fence --url URL`` or ``FENCE_API_URL``,
the token in ``FENCE_API_TOKEN``: a machine that may not hold Redis credentials).

Both backends give the commands the runtime's own types (``RunRecord``, ``RunEvent``,
``Page``) and the same run handle, so a command prints the same whichever it talks to.
``connect`` picks one; ``main`` closes what was opened when the command is done.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

from fence.memory.sqlite import MissingDatabaseError
from fence.memory.url import memory_factory
from fence.messages import Message
from fence.runs import RunEvent, RunNotFound, RunRecord, RunState
from fence.runs.listing import Page, SessionSummary
from fence.settings import Settings
from producer.cli.errors import CliError
from producer.cli.output import record_dict, redact
from producer.client import Producer


class RunHandle(Protocol):
    """One run, as ``Producer.submit`` and ``Producer.run`` hand it out."""

    id: str
    session_id: str
    state: RunState
    position: int | None
    duplicate: bool

    def status(self) -> RunRecord: ...
    def cancel(self) -> RunRecord: ...
    def approve(self, arguments: dict[str, Any] | None = None) -> RunRecord: ...
    def deny(self, reason: str = "") -> RunRecord: ...
    def events(
        self, after: str | None = None, timeout: float | None = None
    ) -> Iterator[RunEvent]: ...


@dataclass(frozen=True)
class History:
    messages: list[Message]
    """Oldest first."""
    system: str | None
    source: str
    """Where it was read from, for people (no credentials)."""


class Backend(Protocol):
    def submit(self, session_id: str, message: str, **options: Any) -> RunHandle: ...
    def run(self, run_id: str) -> RunHandle: ...
    def wait(self, run_id: str, timeout: float) -> RunRecord:
        """The run once terminal; ``RunTimeout`` if it is not within ``timeout``."""
        ...

    def events(self, run: RunHandle, after: str, *, follow: bool) -> Iterable[RunEvent]:
        """Its events after ``after``: followed to the end, or (not ``follow``) what is
        logged now."""
        ...

    def sessions(
        self, state: str | None, limit: int, cursor: str | None
    ) -> Page[SessionSummary]: ...
    def runs(self, session_id: str, limit: int, cursor: str | None) -> Page[RunRecord]: ...
    def history(self, session_id: str, limit: int | None) -> History: ...
    def session(self, session_id: str) -> dict[str, Any]:
        """What a person needs to tell whether a session is stuck, as ``fence session``
        prints it."""
        ...

    def close(self) -> None: ...


class RedisBackend:
    """The runtime's Redis, directly (``FENCE_REDIS_URL``)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def producer(self) -> Producer:
        """Made when first used: ``fence history`` reads memory only."""
        return Producer(settings=self.settings)

    def submit(self, session_id: str, message: str, **options: Any) -> RunHandle:
        return self.producer.submit(session_id, message, **options)

    def run(self, run_id: str) -> RunHandle:
        return self.producer.run(run_id)

    def wait(self, run_id: str, timeout: float) -> RunRecord:
        return self.producer.store.wait(run_id, timeout)

    def events(self, run: RunHandle, after: str, *, follow: bool) -> Iterable[RunEvent]:
        """A finished run's log is read at once, without waiting."""
        if follow and not run.state.terminal:
            return run.events(after=after)
        return self._logged(run, after)

    def _logged(self, run: RunHandle, after: str) -> Iterator[RunEvent]:
        log = self.producer.store.event_log
        while batch := log.read(run.session_id, run.id, after):
            yield from batch
            after = batch[-1].id

    def sessions(self, state: str | None, limit: int, cursor: str | None) -> Page[SessionSummary]:
        return self.producer.sessions(state, limit, cursor)

    def runs(self, session_id: str, limit: int, cursor: str | None) -> Page[RunRecord]:
        return self.producer.runs(session_id, limit, cursor)

    def history(self, session_id: str, limit: int | None) -> History:
        """From the memory backend (``FENCE_MEMORY``), with the system prompt."""
        memory = memory_factory(self.settings.memory, missing_ok=False)(session_id)
        where = redact(self.settings.memory)
        try:
            window = memory.get_window()  # the whole history and the system prompt, in one read
        except MissingDatabaseError as error:  # reading creates no database
            raise CliError(
                f"FENCE_MEMORY: {error} (FENCE_MEMORY is {where})", code="not_found"
            ) from None
        messages = window.messages if limit is None else window.messages[-limit:]
        return History(messages, window.system, where)

    def session(self, session_id: str) -> dict[str, Any]:
        info = self.producer.session(session_id)
        active: dict[str, Any] | None = None
        if info.active_run:
            try:
                active = record_dict(self.producer.store.get(info.active_run, session_id))
            except RunNotFound:
                active = {"run_id": info.active_run, "state": "missing (record expired)"}
        return {
            "session_id": session_id,
            "state": info.state,
            "active_run": active,
            "queued": info.queued,
            "lease": (
                {"token": info.lease_token, "expires_in_ms": info.lease_expires_in_ms}
                if info.lease_expires_in_ms is not None
                else None
            ),
            "last_progress_at": info.progress_at,
            "stall_after_s": self.settings.stall_after_s,
        }

    def close(self) -> None:
        if "producer" in vars(self):
            self.producer.store.redis.close()


_opened: list[Backend] = []


def gateway_url(args: argparse.Namespace) -> str | None:
    """The gateway the run commands go through: ``--url``, else ``FENCE_API_URL`` unless
    ``--redis-url`` asks for Redis."""
    if getattr(args, "url", None):
        return args.url
    if getattr(args, "redis_url", None):
        return None
    return os.environ.get("FENCE_API_URL") or None


def connect(args: argparse.Namespace, settings: Settings) -> Backend:
    """The gateway's backend if a gateway URL is set, else Redis's."""
    url = gateway_url(args)
    if url is None:
        backend: Backend = RedisBackend(settings)
    elif getattr(args, "redis_url", None):
        raise CliError("--url: give the gateway (--url) or Redis (--redis-url), not both")
    else:
        try:
            from producer.cli.remote import GatewayBackend  # httpx only when it is used
        except ImportError as error:
            raise CliError(f"--url: the HTTP client needs httpx ({error})") from None
        backend = GatewayBackend(url)
    _opened.append(backend)
    return backend


def close_opened() -> None:
    while _opened:
        _opened.pop().close()
