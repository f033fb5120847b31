"""The memory contract every backend speaks.

A memory is the history of one session: an optional system prompt plus an
ordered list of messages. Order is a per-session sequence number (``seq``)
assigned by the store when a message is written, never a wall clock.

Public methods validate their input and then call a small set of backend
primitives (the underscored abstract methods). A backend implements those
primitives and nothing else, so validation and semantics live here once.

``add_message(role="system", ...)`` appends a *system note* to the
conversation, in order, like any other message; ``clear()`` removes it with
the rest. The session's system prompt is separate: ``set_system_message``
sets it, ``get_system_message`` reads it, and ``clear()`` keeps it. So the
"summarize, clear, leave a system note" pattern keeps the original prompt.

Fencing tokens carry a lease holder's authority into storage: each session
keeps the newest token that has written to it (``commit_turn(fence=...)``)
or claimed it (``claim_fence``), and refuses a fenced write or claim with an
older one in the same atomic step as the write. A worker whose lease was
taken over therefore cannot land anything once the newer holder has claimed
or written, however late its request arrives (Kleppmann's fencing tokens).
Unfenced writes (``fence=None``: plain library use) neither check nor move
the fence.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from fence.messages import Message, Role, validate_session_id, validate_turn_id
from fence.validation import clip


def validate_fence(token: object) -> int:
    if isinstance(token, bool) or not isinstance(token, int) or token < 1:
        raise ValueError(f"fence: must be a positive integer token (got {clip(repr(token), 40)})")
    return token


@dataclass(frozen=True)
class Window:
    """The newest messages of a session that fit a token budget.

    ``last_seq`` is the sequence number of the newest message ever written to
    the session (0 if none), read in the same snapshot as ``messages``; pass it
    to ``commit_turn(expected_last_seq=...)`` to make a write conditional on the
    history not having moved since it was read. ``system`` is the session's
    system prompt, read with them: what a turn needs, in one read.
    """

    messages: list[Message]
    last_seq: int
    truncated: bool = False
    """True when older messages exist that did not fit the budget."""
    system: str | None = None

    @property
    def tokens(self) -> int:
        return sum(m.tokens or 0 for m in self.messages)


class BaseMemory(ABC):
    """One session's conversation history. Subclasses implement the primitives."""

    def __init__(self, session_id: str) -> None:
        self.session_id = validate_session_id(session_id)

    # -- public API ---------------------------------------------------------

    def add_message(
        self,
        role: str,
        content: str,
        meta: dict[str, Any] | None = None,
        **fields: Any,
    ) -> Message:
        """Append one message (``fields`` may carry tool_calls, tool_call_id, name).

        Raises ``ValueError`` naming the rule when the message is invalid;
        nothing is written then.
        """
        message = Message(role=role, content=content, meta=meta or {}, **fields)
        self._append([message], turn_id=None, expected_last_seq=None, fence=None)
        return message

    def add_user_message(self, content: str, meta: dict[str, Any] | None = None) -> Message:
        return self.add_message(Role.USER, content, meta)

    def add_assistant_message(self, content: str, meta: dict[str, Any] | None = None) -> Message:
        return self.add_message(Role.ASSISTANT, content, meta)

    def set_system_message(self, text: str) -> None:
        """Set or replace the session's system prompt (kept by ``clear()``)."""
        Message(role=Role.SYSTEM, content=text)
        self._set_system(text)

    def get_system_message(self) -> str | None:
        return self._get_system()

    def get_messages(self) -> list[Message]:
        """The whole conversation in order (system prompt not included)."""
        return self._read_all()

    def get_window(self, max_tokens: int | None = None) -> Window:
        """The newest messages whose tokens sum to at most ``max_tokens``.

        Reads newest first and stops at the first message that does not fit,
        so the cost follows the window, not the history. ``None`` means all.
        """
        if max_tokens is not None and (isinstance(max_tokens, bool) or max_tokens < 0):
            raise ValueError(f"max_tokens: must be a non-negative integer (got {max_tokens!r})")
        return self._read_window(max_tokens)

    def commit_turn(
        self,
        turn_id: str,
        messages: Sequence[Message],
        *,
        expected_last_seq: int | None = None,
        fence: int | None = None,
    ) -> bool:
        """Append ``messages`` atomically under ``turn_id``; idempotent.

        Returns True when written, False when ``turn_id`` was committed before
        (then nothing is written). With ``expected_last_seq`` the write happens
        only if the session's newest ``seq`` still equals it, else
        ``StaleWriteError`` is raised and nothing is written: a stale worker
        never overwrites newer history. With ``fence`` (a lease's fencing
        token) the write happens only if no larger token has written to or
        claimed the session, else ``FencedOutError`` is raised and nothing is
        written; a write that lands records its token.
        """
        validate_turn_id(turn_id)
        if fence is not None:
            validate_fence(fence)
        if not messages:
            raise ValueError("messages: a turn must contain at least one message")
        for index, message in enumerate(messages):
            if not isinstance(message, Message):
                raise ValueError(f"messages[{index}]: must be a fence Message")
        return self._append(
            list(messages), turn_id=turn_id, expected_last_seq=expected_last_seq, fence=fence
        )

    def claim_fence(self, token: int) -> None:
        """Make ``token`` the session's fence: from now on a fenced write or claim
        with an older token is refused. Raises ``FencedOutError`` (and changes
        nothing) if a larger token has already written or claimed.

        A worker that takes a run over claims before it decides anything, so
        the previous holder, however late, cannot commit the run's turn after
        the new holder ended it as failed or cancelled.
        """
        self._claim_fence(validate_fence(token))

    def has_turn(self, turn_id: str) -> bool:
        """Whether ``turn_id`` has been committed to this session."""
        return self._has_turn(validate_turn_id(turn_id))

    def clear(self) -> None:
        """Remove the conversation; keep the system prompt. Sequence numbers keep rising."""
        self._clear()

    def is_empty(self) -> bool:
        return not self._read_window(0, at_least_one=True).messages

    # -- backend primitives -------------------------------------------------

    @abstractmethod
    def _append(
        self,
        messages: list[Message],
        turn_id: str | None,
        expected_last_seq: int | None,
        fence: int | None,
    ) -> bool:
        """Atomically store messages at the next sequence numbers.

        In this order, without writing: return False when ``turn_id`` is
        already stored; raise ``FencedOutError`` when ``fence`` is given and
        the stored fence is larger; raise ``StaleWriteError`` when
        ``expected_last_seq`` is given and differs from the newest stored
        ``seq``. A fenced write that lands raises the stored fence to ``fence``.
        """

    @abstractmethod
    def _claim_fence(self, token: int) -> None:
        """Atomically: raise ``FencedOutError`` if the stored fence is larger
        than ``token``, else store ``token`` as the fence."""

    @abstractmethod
    def _read_window(self, max_tokens: int | None, at_least_one: bool = False) -> Window:
        """Newest messages within ``max_tokens`` (all if None), oldest first, with
        the system prompt and ``last_seq`` of the same snapshot.

        With ``at_least_one`` the newest message is returned even if it alone
        exceeds the budget (used to test for emptiness cheaply).
        """

    @abstractmethod
    def _read_all(self) -> list[Message]: ...

    @abstractmethod
    def _get_system(self) -> str | None: ...

    @abstractmethod
    def _set_system(self, text: str) -> None: ...

    @abstractmethod
    def _clear(self) -> None: ...

    @abstractmethod
    def _has_turn(self, turn_id: str) -> bool: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}(session_id={self.session_id!r})"


def take_window(
    newest_first: Iterable[Message],
    max_tokens: int | None,
    at_least_one: bool,
    last_seq: int,
    *,
    system: str | None,
) -> Window:
    """Take messages from a newest-first iterable while they fit.

    Shared by backends so the "stop at the first message that does not fit"
    rule is written once. Consumes only as much of the iterable as it keeps.
    """
    taken: list[Message] = []
    used = 0
    truncated = False
    for message in newest_first:
        cost = message.tokens or 0
        if max_tokens is not None and used + cost > max_tokens:
            truncated = True
            if at_least_one and not taken:
                taken.append(message)
            break
        taken.append(message)
        used += cost
    taken.reverse()
    return Window(taken, last_seq, truncated, system)
