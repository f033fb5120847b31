"""Deciding on a waiting run: the decision's checks, before anything is written.

A run pauses (``waiting``) when its model calls a tool that needs approval; the
worker records the call, with the tool's JSON schema, as ``RunRecord.approval``.
``RunStore.decide`` journals an approval (optionally with edited arguments, which
must match that schema) or a denial and queues the run again; it resumes from its
journal. Producers need no agent code for this: the schema travels with the run.
"""

from __future__ import annotations

import json
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from fence.agents.journal import decision_entry
from fence.plain_json import check_plain
from fence.runs.schema import MAX_METADATA_DEPTH, MAX_METADATA_KEY_CHARS, PendingApproval, RunState
from fence.validation import InvalidInput, problem

MAX_REASON_CHARS = 2000
MAX_ARGUMENTS_BYTES = 64 * 1024


class NotWaiting(RuntimeError):
    """The run is not waiting for a decision (on that call): nothing was changed."""

    def __init__(self, run_id: str, state: RunState | str) -> None:
        state = RunState(state).value if state in set(RunState) else str(state)
        super().__init__(f"run {run_id} is {state}, not waiting for an approval")
        self.run_id = run_id
        self.state = state


def decision(
    pending: PendingApproval,
    *,
    approved: bool,
    arguments: dict[str, Any] | None,
    reason: str | None,
) -> dict[str, Any]:
    """The journal entry for a decision on ``pending``, or ``InvalidInput`` naming what
    is wrong (``arguments.<name>``, ``reason``)."""
    if arguments is not None:
        if not approved:
            raise InvalidInput.at("arguments", "only an approval takes edited arguments")
        check_arguments(pending, arguments)
    if reason is not None:
        if not isinstance(reason, str):
            raise InvalidInput.at("reason", "must be a string")
        if len(reason) > MAX_REASON_CHARS:
            raise InvalidInput.at("reason", f"longer than {MAX_REASON_CHARS} characters")
    return decision_entry(pending.step, pending.index, approved, arguments, reason or "")


def check_arguments(pending: PendingApproval, arguments: object) -> None:
    """Edited arguments must be plain JSON that the tool's schema accepts."""
    if not isinstance(arguments, dict):
        raise InvalidInput.at("arguments", 'must be a JSON object, as in {"name": "value"}')
    try:
        check_plain(
            arguments,
            "arguments",
            max_depth=MAX_METADATA_DEPTH,
            max_key_chars=MAX_METADATA_KEY_CHARS,
        )
    except ValueError as error:
        raise InvalidInput.at("arguments", str(error)) from None
    if len(json.dumps(arguments).encode()) > MAX_ARGUMENTS_BYTES:
        raise InvalidInput.at("arguments", f"larger than {MAX_ARGUMENTS_BYTES} bytes")
    validator = Draft202012Validator(pending.parameters)
    problems = [_problem(pending.name, error) for error in validator.iter_errors(arguments)]
    if problems:
        raise InvalidInput(sorted(problems, key=lambda each: each.message))


def _problem(tool: str, error: ValidationError) -> Any:
    """A schema violation as ``arguments.<name>: <rule>``, without the value given."""
    path = ["arguments", *error.absolute_path]
    if error.validator == "required":
        given = error.instance if isinstance(error.instance, dict) else {}
        missing = [name for name in error.validator_value if name not in given]
        return problem([*path, *missing[:1]], "required")
    if error.validator == "additionalProperties":
        known = set(error.schema.get("properties", {}))
        extra = [name for name in error.instance if name not in known]
        return problem([*path, *extra[:1]], f"not an argument of {tool}")
    if error.validator == "type":
        return problem(path, f"must be of type {error.validator_value}")
    return problem(path, f"must satisfy {error.validator} {error.validator_value!r}")
