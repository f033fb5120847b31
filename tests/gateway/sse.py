"""Reading the gateway's Server-Sent Events as a client does, line by line over httpx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Frame:
    """One event (``event``, ``id``, ``data`` parsed as JSON), or a comment (``comment``)."""

    event: str | None = None
    id: str | None = None
    data: dict[str, Any] | None = None
    comment: str | None = None


def frames(response: httpx.Response) -> Iterator[Frame]:
    """The frames of an event stream as they arrive, until it ends."""
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if line.startswith(":"):
            yield Frame(comment=line[1:].strip())
        elif line:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        elif fields:
            yield Frame(fields.get("event"), fields.get("id"), json.loads(fields["data"]))
            fields = {}


def events(response: httpx.Response, limit: int | None = None) -> list[Frame]:
    """The events (not comments) of a stream: all of them, or the first ``limit``."""
    found: list[Frame] = []
    for frame in frames(response):
        if frame.comment is None:
            found.append(frame)
            if len(found) == limit:
                break
    return found


def stream_events(
    client: httpx.Client, path: str, limit: int | None = None, **request: Any
) -> list[Frame]:
    """GET an event stream (200, text/event-stream) and read its events."""
    with client.stream("GET", path, **request) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return events(response, limit)
