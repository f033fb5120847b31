"""``ListEvents`` of one session: newest first, page by page, optionally filtered.

The service lists a session's events newest first (by event timestamp, then
event id) in pages of ``maxResults`` linked by ``nextToken``, and can keep
only the events whose metadata matches ``filter.eventMetadata`` (every
expression must hold). Fence's bookkeeping is in event metadata, so a filter
finds its prompts, clears and fence claims without listing its turns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

Expression = dict[str, Any]
"""One ``filter.eventMetadata`` expression."""


def has(key: str) -> Expression:
    return {"left": {"metadataKey": key}, "operator": "EXISTS"}


def lacks(key: str) -> Expression:
    return {"left": {"metadataKey": key}, "operator": "NOT_EXISTS"}


NOT_TURNS = [has("fence_kind"), lacks("fence_last")]
"""Fence's events other than turns: system prompts, clears and fence claims
(every version of Fence gave each a ``fence_kind`` and only turns a ``fence_last``)."""
TURNS = [has("fence_last")]
"""Fence's turn events, of every version."""


class EventPages:
    """The events of one session, as ``ListEvents`` pages them."""

    def __init__(
        self,
        list_events: Callable[..., dict[str, Any]],
        where: dict[str, str],
        page_size: int | None,
    ) -> None:
        """``list_events(**params)`` is one ``ListEvents`` request; ``where`` names the
        actor and session; ``page_size`` is ``maxResults`` (None: the service's)."""
        self._list_events = list_events
        self._where = where
        self._page_size = page_size

    def pages(
        self, *, payloads: bool, only: list[Expression] | None = None
    ) -> Iterator[tuple[list[dict[str, Any]], bool]]:
        """Each page, newest first, with whether more pages follow. A page is
        requested only when the caller asks for it."""
        params: dict[str, Any] = {**self._where, "includePayloads": payloads}
        if self._page_size is not None:
            params["maxResults"] = self._page_size
        if only:
            params["filter"] = {"eventMetadata": only}
        while True:
            response = self._list_events(**params)
            token = response.get("nextToken")
            yield response.get("events", []), bool(token)
            if not token:
                return
            params["nextToken"] = token

    def all(self, *, payloads: bool, only: list[Expression] | None = None) -> list[dict[str, Any]]:
        """Every matching event, following ``nextToken`` to the end."""
        return [event for page, _ in self.pages(payloads=payloads, only=only) for event in page]
