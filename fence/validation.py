"""Bad input, said plainly: one ``field: rule`` line per problem.

pydantic's own text for a failed model adds a header ("1 validation error for
RunRequest"), the error type and a documentation URL to every problem. The
models callers build directly (``RunRequest``, ``Message``, ``ToolCall``) raise
``InvalidInput`` instead: a ``ValueError`` like pydantic's (``except
ValueError`` keeps working) whose text is only the lines, and which carries
each problem's field so the CLI and the gateway need not parse the text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

ELLIPSIS = "…"


def clip(text: str, limit: int = 80) -> str:
    """``text`` if it has at most ``limit`` characters, else its start and an ellipsis
    (``limit`` characters in all): an error shows enough of a bad value to recognise it,
    and says when it is not all of it. For ids and names: an error never shows a secret,
    not even in part."""
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


@dataclass(frozen=True)
class Problem:
    field: str | None
    """The input at fault, as a dotted path (``tool_calls.0.name``); None when the rule
    is about several fields at once."""
    message: str
    """``field: rule``."""


def problem(loc: Sequence[object], message: str) -> Problem:
    """One of pydantic's errors (its ``loc`` and ``msg``) as a field and a ``field: rule``
    line; the validators' own messages already start with their field."""
    field = ".".join(str(part) for part in loc) or None
    rule = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    named = field is None or rule.startswith(f"{field}:")
    return Problem(field, rule if named else f"{field}: {rule}")


class InvalidInput(ValueError):
    """Input that breaks a rule; ``str()`` is one ``field: rule`` line per problem."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(each.message for each in problems))
        self.problems = tuple(problems)

    @property
    def field(self) -> str | None:
        """The first field at fault."""
        return self.problems[0].field

    @classmethod
    def at(cls, field: str, rule: str) -> InvalidInput:
        """One problem with ``field``; ``rule`` may already start with ``field:``."""
        return cls([problem([field], rule)])

    @classmethod
    def from_pydantic(cls, error: ValidationError) -> InvalidInput:
        """The field and rule of each of pydantic's errors; never the input."""
        errors = error.errors(include_input=False, include_url=False, include_context=False)
        return cls([problem(item["loc"], str(item["msg"])) for item in errors])


class InputModel(BaseModel):
    """A model built from a caller's input: bad input raises ``InvalidInput``."""

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as error:
            raise InvalidInput.from_pydantic(error) from None

    # pydantic calls a model's own ``__init__`` for every nested instance it validates,
    # which would drop the validation context (``Message.from_record``'s "stored") and
    # nest errors; marked as its base ``__init__`` is, it is called for top-level
    # construction only, and nested errors keep their full path (``tool_calls.0.name``).
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]
