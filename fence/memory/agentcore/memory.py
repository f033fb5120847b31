"""AgentCoreMemory: the backend's requests, writes and reads (see the package notes)."""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.client import BaseClient
from botocore.exceptions import BotoCoreError, ClientError

from fence.errors import FencedOutError, MemoryBackendError, StaleWriteError
from fence.memory import _aws
from fence.memory.agentcore.layout import (
    MAX_MESSAGES_PER_TURN,
    event_order,
    turn_metadata,
    turn_payload,
)
from fence.memory.agentcore.listing import NOT_TURNS, EventPages
from fence.memory.agentcore.state import SessionState
from fence.memory.agentcore.strategies import ACTOR_NAMESPACE_PATH, expand
from fence.memory.agentcore.throttling import count_throttles, retry_throttled
from fence.memory.agentcore.window import read_window
from fence.memory.base import BaseMemory, Window
from fence.memory.long_term import MemoryRecord
from fence.messages import Message
from fence.settings import get_settings
from fence.validation import clip

logger = logging.getLogger(__name__)

MAX_WRITE_ATTEMPTS = 30
DEFAULT_PAGE_SIZE = 100
MAX_SEARCH_QUERY_CHARS = 10_000
ACTOR_ID_PATTERN = re.compile(
    r"^[a-zA-Z0-9][a-zA-Z0-9\-_/]*(?::[a-zA-Z0-9\-_/]+)*[a-zA-Z0-9\-_/]*$"
)
AGENTCORE_SESSION_PATTERN = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9\-_]{0,99}$")
MEMORY_ID_PATTERN = re.compile(
    r"^(arn:(aws|aws-cn|aws-us-gov):bedrock-agentcore:[a-z0-9-]+:[0-9]{12}:memory/)?"
    r"[a-zA-Z][a-zA-Z0-9\-_]{0,99}-[a-zA-Z0-9]{10}$"
)
NOT_FOUND_HINT = (
    "create it with `python -m fence.memory.aws_setup agentcore --name fence_memory` "
    "and set FENCE_AGENTCORE_MEMORY_ID to the id it prints"
)


def agentcore_session_id(session_id: str) -> str:
    """The AgentCore session id for a fence session id.

    AgentCore allows 1-100 characters of letters, digits, ``-`` and ``_``;
    fence also allows ``. : @`` and 128 characters. Ids AgentCore accepts are
    used as they are; others map to ``fence-`` plus a SHA-256 prefix.
    """
    if AGENTCORE_SESSION_PATTERN.fullmatch(session_id):
        return session_id
    return "fence-" + hashlib.sha256(session_id.encode()).hexdigest()[:40]


class AgentCoreMemory(BaseMemory):
    """A session stored as AgentCore Memory events (see the package notes on limits)."""

    _clock_lock = threading.Lock()
    _last_ns = 0

    def __init__(
        self,
        agent_id: str,
        session_id: str,
        *,
        memory_id: str | None = None,
        actor_id: str | None = None,
        region: str | None = None,
        endpoint_url: str | None = None,
        boto3_session: boto3.session.Session | None = None,
        client: BaseClient | None = None,
        page_size: int | None = DEFAULT_PAGE_SIZE,
    ) -> None:
        """``page_size`` is ``maxResults`` per ``ListEvents`` (1-100); None lets the
        service choose. moto as shipped cuts at ``maxResults`` instead of paging:
        with it, use None."""
        super().__init__(session_id)
        if not isinstance(agent_id, str) or not agent_id:
            raise ValueError(f"agent_id: must be a non-empty string (got {clip(repr(agent_id))})")
        actor = agent_id if actor_id is None else actor_id
        field_name = "agent_id" if actor_id is None else "actor_id"
        if not isinstance(actor, str) or len(actor) > 255 or not ACTOR_ID_PATTERN.fullmatch(actor):
            raise ValueError(
                f"{field_name}: AgentCore actor ids are 1-255 characters of letters, digits, "
                "- _ / and : between parts, starting with a letter or digit "
                f"(got {clip(repr(actor))})"
            )
        memory_id = memory_id or get_settings().agentcore_memory_id
        if not memory_id:
            raise ValueError(
                "memory_id: no AgentCore memory configured; pass memory_id=... or set "
                "FENCE_AGENTCORE_MEMORY_ID (create one with "
                "`python -m fence.memory.aws_setup agentcore --name fence_memory`)"
            )
        if not MEMORY_ID_PATTERN.fullmatch(memory_id):
            raise ValueError(
                "memory_id: must look like '<name>-<10 letters or digits>' or its ARN "
                f"(got {clip(repr(memory_id), 120)})"
            )
        if page_size is not None and (
            isinstance(page_size, bool)
            or not isinstance(page_size, int)
            or not 1 <= page_size <= 100
        ):
            raise ValueError(f"page_size: must be None or 1-100 (got {page_size!r})")
        self.agent_id = agent_id
        self.actor_id = actor
        self.memory_id = memory_id
        self.page_size = page_size
        self.agentcore_session_id = agentcore_session_id(self.session_id)
        self._what = f"AgentCore memory {memory_id!r}"
        self._client = _aws.make_client(
            "bedrock-agentcore",
            what=self._what,
            client=client,
            region=region,
            endpoint_url=endpoint_url,
            boto3_session=boto3_session,
        )
        count_throttles(self._client)
        self._events = EventPages(
            lambda **params: self._call("list_events", **params), self._where(), page_size
        )

    @property
    def client(self) -> BaseClient:
        """The boto3 ``bedrock-agentcore`` client in use."""
        return self._client

    # -- requests -------------------------------------------------------------

    def _call(self, operation: str, *, retry_throttles: bool = False, **params: Any) -> Any:
        """``client.<operation>(memoryId=..., **params)``; AWS errors become fence errors.

        With ``retry_throttles`` a throttled request is retried past botocore's
        own retries (see ``fence.memory.agentcore.throttling``).
        """

        def request() -> Any:
            return getattr(self._client, operation)(memoryId=self.memory_id, **params)

        try:
            return retry_throttled(request) if retry_throttles else request()
        except (ClientError, BotoCoreError) as exc:
            raise _aws.translate(
                exc,
                what=self._what,
                action=operation,
                not_found=NOT_FOUND_HINT,
                region=self._client.meta.region_name,
            ) from exc

    def _where(self) -> dict[str, str]:
        return {"actorId": self.actor_id, "sessionId": self.agentcore_session_id}

    @classmethod
    def _now_ns(cls) -> int:
        """Nanoseconds, strictly increasing within this process."""
        with cls._clock_lock:
            cls._last_ns = max(time.time_ns(), cls._last_ns + 1)
            return cls._last_ns

    def _create(
        self, payload: list[dict[str, Any]], metadata: dict[str, str], client_token: str
    ) -> str:
        response = self._call(
            "create_event",
            retry_throttles=True,
            **self._where(),
            eventTimestamp=datetime.now(UTC),
            payload=payload,
            metadata={key: {"stringValue": value} for key, value in metadata.items()},
            clientToken=client_token,
        )
        return response["event"]["eventId"]

    def _delete(self, event_id: str) -> None:
        self._call("delete_event", **self._where(), eventId=event_id)

    def _load(self, payloads: bool = True) -> SessionState:
        """Read the whole session. Without ``payloads`` only the metadata is read:
        enough for seqs, turn ids and the clear watermark, and a smaller response."""
        return SessionState.of(self._events.all(payloads=payloads))

    def _client_token(self, turn: str, index: int, seq: int, attempt: int) -> str:
        """Same claim, same token: the service stores a retried request once. The
        attempt is part of it: a claim retried after yielding (and deleting its
        event) must not be answered with the deleted event."""
        parts = [self.memory_id, self.actor_id, self.agentcore_session_id, turn]
        material = "|".join([*parts, str(index), str(seq), str(attempt)])
        return hashlib.sha256(material.encode()).hexdigest()

    # -- writes ---------------------------------------------------------------

    def _append(
        self,
        messages: list[Message],
        turn_id: str | None,
        expected_last_seq: int | None,
        fence: int | None,
    ) -> bool:
        if len(messages) > MAX_MESSAGES_PER_TURN:
            raise ValueError(
                f"messages: a turn holds at most {MAX_MESSAGES_PER_TURN} messages on AgentCore "
                f"(an event holds 100 payloads: one per message and Fence's own); "
                f"got {len(messages)}"
            )
        payload = turn_payload(messages)
        writer = turn_id or f"append-{uuid.uuid4().hex}"
        for attempt in range(MAX_WRITE_ATTEMPTS):
            state = self._load(payloads=False)
            if turn_id is not None and any(t.turn_id == turn_id for t in state.live_turns):
                return False
            if fence is not None and state.fence > fence:
                raise FencedOutError.newer(self.session_id, fence, state.fence)
            last = state.last_seq
            if expected_last_seq is not None and expected_last_seq != last:
                raise StaleWriteError.moved_on(self.session_id, expected_last_seq, last)
            first, claimed_last = last + 1, last + len(messages)
            metadata = turn_metadata(first, claimed_last, turn_id, fence)
            ours = self._create(payload, metadata, self._client_token(writer, 0, first, attempt))
            outcome = self._verify(ours, first, claimed_last, turn_id)
            if outcome == "kept":
                return True
            self._delete(ours)
            if outcome == "duplicate":
                return False
            if outcome == "fenced":
                raise FencedOutError.newer(self.session_id, fence or 0, state.fence)
            if expected_last_seq is not None:
                raise StaleWriteError.moved_on(self.session_id, expected_last_seq, first)
            logger.debug(
                "session_id=%s seq %d claimed by another writer; retrying (attempt %d)",
                self.session_id,
                first,
                attempt + 1,
            )
            _aws.backoff(attempt, base=0.03, cap=1.0)
        raise MemoryBackendError(
            f"{self._what}: gave up appending to session {self.session_id!r} after "
            f"{MAX_WRITE_ATTEMPTS} attempts: too many concurrent writers; nothing was written"
        )

    def _verify(self, ours: str, first: int, last: int, turn_id: str | None) -> str:
        """After creating ``ours``: "kept", "fenced" (a newer holder came first),
        "conflict" (yield the seq) or "duplicate"."""
        mine = (first, event_order(ours))
        state = self._load(payloads=False)
        for turn in state.turns:
            if turn.event_id == ours:
                if state.fenced_out(turn):
                    return "fenced"
                continue
            if state.fenced_out(turn):
                continue
            if turn.first <= last and first <= turn.last:
                return "conflict"
            earlier = (turn.first, event_order(turn.event_id)) < mine
            if turn_id is not None and turn.turn_id == turn_id and earlier:
                return "duplicate"
        return "kept"

    def _claim_fence(self, token: int) -> None:
        seen = self._load(payloads=False).fence
        if seen > token:
            raise FencedOutError.newer(self.session_id, token, seen)
        self._create(
            [{"blob": {"fence": "fence", "token": token}}],
            {"fence_kind": "fence", "fence_token": str(token)},
            uuid.uuid4().hex,
        )

    def _set_system(self, text: str) -> None:
        at = self._now_ns()
        self._create(
            [{"blob": {"fence": "system", "text": text}}],
            {"fence_kind": "system", "fence_at": str(at)},
            uuid.uuid4().hex,
        )

    def _clear(self) -> None:
        cleared = self._load(payloads=False).last_seq
        self._create(
            [{"blob": {"fence": "clear", "cleared_seq": cleared}}],
            {"fence_kind": "clear", "fence_seq": str(cleared), "fence_at": str(self._now_ns())},
            uuid.uuid4().hex,
        )

    # -- reads ----------------------------------------------------------------

    def _get_system(self) -> str | None:
        return SessionState.of(self._events.all(payloads=True, only=NOT_TURNS)).system

    def _has_turn(self, turn_id: str) -> bool:
        return any(t.turn_id == turn_id for t in self._load(payloads=False).live_turns)

    def _read_window(self, max_tokens: int | None, at_least_one: bool = False) -> Window:
        return read_window(self._events, max_tokens, at_least_one)

    def _read_all(self) -> list[Message]:
        return read_window(self._events, None, False).messages

    # -- long-term memory -------------------------------------------------------

    def search(
        self, query: str, *, namespace: str | None = None, top_k: int = 5
    ) -> list[MemoryRecord]:
        """The long-term records AgentCore extracted that best match ``query``, best first.

        One ``RetrieveMemoryRecords`` call. Without ``namespace`` it searches
        everything under ``/actors/<actor id>/`` (where the strategies of
        ``aws_setup agentcore`` write: facts, preferences, every session's
        summary); a ``namespace`` is matched exactly, with ``{actorId}`` and
        ``{sessionId}`` filled in with this memory's. The query's first 10,000
        characters are sent (the service's limit).
        """
        if not isinstance(query, str) or not query.strip():
            raise ValueError(f"query: must be a non-empty string (got {clip(repr(query), 40)})")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= 100:
            raise ValueError(f"top_k: must be an integer from 1 to 100 (got {top_k!r})")
        where = {"actor_id": self.actor_id, "session_id": self.agentcore_session_id}
        if namespace is None:
            scope = {"namespacePath": expand(ACTOR_NAMESPACE_PATH, **where)}
        elif isinstance(namespace, str) and namespace:
            scope = {"namespace": expand(namespace, **where)}
        else:
            raise ValueError(f"namespace: must be None or a non-empty string (got {namespace!r})")
        response = self._call(
            "retrieve_memory_records",
            **scope,
            searchCriteria={"searchQuery": query[:MAX_SEARCH_QUERY_CHARS], "topK": top_k},
            maxResults=top_k,
        )
        return [
            MemoryRecord(
                text=str((summary.get("content") or {}).get("text", "")),
                score=summary.get("score"),
                namespace=next(iter(summary.get("namespaces") or []), None),
                record_id=summary.get("memoryRecordId"),
            )
            for summary in response.get("memoryRecordSummaries", [])[:top_k]
        ]

    # -- maintenance ----------------------------------------------------------

    def delete_cleared_events(self) -> int:
        """Delete Fence's events hidden by ``clear()`` and superseded prompts; returns
        how many.

        One ``DeleteEvent`` per event. Events other tools wrote are never
        deleted. Forgets the turn ids of deleted turns: run it only when no
        retry of those turns can arrive any more.
        """
        state = self._load(payloads=False)
        doomed = [t.event_id for t in state.turns if t.last <= state.cleared_seq]
        doomed += [event_id for _, event_id, _ in sorted(state.systems)[:-1]]
        doomed += [event_id for _, event_id, _ in sorted(state.clears)[:-1]]
        doomed += [event_id for _, _, event_id in sorted(state.claims)[:-1]]
        for event_id in doomed:
            self._delete(event_id)
        return len(doomed)

    def __repr__(self) -> str:
        return (
            f"AgentCoreMemory(agent_id={self.agent_id!r}, session_id={self.session_id!r}, "
            f"memory_id={self.memory_id!r})"
        )
