"""Tools: plain functions whose type hints and docstring become the schema a model reads."""

from __future__ import annotations

from typing import Literal

import pytest

from fence.tools import Tool, as_tool


def get_weather(
    city: str,
    days: int = 1,
    unit: Literal["celsius", "fahrenheit"] = "celsius",
    include_wind: bool = False,
    threshold: float | None = None,
    tags: list[str] | None = None,
) -> str:
    """Get the weather forecast for a city.

    Returns one line per day.
    """
    return f"{city}: sunny for {days} day(s) in {unit}"


def test_name_and_description_come_from_the_function():
    spec = Tool(get_weather).spec

    assert spec.name == "get_weather"
    assert spec.description == "Get the weather forecast for a city.\n\nReturns one line per day."


def test_parameters_without_defaults_are_required_and_the_rest_optional():
    parameters = Tool(get_weather).spec.parameters

    assert parameters["type"] == "object"
    assert parameters["required"] == ["city"]
    assert list(parameters["properties"]) == [
        "city",
        "days",
        "unit",
        "include_wind",
        "threshold",
        "tags",
    ]
    assert parameters["properties"]["days"]["default"] == 1
    assert parameters["additionalProperties"] is False


def test_type_hints_become_json_schema_types():
    properties = Tool(get_weather).spec.parameters["properties"]

    assert properties["city"]["type"] == "string"
    assert properties["days"]["type"] == "integer"
    assert properties["include_wind"]["type"] == "boolean"
    assert properties["unit"]["enum"] == ["celsius", "fahrenheit"]
    assert {option.get("type") for option in properties["threshold"]["anyOf"]} == {
        "number",
        "null",
    }
    [array] = [option for option in properties["tags"]["anyOf"] if option.get("type") == "array"]
    assert array["items"] == {"type": "string"}


def test_a_function_without_parameters_has_an_empty_schema():
    def now() -> str:
        """The current time."""
        return "noon"

    parameters = Tool(now).spec.parameters

    assert parameters["properties"] == {} and "required" not in parameters


def test_a_missing_docstring_is_refused():
    def nameless(x: int) -> int:
        return x

    with pytest.raises(ValueError, match="docstring"):
        Tool(nameless)


def test_a_missing_type_hint_is_refused_naming_the_parameter():
    def half_typed(a: int, b) -> int:  # noqa: ANN001
        """Add."""
        return a + b

    with pytest.raises(ValueError, match="'b' needs a type hint"):
        Tool(half_typed)


def test_star_arguments_are_refused():
    def variadic(*numbers: int) -> int:
        """Sum."""
        return sum(numbers)

    with pytest.raises(ValueError, match=r"\*args"):
        Tool(variadic)


def test_positional_only_parameters_are_refused():
    def scale(x: float, /, factor: float = 2.0) -> float:
        """Scale."""
        return x * factor

    with pytest.raises(ValueError, match="'x' is positional-only"):
        Tool(scale)


def test_parameter_names_that_pydantic_uses_itself_work(recwarn):
    def query(json: bool, schema: str = "public", model_config: int = 0) -> str:
        """Query a table."""
        return f"{json} {schema} {model_config}"

    tool = Tool(query)

    assert list(tool.spec.parameters["properties"]) == ["json", "schema", "model_config"]
    assert tool.invoke({"json": True, "model_config": 3}) == "True public 3"
    assert [str(w.message) for w in recwarn] == []


def test_invoke_runs_the_function_with_validated_arguments():
    assert (
        Tool(get_weather).invoke({"city": "Ghent", "days": 3})
        == "Ghent: sunny for 3 day(s) in celsius"
    )


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({}, "city"),
        ({"city": "Ghent", "days": "three"}, "days"),
        ({"city": "Ghent", "unit": "kelvin"}, "unit"),
        ({"city": "Ghent", "colour": "red"}, "colour"),
    ],
    ids=["missing-required", "wrong-type", "not-in-enum", "unknown-argument"],
)
def test_invalid_arguments_come_back_as_error_text_and_the_function_does_not_run(arguments, named):
    ran: list[dict[str, object]] = []

    def forecast(
        city: str, days: int = 1, unit: Literal["celsius", "fahrenheit"] = "celsius"
    ) -> str:
        """Forecast."""
        ran.append({"city": city})
        return "sunny"

    result = Tool(forecast).invoke(arguments)

    assert result.startswith("error: invalid arguments for forecast")
    assert named in result
    assert ran == []


def test_a_raising_function_comes_back_as_error_text():
    def divide(a: float, b: float) -> float:
        """Divide a by b."""
        if b == 0:
            raise ArithmeticError(f"cannot divide {a} by zero")
        return a / b

    assert Tool(divide).invoke({"a": 1, "b": 0}) == (
        "error: divide raised ArithmeticError: cannot divide 1.0 by zero"
    )


def test_a_result_that_is_not_text_is_returned_as_json():
    def stats(values: list[float]) -> dict[str, float]:
        """Summary statistics."""
        return {"min": min(values), "max": max(values)}

    assert Tool(stats).invoke({"values": [3, 1.5, 2]}) == '{"min": 1.5, "max": 3.0}'


def test_a_tool_can_be_renamed_and_as_tool_keeps_a_tool_as_it_is():
    tool = Tool(get_weather, name="weather")

    assert tool.spec.name == "weather"
    assert as_tool(tool) is tool
    assert as_tool(get_weather).name == "get_weather"
