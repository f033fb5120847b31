"""Tools: plain Python functions whose type hints and docstring become a schema.

A tool may declare one parameter typed ``ToolContext``: it is not in the schema the
model sees, and receives this call's stable ``idempotency_key`` (the same if the
step runs again after a crash), so the tool can pass it to a payment API or
dedupe itself. ``requires_approval`` makes the turn pause for a person's decision
before the tool runs (see ``fence.agents.journal``).
"""

from __future__ import annotations

import inspect
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, get_type_hints, overload

from pydantic import ConfigDict, Field, ValidationError, create_model

from fence.models.base import ToolSpec


@dataclass(frozen=True)
class ToolContext:
    """What a tool call knows about itself beside its arguments."""

    idempotency_key: str
    """Stable for this call of this turn: the same value if the step is executed again
    after a crash or retry."""
    run_id: str
    """The run (or the library turn's id) the call belongs to."""
    session_id: str
    attempt: int
    """The turn try this execution belongs to, from 1."""


class Tool:
    """A callable the model may ask to run, with arguments validated against its hints."""

    def __init__(
        self, fn: Callable[..., Any], name: str | None = None, *, requires_approval: bool = False
    ) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        self.requires_approval = requires_approval
        doc = inspect.getdoc(fn)
        if not doc:
            raise ValueError(f"tool {self.name!r}: needs a docstring; the model reads it")
        self.description = doc
        hints = get_type_hints(fn)
        # Fields get neutral names and take the parameter's name as alias, so
        # parameters such as ``json`` or ``model_config`` cannot clash with
        # pydantic's own attributes.
        fields: dict[str, Any] = {}
        self._parameters: dict[str, str] = {}
        self._context: str | None = None
        for index, param in enumerate(inspect.signature(fn).parameters.values()):
            if hints.get(param.name) is ToolContext:
                if self._context is not None:
                    raise ValueError(f"tool {self.name!r}: more than one ToolContext parameter")
                self._context = param.name
                continue
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise ValueError(f"tool {self.name!r}: *args/**kwargs cannot be described")
            if param.kind is param.POSITIONAL_ONLY:
                raise ValueError(
                    f"tool {self.name!r}: parameter {param.name!r} is positional-only; "
                    "tools are called with keyword arguments"
                )
            if param.name not in hints:
                raise ValueError(f"tool {self.name!r}: parameter {param.name!r} needs a type hint")
            default = ... if param.default is param.empty else param.default
            field = f"arg_{index}"
            fields[field] = (hints[param.name], Field(default, alias=param.name))
            self._parameters[field] = param.name
        self._arguments = create_model(
            f"{self.name}_arguments",
            __config__=ConfigDict(extra="forbid", hide_input_in_errors=True),
            **fields,
        )

    @property
    def spec(self) -> ToolSpec:
        schema = self._arguments.model_json_schema()
        schema.pop("title", None)
        return ToolSpec(name=self.name, description=self.description, parameters=schema)

    def invoke(self, arguments: dict[str, Any], context: ToolContext | None = None) -> str:
        """Run the tool; return its result as text, or its error as text for the model."""
        return self.run(arguments, context).text

    def check(self, arguments: dict[str, Any]) -> list[tuple[str, str]]:
        """What is wrong with ``arguments``: (argument, rule) pairs, none when valid."""
        try:
            self._arguments.model_validate(arguments)
        except ValidationError as error:
            return [
                (".".join(str(part) for part in problem["loc"]) or "arguments", problem["msg"])
                for problem in error.errors()
            ]
        return []

    def run(self, arguments: dict[str, Any], context: ToolContext | None = None) -> ToolOutcome:
        """Run the tool: its result or its error as text for the model, and which.
        Without a ``context``, a tool that takes one gets a key unique to this call."""
        try:
            parsed = self._arguments.model_validate(arguments)
        except ValidationError as error:
            return ToolOutcome(f"error: invalid arguments for {self.name}: {error}", failed=True)
        named = {self._parameters[k]: v for k, v in parsed}
        if self._context is not None:
            named[self._context] = context or ToolContext(uuid.uuid4().hex, "", "", 1)
        try:
            result = self.fn(**named)
        except Exception as error:  # the model sees the failure and may recover
            text = f"error: {self.name} raised {type(error).__name__}: {error}"
            return ToolOutcome(text, failed=True)
        text = result if isinstance(result, str) else json.dumps(result, default=str)
        return ToolOutcome(text, failed=False)


@dataclass(frozen=True)
class ToolOutcome:
    text: str
    failed: bool
    """The tool raised, or its arguments were invalid: ``text`` says so for the model."""


def as_tool(fn: Callable[..., Any] | Tool) -> Tool:
    return fn if isinstance(fn, Tool) else Tool(fn)


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...
@overload
def tool(
    *, name: str | None = None, requires_approval: bool = False
) -> Callable[[Callable[..., Any]], Tool]: ...
def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    requires_approval: bool = False,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """``@tool`` or ``@tool(requires_approval=True)``: make a function a ``Tool``."""

    def make(function: Callable[..., Any]) -> Tool:
        return Tool(function, name, requires_approval=requires_approval)

    return make if fn is None else make(fn)
