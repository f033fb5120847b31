"""``AsyncFenceClient``: ``FenceClient`` for asyncio (and trio), on ``httpx.AsyncClient``:
the same calls, the same retries, the same results (both execute ``calls``' plans)."""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator
from typing import Any, TypeVar

import anyio
import httpx

from fence.runs import Strategy
from producer.api_models import (
    HistoryPage,
    RunEventView,
    RunsPage,
    RunView,
    SessionsPage,
    SessionView,
    SubmitResponse,
)
from producer.http import calls
from producer.http.errors import api_error

T = TypeVar("T")


class AsyncFenceClient:
    """A client of the gateway's ``/v1`` API for async code; see ``FenceClient``.

    ``url`` and ``token`` default to ``FENCE_API_URL`` and ``FENCE_API_TOKEN``.
    Connection errors and 5xx answers are tried again up to ``retries`` times, waiting
    ``backoff`` seconds, then twice as long each time (a 503's ``Retry-After`` is
    honoured); a submit retried keeps its idempotency key, so it is one run. Error
    answers raise ``FenceAPIError`` subclasses carrying the API's ``code`` and ``field``.
    ``transport`` is passed to httpx (a proxy-aware or test transport).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.target = calls.target(url, token, os.environ)
        self.policy = calls.RetryPolicy(retries=retries, backoff_s=backoff)
        self.timeout = httpx.Timeout(timeout)
        self._http = httpx.AsyncClient(
            base_url=self.target.url,
            headers=self.target.headers,
            timeout=self.timeout,
            transport=transport,
        )

    async def submit(
        self,
        session_id: str,
        message: str,
        *,
        agent: str | None = None,
        idempotency_key: str | None = None,
        strategy: str | Strategy = Strategy.ENQUEUE,
        metadata: dict[str, Any] | None = None,
        webhook: str | None = None,
    ) -> SubmitResponse:
        """Accept a run for ``session_id`` (durable once this returns). ``Rejected`` if
        the session is busy and ``strategy`` is reject; ``InvalidRequest`` naming the
        field of bad input; ``IdempotencyConflict`` for a key used with another request."""
        call = calls.submit(
            session_id,
            message,
            agent=agent,
            idempotency_key=idempotency_key,
            strategy=strategy,
            metadata=metadata,
            webhook=webhook,
        )
        return await self._run(call)

    async def status(self, run_id: str) -> RunView:
        return await self._run(calls.status(run_id))

    async def wait(self, run_id: str, timeout: float | None = 60.0) -> RunView:
        """The run once it has ended (``timeout`` None: however long that takes), by
        long polls of at most 60 s; ``WaitTimeout`` (with ``.run``) if it has not."""
        waiting = calls.Waiting(run_id, timeout)
        while True:
            view = await self._run(waiting.call())
            if waiting.ended(view):
                return view

    async def cancel(self, run_id: str) -> RunView:
        """A queued run leaves the queue; a running one stops at its next step."""
        return await self._run(calls.cancel(run_id))

    async def approve(self, run_id: str, arguments: dict[str, Any] | None = None) -> RunView:
        """Run the tool call a waiting run waits on (with ``arguments`` instead of the
        model's, if given); ``NotWaiting`` if it waits for none."""
        return await self._run(calls.decide(run_id, True, arguments=arguments))

    async def deny(self, run_id: str, reason: str | None = None) -> RunView:
        """Refuse the tool call a waiting run waits on; ``reason`` is told to the model."""
        return await self._run(calls.decide(run_id, False, reason=reason))

    async def session(self, session_id: str) -> SessionView:
        return await self._run(calls.session(session_id))

    async def sessions(
        self, state: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> SessionsPage:
        """Sessions, most recently active first; ``next_cursor`` gives the next page."""
        return await self._run(calls.sessions(state, limit, cursor))

    async def runs(self, session_id: str, limit: int = 50, cursor: str | None = None) -> RunsPage:
        """A session's runs, newest first."""
        return await self._run(calls.runs(session_id, limit, cursor))

    async def history(
        self, session_id: str, limit: int = 50, before_seq: int | None = None
    ) -> HistoryPage:
        """A page of history, newest first; ``next_before_seq`` gives the older page."""
        return await self._run(calls.history(session_id, limit, before_seq))

    async def events(
        self, run_id: str, after: str | None = None, *, timeout: float | None = None
    ) -> AsyncGenerator[RunEventView, None]:
        """The run's events after the event id ``after`` (from the start if None), as
        they happen, until its ``run.finished`` (or ``timeout`` seconds, checked as
        events and keep-alives come). A stream that breaks off is resumed after the
        last event seen (``Last-Event-ID``): none is lost or repeated. To stop early,
        iterate it in ``contextlib.aclosing(...)``, which hangs up at once."""
        follow = calls.EventFollow(run_id, after, timeout)
        attempts = calls.Attempts(self.policy, True, self.target.where)
        while not follow.over:
            call = follow.call(self.timeout)
            try:
                async with self._http.stream(
                    call.method, call.path, headers=call.headers, timeout=call.timeout(self.timeout)
                ) as response:
                    if response.status_code != 200:
                        body = await response.aread()
                        delay = attempts.after_status(response.status_code, response.headers)
                        if delay is None:
                            raise api_error(response.status_code, body)
                        await anyio.sleep(delay)
                        continue
                    async for line in response.aiter_lines():
                        event = follow.feed(line)
                        if event is not None:
                            attempts.reset()
                            yield event
                        if follow.over:
                            return
            except httpx.TransportError as error:
                if follow.over:
                    return
                await anyio.sleep(attempts.after_error(error))
                continue
            if follow.over:
                return
            step = follow.after_end()
            if step == "stop":
                return
            if step == "check":
                view = await self._run(calls.status(run_id))
                if not follow.checked(view.state.terminal):
                    await anyio.sleep(attempts.after_early_end())

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncFenceClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AsyncFenceClient(url={self.target.where!r})"

    async def _run(self, call: calls.Call[T]) -> T:
        """Send ``call``, trying again as ``Attempts`` says; its result or its error."""
        attempts = calls.Attempts(self.policy, call.idempotent, self.target.where)
        while True:
            try:
                response = await self._http.request(
                    call.method,
                    call.path,
                    params=call.params,
                    json=call.json,
                    headers=call.headers,
                    timeout=call.timeout(self.timeout),
                )
            except httpx.TransportError as error:
                await anyio.sleep(attempts.after_error(error))
                continue
            delay = attempts.after_status(response.status_code, response.headers)
            if delay is None:
                return call.answer(response.status_code, response.content)
            await anyio.sleep(delay)
