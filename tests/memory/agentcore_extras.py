"""What the suite's AgentCore endpoint answers itself, before moto sees the request.

moto's AgentCore data plane stores events but has no ``RetrieveMemoryRecords``
(long-term memory is extracted by the service, with a model), never
throttles, and its ``ListEvents`` lists oldest first, cuts at ``maxResults``
instead of paging and ignores ``filter``. ``AGENTCORE_EXTRAS`` answers those
three in the service's wire format (rest-json: botocore parses the answers as
it parses AWS's):

- records a test puts in with ``add_record`` are retrieved by a naive word
  overlap score;
- ``throttle("CreateEvent", n)`` answers the next ``n`` ``CreateEvent``
  requests with ``429 ThrottledException``;
- ``ListEvents`` lists the events moto stored as the service does: newest
  first (by event timestamp, then event id), in pages of ``maxResults`` (20
  when absent) with a ``nextToken`` that resumes after the last event
  listed, keeping the events that every ``filter.eventMetadata`` expression
  (``EQUALS_TO``, ``EXISTS``, ``NOT_EXISTS``) holds for. Branch filters are
  not emulated. It reads moto's store directly and keeps each session's
  order until an event is created or deleted, so a request costs about its
  page, not the session (a benchmark counts on that).

Everything else is moto's.
"""

from __future__ import annotations

import base64
import bisect
import json
import re
import time
from collections.abc import Iterable
from datetime import UTC
from typing import Any
from urllib.parse import unquote

from moto.bedrockagentcore.models import Event, bedrockagentcore_backends
from moto.core import DEFAULT_ACCOUNT_ID

WireResponse = tuple[int, dict[str, Any]]
CREATE_EVENT_PATH = re.compile(r"^/memories/[^/]+/events$")
LIST_EVENTS_PATH = re.compile(r"^/memories/([^/]+)/actor/([^/]+)/sessions/([^/]+)$")
RETRIEVE_PATH = re.compile(r"^/memories/([^/]+)/retrieve$")
SIGNED_REGION = re.compile(r"Credential=[^/]+/[^/]+/([^/]+)/")
LIST_EVENTS_DEFAULT_PAGE = 20
"""``maxResults`` when a ``ListEvents`` request has none (the service's default)."""
REASONS = {200: "OK", 403: "Forbidden", 429: "Too Many Requests"}

OrderKey = tuple[int, int, str]
"""(timestamp ms, event id ms, rest of the event id): the service lists the greatest first."""


class AgentCoreExtras:
    """See the module notes. One per process: tests reach it as ``AGENTCORE_EXTRAS``."""

    def __init__(self) -> None:
        self._records: dict[str, list[dict[str, Any]]] = {}
        self._throttles: dict[str, int] = {}
        self._orders: dict[tuple[str, ...], tuple[Any, list[OrderKey], list[Event]]] = {}
        self.retrievals: list[dict[str, Any]] = []
        """The body of every ``RetrieveMemoryRecords`` request, for tests to inspect."""
        self.denied_retrievals = 0
        """Answer that many retrievals with AccessDeniedException (a role without the
        permission)."""

    def add_record(self, memory_id: str, namespace: str, text: str) -> None:
        """A long-term record, as an extraction strategy would have left it."""
        records = self._records.setdefault(memory_id, [])
        records.append(
            {
                "memoryRecordId": f"mem-{len(records):040d}",
                "content": {"text": text},
                "memoryStrategyId": "fence_semantic-abcdefghij",
                "namespaces": [namespace],
                "createdAt": time.time(),
            }
        )

    def throttle(self, operation: str, times: int) -> None:
        """Answer the next ``times`` requests of ``operation`` with ThrottledException."""
        self._throttles[operation] = times

    def __call__(self, app: Any, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        answer = self._answer(environ)
        if answer is None:
            return app(environ, start_response)
        status, body = answer
        headers = [("Content-Type", "application/json")]
        if status >= 400:
            headers.append(("x-amzn-ErrorType", body["__type"]))
        start_response(f"{status} {REASONS[status]}", headers)
        return [json.dumps(body).encode()]

    def _answer(self, environ: dict[str, Any]) -> WireResponse | None:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD")
        if method != "POST":
            return None
        if CREATE_EVENT_PATH.match(path) and self._throttles.get("CreateEvent"):
            self._throttles["CreateEvent"] -= 1
            return 429, {"__type": "ThrottledException", "message": "Rate exceeded"}
        if listed := LIST_EVENTS_PATH.match(path):
            return 200, self._list_events(environ, *(unquote(g) for g in listed.groups()))
        retrieve = RETRIEVE_PATH.match(path)
        if not retrieve:
            return None
        body = _read_json(environ)
        self.retrievals.append(body)
        if self.denied_retrievals:
            self.denied_retrievals -= 1
            return 403, {"__type": "AccessDeniedException", "message": "not authorized"}
        return 200, {"memoryRecordSummaries": self._retrieve(retrieve.group(1), body)}

    def _retrieve(self, memory_id: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        criteria = body["searchCriteria"]
        words = set(re.findall(r"\w+", criteria["searchQuery"].lower()))
        scored = []
        for record in self._records.get(memory_id, []):
            namespace = record["namespaces"][0]
            if "namespace" in body and namespace != body["namespace"]:
                continue
            if "namespacePath" in body and not namespace.startswith(body["namespacePath"]):
                continue
            found = set(re.findall(r"\w+", record["content"]["text"].lower()))
            score = len(words & found) / max(1, len(words))
            if score:
                scored.append({**record, "score": score})
        scored.sort(key=lambda r: -r["score"])
        return scored[: criteria.get("topK", 10)]

    # -- ListEvents -----------------------------------------------------------

    def _list_events(self, environ: dict[str, Any], *session: str) -> dict[str, Any]:
        request = _read_json(environ)
        signed = SIGNED_REGION.search(environ.get("HTTP_AUTHORIZATION", ""))
        region = signed.group(1) if signed else "us-east-1"
        keys, events = self._ordered(region, session)
        end = len(events)
        if "nextToken" in request:
            after = tuple(json.loads(base64.urlsafe_b64decode(request["nextToken"])))
            end = bisect.bisect_left(keys, after)
        expressions = (request.get("filter") or {}).get("eventMetadata") or []
        size = request.get("maxResults") or LIST_EVENTS_DEFAULT_PAGE
        page: list[int] = []
        for index in range(end - 1, -1, -1):
            if all(_holds(e, events[index].metadata) for e in expressions):
                if len(page) == size:  # one more matches: there is a next page
                    last = keys[page[-1]]
                    token = base64.urlsafe_b64encode(json.dumps(last).encode()).decode()
                    return {"events": self._wire(events, page, request), "nextToken": token}
                page.append(index)
        return {"events": self._wire(events, page, request)}

    def _ordered(self, region: str, session: tuple[str, ...]) -> tuple[list[OrderKey], list[Event]]:
        """The session's events oldest first and their order keys, sorted again only
        when an event was created or deleted since."""
        backend = bedrockagentcore_backends[DEFAULT_ACCOUNT_ID][region]
        stored = backend.events.get(session, {})
        version = (len(stored), next(reversed(stored), None))
        cached = self._orders.get(session)
        if cached is None or cached[0] != version:
            events = sorted(stored.values(), key=_order_key)
            cached = (version, [_order_key(e) for e in events], events)
            self._orders[session] = cached
        return cached[1], cached[2]

    @staticmethod
    def _wire(events: list[Event], page: list[int], request: dict[str, Any]) -> list[dict]:
        listed = []
        for index in page:
            event = events[index].to_dict(include_payload=request.get("includePayloads", False))
            event["eventTimestamp"] = _epoch(events[index])
            listed.append(event)
        return listed


def _read_json(environ: dict[str, Any]) -> dict[str, Any]:
    size = int(environ.get("CONTENT_LENGTH") or 0)
    return json.loads(environ["wsgi.input"].read(size) or b"{}")


def _epoch(event: Event) -> float:
    """moto keeps the timestamp as a naive UTC datetime."""
    stamp = event.event_timestamp
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()


def _order_key(event: Event) -> OrderKey:
    millis, _, rest = event.event_id.partition("#")
    return (round(_epoch(event) * 1000), int(millis) if millis.isdigit() else 0, rest)


def _holds(expression: dict[str, Any], metadata: dict[str, Any]) -> bool:
    """One ``eventMetadata`` filter expression against an event's metadata."""
    key, operator = expression["left"]["metadataKey"], expression["operator"]
    if operator == "EXISTS":
        return key in metadata
    if operator == "NOT_EXISTS":
        return key not in metadata
    wanted = expression["right"]["metadataValue"]["stringValue"]
    return key in metadata and metadata[key].get("stringValue") == wanted


AGENTCORE_EXTRAS = AgentCoreExtras()
