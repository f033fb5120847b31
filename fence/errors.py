"""Exceptions raised by the fence library. Every error names what to fix."""

from __future__ import annotations


class FenceError(Exception):
    """Base class of every error fence raises on purpose."""


class StaleWriteError(FenceError):
    """A conditional write found the session's history moved on since it was read.

    Raised by a turn commit whose ``expected_last_seq`` no longer matches: the
    writer lost its lease (or raced another writer) and must not overwrite newer
    history.
    """

    @classmethod
    def moved_on(cls, session_id: str, expected: int, found: int) -> StaleWriteError:
        return cls(
            f"session {session_id!r} moved on: expected last seq {expected}, found {found}; "
            "the writer lost its lease or raced another writer"
        )


class FencedOutError(StaleWriteError):
    """A fenced write or claim carried a token older than one the session has seen.

    The writer's lease was taken over by a newer holder (who wrote or claimed
    the session with a larger token): whatever it was about to write must not
    land. Nothing was written.
    """

    @classmethod
    def newer(cls, session_id: str, token: int, seen: int) -> FencedOutError:
        return cls(
            f"session {session_id!r} is fenced at token {seen}; a write with older token "
            f"{token} was refused: a newer lease holder took the session over"
        )


class ModelError(FenceError):
    """A model call failed. ``retryable`` says whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class MissingCredentialError(FenceError):
    """A model or backend needs a credential that is not configured."""


class MemoryBackendError(FenceError):
    """A memory backend failed in a way the caller cannot fix by changing input."""
