"""Webhooks: which URLs a run's outcome may be POSTed to, what is POSTed, how it is signed.

A run submitted with ``webhook=URL`` has its outcome POSTed there once it ends, in
whatever state: the workers deliver it (``workers.webhooks``), and its delivery state
is kept on the run record (``RunStore.claim_webhook``). A URL is accepted only if it
starts with one of the ``FENCE_WEBHOOK_ALLOW`` prefixes, compared as scheme, host, port
and path after normalising, so no producer can aim the workers at an internal address
the operator did not name (SSRF). The workers check it again before each attempt, and
never follow a redirect.

Each delivery is signed: ``Fence-Webhook-Signature: sha256=<hex>``, the HMAC-SHA256 of
``<Fence-Webhook-Timestamp> + "." + <body>`` keyed with ``FENCE_WEBHOOK_SECRET``.
``Fence-Webhook-Id`` is the run id: a run has one outcome, so one delivery, and every
retry of it carries the same id for the receiver to dedupe by.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from fence import __version__

if TYPE_CHECKING:
    from fence.runs.schema import RunRecord

MAX_WEBHOOK_CHARS = 2048
"""Longest webhook URL accepted."""

ID_HEADER = "Fence-Webhook-Id"
TIMESTAMP_HEADER = "Fence-Webhook-Timestamp"
SIGNATURE_HEADER = "Fence-Webhook-Signature"
ATTEMPT_HEADER = "Fence-Webhook-Attempt"
SIGNATURE_PREFIX = "sha256="
USER_AGENT = f"fence-webhooks/{__version__}"

_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Target:
    """A URL as the allowlist compares it: lowercase scheme and host, explicit port."""

    scheme: str
    host: str
    port: int
    path: str

    def within(self, prefix: Target) -> bool:
        """Whether this URL starts with ``prefix``: same origin, and a path at or under the
        prefix's (``/hooks`` allows ``/hooks`` and ``/hooks/a``, never ``/hooks-evil``)."""
        if (self.scheme, self.host, self.port) != (prefix.scheme, prefix.host, prefix.port):
            return False
        if prefix.path.endswith("/"):
            return self.path.startswith(prefix.path)
        return self.path == prefix.path or self.path.startswith(prefix.path + "/")


def target(url: str, *, prefix: bool = False) -> Target:
    """``url``'s parts, or ``ValueError`` with the rule it breaks (never the URL, which may
    carry a token). ``prefix``: an allowlist entry, which may not have a query either."""
    if len(url) > MAX_WEBHOOK_CHARS:
        raise ValueError(f"longer than {MAX_WEBHOOK_CHARS} characters")
    if not url.isascii() or "\\" in url or any(c <= " " or c == "\x7f" for c in url):
        raise ValueError(
            "must be ASCII with no spaces, control characters or backslashes "
            "(percent-encode them; a non-ASCII host in its xn-- form)"
        )
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed [IPv6 literal
        raise ValueError("is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if "@" in parts.netloc:
        raise ValueError("must not carry a user name or password")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("has a port that is not a number from 0 to 65535") from None
    if "#" in url:
        raise ValueError("must not have a #fragment")
    if prefix and "?" in url:
        raise ValueError("must not have a ?query")
    if {".", ".."} & set(unquote(parts.path).split("/")):
        raise ValueError("must not have . or .. path segments")
    return Target(
        scheme, parts.hostname, _DEFAULT_PORTS[scheme] if port is None else port, parts.path or "/"
    )


def webhook_target(url: str) -> Target:
    """``url``'s parts if it is a URL a webhook can have, else ``ValueError`` naming
    ``webhook`` and the rule."""
    try:
        return target(url)
    except ValueError as error:
        raise ValueError(f"webhook: {error}") from None


def check_allowed(url: str, allow: Sequence[str]) -> str:
    """``url`` if it starts with one of the prefixes ``allow`` (``FENCE_WEBHOOK_ALLOW``)
    lists, else ``ValueError`` naming ``webhook`` and the rule (not the prefixes: they
    name the operator's hosts)."""
    found = webhook_target(url)
    if not allow:
        raise ValueError("webhook: webhooks are off here (FENCE_WEBHOOK_ALLOW is empty)")
    if not any(found.within(target(entry, prefix=True)) for entry in allow):
        raise ValueError("webhook: not allowed: it must start with a FENCE_WEBHOOK_ALLOW prefix")
    return url


def check_prefix(entry: str) -> str:
    """``entry`` if it can be a ``FENCE_WEBHOOK_ALLOW`` prefix, else ``ValueError``."""
    try:
        target(entry, prefix=True)
    except ValueError as error:
        raise ValueError(
            "each entry must be an http(s) URL prefix such as https://hooks.example.com/ "
            f"(an entry {error})"
        ) from None
    return entry


def payload(record: RunRecord) -> bytes:
    """The body POSTed for a finished run: its outcome, as compact UTF-8 JSON."""
    outcome = {
        "run_id": record.id,
        "session_id": record.session_id,
        "state": record.state.value,
        "result": record.result,
        "error": record.error,
        "accepted_at": record.accepted_at,
        "finished_at": record.finished_at,
        "attempts": record.attempts,
        "deliveries": record.deliveries,
        "metadata": record.metadata,
    }
    return json.dumps(outcome, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=`` and the hex HMAC-SHA256 of ``timestamp + "." + body`` under ``secret``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return SIGNATURE_PREFIX + digest.hexdigest()


def signed_headers(
    run_id: str, attempt: int, body: bytes, secret: str, now: float
) -> dict[str, str]:
    """The headers of one attempt: a fresh timestamp (signed with the body), the same id."""
    timestamp = str(int(now))
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        ID_HEADER: run_id,
        TIMESTAMP_HEADER: timestamp,
        ATTEMPT_HEADER: str(attempt),
        SIGNATURE_HEADER: signature(secret, timestamp, body),
    }
