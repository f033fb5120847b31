"""Tools: plain Python functions whose type hints and docstring become a schema."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, get_type_hints

from pydantic import ConfigDict, Field, ValidationError, create_model

from fence.models.base import ToolSpec


class Tool:
    """A callable the model may ask to run, with arguments validated against its hints."""

    def __init__(self, fn: Callable[..., Any], name: str | None = None) -> None:
        self.fn = fn
        self.name = name or fn.__name__
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
        for index, param in enumerate(inspect.signature(fn).parameters.values()):
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

    def invoke(self, arguments: dict[str, Any]) -> str:
        """Run the tool; return its result as text, or its error as text for the model."""
        return self.run(arguments).text

    def run(self, arguments: dict[str, Any]) -> ToolOutcome:
        """Run the tool: its result or its error as text for the model, and which."""
        try:
            parsed = self._arguments.model_validate(arguments)
        except ValidationError as error:
            return ToolOutcome(f"error: invalid arguments for {self.name}: {error}", failed=True)
        try:
            result = self.fn(**{self._parameters[k]: v for k, v in parsed})
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
