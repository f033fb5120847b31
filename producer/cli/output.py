"""What the commands print: runs and field lists for people, JSON for programs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from fence.runs import RunEvent, RunRecord, RunState

if TYPE_CHECKING:
    from producer.cli.backend import RunHandle


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


def emit_json_line(document: Any) -> None:
    """One JSON document on one line, flushed: JSON Lines, for a stream read as it comes."""
    print(json.dumps(document, default=str), flush=True)


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
    if record.approval is not None and record.state is RunState.WAITING:
        call = record.approval
        arguments = json.dumps(call.arguments)
        rows.append(
            ("waiting for", f"approval of {call.name}({arguments}) until {when(call.deadline)}")
        )
        rows.append(("decide", f"fence approve {record.id} | fence deny {record.id}"))
    if record.corrupt:
        rows.append(("corrupt", f"{record.corrupt} (unreadable fields show safe values)"))
    if record.webhook_state is not None:
        error = f": {record.webhook_error}" if record.webhook_error else ""
        delivery = f"{record.webhook_state.value} after {record.webhook_attempts} attempt(s)"
        rows.append(("webhook", f"{delivery}{error}"))
    print("\n".join(aligned(rows)))


def print_accepted(run: RunHandle, record: RunRecord) -> None:
    """Where the run stands in its session's queue."""
    if run.duplicate:
        print(f"run {run.id} (existing run for this idempotency key): {record.state.value}")
    elif run.position == 0:
        print(f"run {run.id} accepted for session {run.session_id}: runs next")
    else:
        print(
            f"run {run.id} accepted for session {run.session_id}: queued behind "
            f"{run.position} run(s)"
        )


VALUE_CHARS = 200
"""Longest value an event line shows; ``--json`` has them all in full."""


def event_line(event: RunEvent) -> str:
    """An event on one line: when, its id (for ``--after``), its type, ``key=value`` data
    (values as JSON, so text shows its spaces and never breaks the line)."""
    values = []
    for name, value in event.data.items():
        shown = json.dumps(value, ensure_ascii=False, default=str)
        if len(shown) > VALUE_CHARS:
            shown = shown[: VALUE_CHARS - 1] + "…"
        values.append(f"{name}={shown}")
    return f"{when(event.at)}  {event.id}  {event.type.value:<14}  {' '.join(values)}".rstrip()


def print_event(event: RunEvent, as_json: bool) -> None:
    """An event as it comes: a line for people, or under ``--json`` a JSON line."""
    if as_json:
        emit_json_line(event.to_dict())
    else:
        print(event_line(event), flush=True)
