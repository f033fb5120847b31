"""Argument types the commands share: argparse reports a bad value as a usage error
(exit code 2) naming the option, before any command runs."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from fence.plain_json import nesting_rule, text_nesting
from fence.runs.schema import MAX_METADATA_DEPTH


def _number(
    name: str, convert: Callable[[str], Any], kind: str, accept: Callable[[Any], bool], rule: str
) -> Callable[[str], Any]:
    """An argparse ``type``: ``convert`` the text, then refuse values ``accept`` rejects.
    Errors read ``must be <kind>`` (not a number) or ``must be <rule>`` (out of range)."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {kind} (got {text!r})") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"must be {rule} (got {text})")
        return value

    parse.__name__ = name
    return parse


positive_float = _number(
    "positive_float", float, "a number of seconds", lambda v: v > 0, "more than 0"
)
positive_int = _number("positive_int", int, "a whole number", lambda v: v >= 1, "at least 1")
port_number = _number(
    "port_number", int, "a port number", lambda v: 0 <= v < 65536, "0-65535, 0 for any free port"
)


def json_object(text: str) -> dict[str, Any]:
    """An argparse ``type`` for ``--metadata``: nesting is counted before parsing, so no
    input makes the parser recurse; ``RunRequest`` checks the rest."""
    if text_nesting(text)[0] > MAX_METADATA_DEPTH:
        raise argparse.ArgumentTypeError(nesting_rule(MAX_METADATA_DEPTH))
    try:
        value = json.loads(text)
    except ValueError as error:  # not JSON, or an int too long to read
        raise argparse.ArgumentTypeError(f"must be a JSON object ({error})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError('must be a JSON object, as in \'{"k": "v"}\'')
    return value
