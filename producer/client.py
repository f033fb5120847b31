"""The Python client other services use to enqueue agent runs and follow them."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from fence.runs import (
    RunRecord,
    RunRequest,
    RunState,
    RunStore,
    SessionInfo,
    Strategy,
    load_registry,
)
from fence.settings import Settings, get_settings

log = logging.getLogger(__name__)


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
    """A handle on one accepted run."""

    def __init__(self, store: RunStore, run_id: str, session_id: str, position: int = -1) -> None:
        self._store = store
        self.id = run_id
        self.session_id = session_id
        self.position = position
        """Runs ahead of this one when it was accepted (-1: not queued)."""

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
        dispatch: Callable[[str, str], None] | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        self.store = RunStore.from_url(redis_url or self.settings.redis_url, self.settings)
        self._agents = frozenset(agents) if agents is not None else None
        self._dispatch = dispatch

    @property
    def agents(self) -> frozenset[str]:
        """Agent names workers can run (from ``FENCE_AGENTS`` unless given)."""
        if self._agents is None:
            self._agents = frozenset(load_registry(self.settings.agents))
        return self._agents

    def check_agent(self, agent: str | None) -> str:
        """The agent a run would get (``None``: the default); ``ValueError`` naming
        ``agent`` unless workers can run it."""
        name = self.settings.default_agent if agent is None else agent
        if name not in self.agents:
            raise ValueError(
                f"agent: unknown agent {name!r}; known: {', '.join(sorted(self.agents))}"
            )
        return name

    def submit(
        self,
        session_id: str,
        message: str,
        agent: str | None = None,
        idempotency_key: str | None = None,
        strategy: str | Strategy = Strategy.ENQUEUE,
        metadata: dict[str, Any] | None = None,
    ) -> Run:
        """Accept a run for ``session_id``. Bad input raises ``InvalidInput`` (a
        ``ValueError``): one ``field: rule`` line per bad field, nothing queued.

        A rejected double text (``strategy="reject"`` on a busy session) is
        still accepted and recorded: its handle's ``result()`` raises
        ``RunRejected``.
        """
        request = RunRequest(
            session_id=session_id,
            message=message,
            agent=self.settings.default_agent if agent is None else agent,
            idempotency_key=idempotency_key,
            strategy=strategy,
            metadata=metadata or {},
        )
        self.check_agent(request.agent)
        submission = self.store.submit(request)
        if submission.dispatch:
            try:
                self._publish(request.session_id, submission.run_id)
            except Exception:  # accepted already: the sweeper publishes it later
                log.exception(
                    "publishing an accepted run failed; the sweeper will re-dispatch it",
                    extra={"session_id": request.session_id, "run_id": submission.run_id},
                )
        return Run(self.store, submission.run_id, request.session_id, submission.position)

    def run(self, run_id: str) -> Run:
        """A handle on an existing run (raises ``RunNotFound``)."""
        return Run(self.store, run_id, self.store.session_of(run_id))

    def session(self, session_id: str) -> SessionInfo:
        return self.store.session(session_id)

    def _publish(self, session_id: str, run_id: str) -> None:
        if self._dispatch is None:
            from workers.app import create_app
            from workers.dispatch import dispatcher

            self._dispatch = dispatcher(create_app(self.settings))
        self._dispatch(session_id, run_id)
