"""Plain JSON: values stored as JSON that read back unchanged, checked without recursing.

Python's ``json`` raises ``RecursionError`` on input nested about a thousand
deep, and pydantic will not serialise past 255 levels. So nesting is measured
with an explicit stack, on values (``check_plain``) and on JSON text
(``text_nesting``), before anything recurses into them.
"""

from __future__ import annotations

import json
import math
import re

from fence.messages import utf8

PLAIN_TYPES = "objects with string keys, arrays, strings, finite numbers, true, false and null"

_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[][{},]', re.DOTALL)
"""A JSON string, or a character that opens, closes or separates a container."""


def nesting_rule(max_depth: int) -> str:
    return f"nested deeper than {max_depth} levels of objects and arrays"


def check_plain(value: object, field: str, *, max_depth: int, max_key_chars: int) -> None:
    """Raise ``ValueError`` (``"<field>: <rule>"``) unless ``value`` is JSON that is read back
    equal: no tuples or sets, no NaN or infinity, no lone surrogates, string keys no longer
    than ``max_key_chars``, and at most ``max_depth`` levels (``{}`` is one)."""
    todo: list[tuple[object, int]] = [(value, 1)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:  # also ends a structure that contains itself
                raise ValueError(f"{field}: {nesting_rule(max_depth)}")
            if isinstance(item, dict):
                for key in item:
                    _check_key(key, field, max_key_chars)
            todo.extend((child, depth + 1) for child in _children(item))
        elif isinstance(item, str):
            utf8(item, field)
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f"{field}: numbers must be finite (found {item})")
        elif not (item is None or isinstance(item, bool | int | float)):
            raise ValueError(f"{field}: a {type(item).__name__} is not JSON; use {PLAIN_TYPES}")


def _check_key(key: object, field: str, max_key_chars: int) -> None:
    if not isinstance(key, str):
        raise ValueError(f"{field}: keys must be strings (found {type(key).__name__})")
    if len(key) > max_key_chars:
        raise ValueError(f"{field}: keys must be at most {max_key_chars} characters")
    utf8(key, field)


def _children(container: dict | list) -> list[object]:
    return list(container.values()) if isinstance(container, dict) else container


def text_nesting(text: str) -> tuple[int, str | None]:
    """How deep JSON ``text`` nests (``{}`` and ``[]`` are 1), and the key of the top-level
    object's member that nests deepest (None if there is none).

    Counts brackets outside strings, without parsing: text that is not JSON may be
    counted deeper than a parser would get, never shallower.
    """
    depth = deepest = 0
    key = deepest_key = None
    top_is_object = expect_key = False
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token in ("{", "["):
            depth += 1
            if depth == 1:
                top_is_object = expect_key = token == "{"
            if depth > deepest:
                deepest, deepest_key = depth, key
        elif token in ("}", "]"):
            depth -= 1
        elif token == ",":
            expect_key = depth == 1 and top_is_object
        elif expect_key:
            key, expect_key = _string(token), False
    return deepest, deepest_key


def _string(token: str) -> str | None:
    try:
        return json.loads(token)
    except ValueError:
        return None
