"""FleetingMemory: one session's history held in this process, lost when it ends."""

from __future__ import annotations

import threading
import uuid

from fence.errors import FencedOutError, StaleWriteError
from fence.memory.base import BaseMemory, Window, take_window
from fence.messages import Message


class FleetingMemory(BaseMemory):
    """In-process memory; the default when an Agent is given none. Thread-safe."""

    def __init__(self, session_id: str | None = None) -> None:
        super().__init__(f"fleeting-{uuid.uuid4().hex}" if session_id is None else session_id)
        self._lock = threading.Lock()
        self._messages: list[Message] = []
        self._turns: set[str] = set()
        self._system: str | None = None
        self._last_seq = 0
        self._fence = 0

    def _append(
        self,
        messages: list[Message],
        turn_id: str | None,
        expected_last_seq: int | None,
        fence: int | None,
    ) -> bool:
        with self._lock:
            if turn_id is not None and turn_id in self._turns:
                return False
            if fence is not None:
                self._check_fence(fence)
            if expected_last_seq is not None and expected_last_seq != self._last_seq:
                raise StaleWriteError.moved_on(self.session_id, expected_last_seq, self._last_seq)
            for message in messages:
                self._last_seq += 1
                self._messages.append(
                    message.model_copy(update={"seq": self._last_seq, "turn_id": turn_id})
                )
            if turn_id is not None:
                self._turns.add(turn_id)
            return True

    def _check_fence(self, token: int) -> None:
        """Under the lock: refuse an older token, else record this one."""
        if token < self._fence:
            raise FencedOutError.newer(self.session_id, token, self._fence)
        self._fence = token

    def _claim_fence(self, token: int) -> None:
        with self._lock:
            self._check_fence(token)

    def _read_window(self, max_tokens: int | None, at_least_one: bool = False) -> Window:
        with self._lock:
            return take_window(
                reversed(self._messages),
                max_tokens,
                at_least_one,
                self._last_seq,
                system=self._system,
            )

    def _read_all(self) -> list[Message]:
        with self._lock:
            return list(self._messages)

    def _get_system(self) -> str | None:
        return self._system

    def _set_system(self, text: str) -> None:
        self._system = text

    def _clear(self) -> None:
        with self._lock:
            self._messages.clear()

    def _has_turn(self, turn_id: str) -> bool:
        with self._lock:
            return turn_id in self._turns
