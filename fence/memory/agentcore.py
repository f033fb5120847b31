"""AgentCoreMemory: one session's history as Amazon Bedrock AgentCore Memory events.

Uses the ``bedrock-agentcore`` data plane: ``create_event``, ``list_events``
and ``delete_event`` on (memory id, actor id, session id). The service has no
transaction, no conditional write and no range read, and ``list_events``
returns events newest first with millisecond timestamps that tie. What this
backend does about each, and what it costs:

Events
    A turn is ONE event whose payload holds one ``blob`` per message (the full
    ``Message.to_record()`` as JSON, with its ``seq`` and turn id), so tool
    calls and results survive and a turn lands all at once or not at all. An
    event holds at most 100 payloads: a turn holds at most
    ``MAX_MESSAGES_PER_TURN`` (100) messages. Event metadata carries
    ``fence_kind`` (turn, system, clear or fence), ``fence_seq`` / ``fence_last``
    (the turn's seq range), ``fence_turn`` (its turn id) and ``fence_token``
    (the fencing token of a fenced commit or claim), so seq claims
    and turn ids are read without payloads. The system prompt is an event of
    kind ``system`` (the newest wins, by a per-process monotonic nanosecond
    clock ``fence_at``, then event id); ``clear()`` writes an event of kind
    ``clear`` holding a watermark. Events without ``fence_kind`` (written by
    other tools) are ignored. Payloads are ``blob`` s, which AgentCore's
    long-term extraction strategies do not read.

Order
    By our own ``seq``, never by the service's order: every read follows
    ``nextToken`` to the end and sorts by (seq, event id). Pages hold
    ``page_size`` events (``maxResults``, 100 by default). Reads therefore
    cost ceil(events / page_size) ``ListEvents`` calls: one event per turn,
    not per message, but still proportional to the session. Prefer
    ``DynamoDBMemory`` for very long sessions.

Allocating seq (no conditional writes)
    A writer lists the session, takes ``last_seq + 1`` and creates its event,
    then lists again to verify. If another event claims an overlapping seq
    range, the writer deletes its own event and retries with jittered backoff
    (or, with ``expected_last_seq``, raises ``StaleWriteError``): a writer that
    sees a rival always yields, so two writers never both keep a seq; if both
    yield, both retry. A seq given up that way may stay unused: seqs are
    unique and increasing, not always consecutive (on DynamoDB they are).
    If the same turn id appears in an earlier event, the
    writer deletes its own and returns False. This relies on ``ListEvents``
    showing an event once ``CreateEvent`` returned; if it ever did not, or a
    process died between create and verify, two events may share a seq:
    nothing is lost, and every reader orders them the same way (by event
    id). Fencing (``expected_last_seq``) is therefore check-then-write plus
    this verification, not an atomic compare-and-set: the runtime's
    per-session lease is what keeps writers apart. An append costs 2 reads of
    the session's metadata plus 1 ``CreateEvent`` (plus 1 ``DeleteEvent`` on
    conflict).

Fencing (no conditional writes, so as close as the API allows)
    ``claim_fence(token)`` writes an event of kind ``fence`` holding the
    token; a fenced commit carries its token in ``fence_token``. A fenced
    commit is refused before it writes when any claim or fenced turn holds a
    larger token. After writing, the verification read deletes our event
    (and raises ``FencedOutError``) if a larger token's claim or turn came
    before it in the service's event order; every reader, ``has_turn``
    included, ignores such an event, so a turn fenced out this way is never
    seen even before its writer deletes it (or if the writer died first).
    What remains: this relies on event ids ordering by creation time (the
    ``<epoch ms>#...`` ids seen so far; events created in the same
    millisecond are ordered by the rest of the id, which need not follow
    creation), and an unfenced library write is never refused.

Idempotency
    Each ``CreateEvent`` sends a ``clientToken`` derived from the memory,
    actor, session, turn id, index of the turn's first message, claimed seq
    and attempt number, so a retried request (botocore's retry, or a second
    delivery of the turn making the same claim) is stored once by the
    service, while a claim retried after yielding is not mistaken for the
    event it deleted. A turn id is recorded in its event, so a turn
    committed again later returns False.

Clear
    ``clear()`` costs one read of the session and one ``CreateEvent``: reads
    then ignore seqs at or below the watermark. The service has no bulk
    delete, so old events stay until the memory's event expiry
    (``eventExpiryDuration``, set at creation) removes them or
    ``delete_cleared_events()`` deletes them one ``DeleteEvent`` at a time.
    Deleting a turn's event forgets its turn id, so only do that once no
    retry of those turns can still arrive.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.client import BaseClient

from fence.errors import FencedOutError, MemoryBackendError, StaleWriteError
from fence.memory import _aws
from fence.memory.base import BaseMemory, Window, take_window
from fence.messages import Message
from fence.settings import get_settings
from fence.validation import clip

logger = logging.getLogger(__name__)

MAX_MESSAGES_PER_TURN = 100
"""An event holds at most 100 payload entries, one per message."""
MAX_WRITE_ATTEMPTS = 30
DEFAULT_PAGE_SIZE = 100
ACTOR_ID_PATTERN = re.compile(
    r"^[a-zA-Z0-9][a-zA-Z0-9\-_/]*(?::[a-zA-Z0-9\-_/]+)*[a-zA-Z0-9\-_/]*$"
)
AGENTCORE_SESSION_PATTERN = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9\-_]{0,99}$")
MEMORY_ID_PATTERN = re.compile(
    r"^(arn:(aws|aws-cn|aws-us-gov):bedrock-agentcore:[a-z0-9-]+:[0-9]{12}:memory/)?"
    r"[a-zA-Z][a-zA-Z0-9\-_]{0,99}-[a-zA-Z0-9]{10}$"
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


def _event_order(event_id: str) -> tuple[int, str]:
    """Event ids look like ``<epoch ms>#<hex>``; order by time, then the hex."""
    millis, _, rest = event_id.partition("#")
    return (int(millis) if millis.isdigit() else 0, rest)


def _decode(blob: dict[str, Any]) -> Message:
    """The message a ``message`` blob holds."""
    return Message.from_record(
        json.loads(blob["record"]), seq=int(blob["seq"]), turn_id=blob.get("turn_id")
    )


@dataclass
class _TurnEvent:
    event_id: str
    first: int
    last: int
    turn_id: str | None
    blobs: list[dict[str, Any]]
    """The event's ``message`` blobs, decoded only when read (none without payloads)."""
    fence: int = 0
    """The fencing token the turn was committed with (0: an unfenced write)."""


@dataclass
class _State:
    """One full read of the session."""

    turns: list[_TurnEvent] = field(default_factory=list)
    systems: list[tuple[tuple[int, tuple[int, str]], str, str]] = field(default_factory=list)
    """(order key, event id, text) of each system prompt event; the greatest key wins."""
    clears: list[tuple[tuple[int, int, tuple[int, str]], str]] = field(default_factory=list)
    """((cleared seq, at, event order), event id) of each clear event."""
    claims: list[tuple[int, tuple[int, str], str]] = field(default_factory=list)
    """(token, event order, event id) of each fence claim."""

    def __post_init__(self) -> None:
        self._markers: list[tuple[int, tuple[int, str]]] | None = None

    @property
    def fence(self) -> int:
        """The largest token any claim or fenced turn holds (0: none)."""
        return max([0, *(token for token, _, _ in self.claims), *(t.fence for t in self.turns)])

    def fenced_out(self, turn: _TurnEvent) -> bool:
        """Whether a larger token's claim or fenced turn precedes this fenced turn:
        it was written after a newer holder took over, and does not count."""
        if not turn.fence:
            return False
        if self._markers is None:
            self._markers = [(token, order) for token, order, _ in self.claims]
            self._markers += [(t.fence, _event_order(t.event_id)) for t in self.turns if t.fence]
        order = _event_order(turn.event_id)
        return any(token > turn.fence and at < order for token, at in self._markers)

    @property
    def live_turns(self) -> list[_TurnEvent]:
        return [t for t in self.turns if not self.fenced_out(t)]

    @property
    def system(self) -> str | None:
        return max(self.systems)[2] if self.systems else None

    @property
    def cleared_seq(self) -> int:
        return max(self.clears)[0][0] if self.clears else 0

    @property
    def last_seq(self) -> int:
        return max([self.cleared_seq, *(t.last for t in self.turns)])

    def visible_blobs(self) -> list[dict[str, Any]]:
        """The blobs of messages after the clear watermark, oldest first."""
        cleared = self.cleared_seq
        ordered = sorted(
            (
                (int(b["seq"]), _event_order(t.event_id), i, b)
                for t in self.live_turns
                for i, b in enumerate(t.blobs)
                if int(b["seq"]) > cleared
            ),
            key=lambda row: row[:3],
        )
        return [row[3] for row in ordered]


class AgentCoreMemory(BaseMemory):
    """A session stored as AgentCore Memory events (see the module notes on limits)."""

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
        service choose. Local emulators that truncate instead of paging (moto)
        need None."""
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

    @property
    def client(self) -> BaseClient:
        """The boto3 ``bedrock-agentcore`` client in use."""
        return self._client

    # -- requests -------------------------------------------------------------

    def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        return _aws.call(
            self._client,
            operation,
            what=self._what,
            not_found=(
                "create it with `python -m fence.memory.aws_setup agentcore --name fence_memory` "
                "and set FENCE_AGENTCORE_MEMORY_ID to the id it prints"
            ),
            memoryId=self.memory_id,
            **params,
        )

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
            **self._where(),
            eventTimestamp=datetime.now(UTC),
            payload=payload,
            metadata={key: {"stringValue": value} for key, value in metadata.items()},
            clientToken=client_token,
        )
        return response["event"]["eventId"]

    def _delete(self, event_id: str) -> None:
        self._call("delete_event", **self._where(), eventId=event_id)

    def _events(self, payloads: bool) -> list[dict[str, Any]]:
        """Every event of the session, following ``nextToken`` to the end."""
        events: list[dict[str, Any]] = []
        params: dict[str, Any] = {**self._where(), "includePayloads": payloads}
        if self.page_size is not None:
            params["maxResults"] = self.page_size
        while True:
            response = self._call("list_events", **params)
            events.extend(response.get("events", []))
            token = response.get("nextToken")
            if not token:
                return events
            params["nextToken"] = token

    def _load(self, payloads: bool = True) -> _State:
        """Read the whole session. Without ``payloads`` only the metadata is read:
        enough for seqs, turn ids and the clear watermark, and a smaller response."""
        state = _State()
        for event in self._events(payloads):
            meta = {k: v.get("stringValue", "") for k, v in (event.get("metadata") or {}).items()}
            kind = meta.get("fence_kind")
            event_id = event["eventId"]
            blobs = [
                p["blob"]
                for p in event.get("payload") or []
                if isinstance(p.get("blob"), dict) and "fence" in p["blob"]
            ]
            if kind == "turn":
                state.turns.append(
                    _TurnEvent(
                        event_id,
                        int(meta["fence_seq"]),
                        int(meta["fence_last"]),
                        meta.get("fence_turn"),
                        [b for b in blobs if b["fence"] == "message"],
                        int(meta.get("fence_token", "0")),
                    )
                )
            elif kind == "fence":
                state.claims.append((int(meta["fence_token"]), _event_order(event_id), event_id))
            elif kind == "system":
                key = (int(meta["fence_at"]), _event_order(event_id))
                text = next((b["text"] for b in blobs if b["fence"] == "system"), "")
                state.systems.append((key, event_id, text))
            elif kind == "clear":
                key = (int(meta["fence_seq"]), int(meta["fence_at"]), _event_order(event_id))
                state.clears.append((key, event_id))
        return state

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
                f"(an event holds 100 payloads); got {len(messages)}"
            )
        records = [json.dumps(m.to_record(), ensure_ascii=False) for m in messages]
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
            first, claimed_last = last + 1, last + len(records)
            turn = {"turn_id": turn_id} if turn_id is not None else {}
            payload = [
                {"blob": {"fence": "message", "seq": first + offset, "record": record, **turn}}
                for offset, record in enumerate(records)
            ]
            metadata = {
                "fence_kind": "turn",
                "fence_seq": str(first),
                "fence_last": str(claimed_last),
            }
            if turn_id is not None:
                metadata["fence_turn"] = turn_id
            if fence is not None:
                metadata["fence_token"] = str(fence)
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
        mine = (first, _event_order(ours))
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
            earlier = (turn.first, _event_order(turn.event_id)) < mine
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
        return self._load().system

    def _has_turn(self, turn_id: str) -> bool:
        return any(t.turn_id == turn_id for t in self._load(payloads=False).live_turns)

    def _read_window(self, max_tokens: int | None, at_least_one: bool = False) -> Window:
        state = self._load()
        newest_first = map(_decode, reversed(state.visible_blobs()))  # decodes what it keeps
        return take_window(
            newest_first, max_tokens, at_least_one, state.last_seq, system=state.system
        )

    def _read_all(self) -> list[Message]:
        return [_decode(blob) for blob in self._load().visible_blobs()]

    # -- maintenance ----------------------------------------------------------

    def delete_cleared_events(self) -> int:
        """Delete events hidden by ``clear()`` and superseded prompts; returns how many.

        One ``DeleteEvent`` per event. Forgets the turn ids of deleted turns:
        run it only when no retry of those turns can arrive any more.
        """
        state = self._load(payloads=False)
        doomed = [t.event_id for t in state.turns if t.last <= state.cleared_seq]
        doomed += [event_id for _, event_id, _ in sorted(state.systems)[:-1]]
        doomed += [event_id for _, event_id in sorted(state.clears)[:-1]]
        doomed += [event_id for _, _, event_id in sorted(state.claims)[:-1]]
        for event_id in doomed:
            self._delete(event_id)
        return len(doomed)

    def __repr__(self) -> str:
        return (
            f"AgentCoreMemory(agent_id={self.agent_id!r}, session_id={self.session_id!r}, "
            f"memory_id={self.memory_id!r})"
        )
