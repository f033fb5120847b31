"""The Python client other services use to enqueue agent runs and follow them."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Iterator
from typing import Any

from fence.runs import (
    EventType,
    RunEvent,
    RunRecord,
    RunRequest,
    RunState,
    RunStore,
    SessionInfo,
    Strategy,
    Submission,
    advertised,
)
from fence.runs.listing import Page, SessionSummary
from fence.settings import Settings, get_settings
from fence.validation import InvalidInput

log = logging.getLogger(__name__)

AGENTS_CACHE_S = 2.0
"""How stale the advertised agents a producer checks names against may be."""


class RunError(Exception):
    """A run ended without an answer; ``record`` has its state and error."""

    def __init__(self, record: RunRecord) -> None:
        detail = f": {record.error}" if record.error else ""
        super().__init__(f"run {record.id} {record.state.value}{detail}")
        self.record = record


class RunFailed(RunError):
    pass


class RunCancelled(RunError):
    pass


class RunRejected(RunError):
    pass


ERRORS = {
    RunState.FAILED: RunFailed,
    RunState.CANCELLED: RunCancelled,
    RunState.REJECTED: RunRejected,
}


class Run:
    """A handle on one run, with its state as of when the handle was made
    (``status()`` reads it again)."""

    def __init__(
        self,
        store: RunStore,
        run_id: str,
        session_id: str,
        state: RunState,
        *,
        position: int | None = None,
        duplicate: bool = False,
    ) -> None:
        self._store = store
        self.id = run_id
        self.session_id = session_id
        self.state = state
        self.position = position
        """Runs ahead of this one when this submit queued it; None when it did not
        (rejected, a duplicate, or a handle from ``Producer.run``)."""
        self.duplicate = duplicate
        """This submit found an earlier run with its idempotency key: this is that run."""

    def status(self) -> RunRecord:
        return self._store.get(self.id, self.session_id)

    def result(self, timeout: float = 60.0) -> str:
        """Wait (no polling) for the answer; raise ``RunError`` or ``RunTimeout``."""
        record = self._store.wait(self.id, timeout, self.session_id)
        if record.state is RunState.SUCCEEDED:
            return record.result or ""
        raise ERRORS[record.state](record)

    def cancel(self) -> RunRecord:
        return self._store.cancel(self.id, self.session_id)

    def approve(self, arguments: dict[str, Any] | None = None) -> RunRecord:
        """Let the tool call this ``waiting`` run waits on run, with ``arguments`` instead
        of the model's if given (they must match the tool's schema); the run resumes.
        ``NotWaiting`` if it is not waiting; ``InvalidInput`` naming a bad argument."""
        return self._store.decide(
            self.id, approved=True, arguments=arguments, session_id=self.session_id
        )

    def deny(self, reason: str = "") -> RunRecord:
        """Refuse the tool call this ``waiting`` run waits on: the model is told it was
        denied (with ``reason``) as the tool's result, and the run resumes."""
        return self._store.decide(
            self.id, approved=False, reason=reason or None, session_id=self.session_id
        )

    def events(self, after: str | None = None, timeout: float | None = None) -> Iterator[RunEvent]:
        """The run's events after the event id ``after`` (from the start if None), in
        order, as they happen (blocking on Redis, no polling), ending with its terminal
        event, or when ``timeout`` (s) passes."""
        for event in self._store.events(
            self.id, after, timeout=timeout, session_id=self.session_id
        ):
            if event is not None:
                yield event

    def text(self, timeout: float | None = None) -> Iterator[str]:
        """The answer's text as the model generates it: each ``text.delta``'s text, in
        order, as it comes, ending with the run (or when ``timeout`` (s) passes).

        The answer is the last model step's text of the last attempt, and this yields
        every delta at once rather than wait to know which those are: a turn that called
        tools also yields the text of its earlier steps, and a retried attempt generates
        its text again, so a new attempt may repeat text. For exactly the answer, use
        ``result()``; to start over at each attempt, follow ``events()`` (``turn.started``).
        """
        for event in self.events(timeout=timeout):
            if event.type is EventType.TEXT:
                yield event.data["text"]

    def __repr__(self) -> str:
        return f"Run(id={self.id!r}, session_id={self.session_id!r})"


class Producer:
    """Submits runs keyed by session id. Returns as soon as the run is durably accepted."""

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        settings: Settings | None = None,
        agents: Iterable[str] | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        self.store = RunStore.from_url(redis_url or self.settings.redis_url, self.settings)
        self._agents = frozenset(agents) if agents is not None else None
        self._live: frozenset[str] = frozenset()
        self._live_read_at = -math.inf

    @property
    def agents(self) -> frozenset[str]:
        """Agent names live workers advertise (``fence.runs.advertised``; read at most
        every ``AGENTS_CACHE_S``), or the fixed set given to the constructor."""
        if self._agents is not None:
            return self._agents
        if time.monotonic() - self._live_read_at > AGENTS_CACHE_S:
            live = advertised.live_agents(self.store.redis)
            self._live = frozenset(name for names in live.values() for name in names)
            self._live_read_at = time.monotonic()
        return self._live

    def sessions(
        self, state: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> Page[SessionSummary]:
        """Sessions, most recently active first (``state``: ``busy``, ``idle`` or
        ``waiting`` to list only those); ``page.next_cursor`` gives the next page."""
        return self.store.sessions(state, limit, cursor)

    def runs(self, session_id: str, limit: int = 50, cursor: str | None = None) -> Page[RunRecord]:
        """A session's runs, newest first, finished ones until their records expire."""
        return self.store.runs(session_id, limit, cursor)

    def check_agent(self, agent: str | None) -> str:
        """The agent a run would get (``None``: the default); ``InvalidInput`` naming
        ``agent`` if live workers advertise agents and not this one. With no live worker
        it is accepted (it waits for one), unless ``FENCE_REQUIRE_LIVE_AGENT`` is on."""
        name = self.settings.default_agent if agent is None else agent
        known = self.agents
        if not known and self.settings.require_live_agent:
            rule = f"no live worker runs agent {name!r} (FENCE_REQUIRE_LIVE_AGENT is on)"
            raise InvalidInput.at("agent", rule)
        if known and name not in known:
            names = ", ".join(sorted(known))
            raise InvalidInput.at("agent", f"unknown agent {name!r}; known: {names}")
        return name

    def submit(
        self,
        session_id: str,
        message: str,
        agent: str | None = None,
        idempotency_key: str | None = None,
        strategy: str | Strategy = Strategy.ENQUEUE,
        metadata: dict[str, Any] | None = None,
        webhook: str | None = None,
    ) -> Run:
        """Accept a run for ``session_id``. Bad input raises ``InvalidInput`` (a
        ``ValueError``): one ``field: rule`` line per bad field, nothing queued.

        ``webhook``: a URL the run's outcome is POSTed to, signed, when it ends; it must
        start with a ``FENCE_WEBHOOK_ALLOW`` prefix.

        A rejected double text (``strategy="reject"`` on a busy session) is
        still accepted and recorded: its handle's ``result()`` raises
        ``RunRejected``.
        """
        request = self.request(
            session_id, message, agent, idempotency_key, strategy, metadata, webhook
        )
        submission = self.store.submit(request)
        for run_id in submission.to_publish:
            try:
                self.store.publish(request.session_id, run_id)
            except Exception:  # accepted already: the sweeper publishes it later
                log_lost_publish(request.session_id, run_id)
        return self.handle(submission, request.session_id)

    def request(
        self,
        session_id: str,
        message: str,
        agent: str | None = None,
        idempotency_key: str | None = None,
        strategy: str | Strategy = Strategy.ENQUEUE,
        metadata: dict[str, Any] | None = None,
        webhook: str | None = None,
    ) -> RunRequest:
        """The request ``submit`` sends, checked (``InvalidInput`` naming the field), for
        a caller that submits it itself (the gateway, on ``AsyncRunStore``)."""
        request = RunRequest(
            session_id=session_id,
            message=message,
            agent=self.settings.default_agent if agent is None else agent,
            idempotency_key=idempotency_key,
            strategy=strategy,
            metadata=metadata or {},
            webhook=webhook,
        )
        self.check_agent(request.agent)
        return request

    def handle(self, submission: Submission, session_id: str) -> Run:
        """A handle on the run a submit accepted."""
        return Run(
            self.store,
            submission.run_id,
            session_id,
            submission.state,
            position=submission.position,
            duplicate=submission.duplicate,
        )

    def run(self, run_id: str) -> Run:
        """A handle on an existing run (raises ``RunNotFound``)."""
        record = self.store.get(run_id)
        return Run(self.store, run_id, record.session_id, record.state)

    def session(self, session_id: str) -> SessionInfo:
        return self.store.session(session_id)


def log_lost_publish(session_id: str, run_id: str) -> None:
    """A run accepted but not published: the sweeper publishes it after a stall period."""
    log.exception(
        "publishing an accepted run failed; the sweeper will re-dispatch it",
        extra={"session_id": session_id, "run_id": run_id},
    )
