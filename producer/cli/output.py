"""What the commands print: runs and field lists for people, JSON for programs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from fence.runs import RunRecord


def redact(url: str) -> str:
    """``url`` without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + host))


def when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp).isoformat(sep=" ", timespec="milliseconds")


def emit_json(document: Any) -> None:
    print(json.dumps(document, indent=2, default=str))


def aligned(rows: Sequence[tuple[str, object]], indent: str = "") -> list[str]:
    """``name  value`` lines, the values in one column."""
    width = max(len(name) for name, _ in rows)
    return [f"{indent}{name:<{width}}  {value}" for name, value in rows]


def record_dict(record: RunRecord) -> dict[str, Any]:
    """A run as ``--json`` prints it: the HTTP API's run view (``run_id``, not ``id``)."""
    fields = record.model_dump(mode="json")
    return {"run_id": fields.pop("id"), **fields}


def print_record(record: RunRecord) -> None:
    cancelling = record.cancel_requested and not record.state.terminal
    rows: list[tuple[str, object]] = [
        ("run", record.id),
        ("session", record.session_id),
        ("agent", record.agent),
        ("state", record.state.value + (" (cancel requested)" if cancelling else "")),
        ("accepted", when(record.accepted_at)),
        ("started", when(record.started_at)),
        ("finished", when(record.finished_at)),
    ]
    if record.finished_at is not None:
        rows.append(("took", f"{record.finished_at - record.accepted_at:.3f} s since accepted"))
    rows += [
        ("worker", record.worker or "-"),
        ("deliveries", f"{record.deliveries} (workers that took the run)"),
        ("attempts", f"{record.attempts} (tries of the turn, retries included)"),
    ]
    if record.idempotency_key:
        rows.append(("idempotency key", record.idempotency_key))
    rows.append(("message", record.message))
    if record.result:
        rows.append(("result", record.result))
    if record.error:
        rows.append(("error", record.error))
    if record.corrupt:
        rows.append(("corrupt", f"{record.corrupt} (unreadable fields show safe values)"))
    print("\n".join(aligned(rows)))
