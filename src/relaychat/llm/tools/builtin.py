"""Built-in tools: the current time and a calculator that evaluates arithmetic, never code."""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from relaychat.llm.tools.base import Tool, ToolContext, ToolError

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt,
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "log": math.log,
    "log10": math.log10,
    "exp": math.exp,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "floor": math.floor,
    "ceil": math.ceil,
}
_CONSTANTS = {"pi": math.pi, "e": math.e}
# Bounds that keep one expression from eating the CPU or memory of the server.
MAX_EXPRESSION_CHARS = 500
MAX_EXPONENT = 10_000
MAX_MAGNITUDE = 10**100


def evaluate(expression: str) -> Any:
    """The value of an arithmetic expression (numbers, + - * / // % **, a few functions)."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ToolError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.replace("^", "**"), mode="eval")
    except SyntaxError as exc:
        raise ToolError(f"not an arithmetic expression: {exc.msg}") from exc
    try:
        return _eval(tree.body)
    except (ZeroDivisionError, OverflowError, ValueError, TypeError) as exc:
        raise ToolError(f"cannot compute: {exc}") from exc


def _eval(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise ValueError(f"exponent above {MAX_EXPONENT}")
        result = _BINARY[type(node.op)](left, right)
        if isinstance(result, int) and abs(result) > MAX_MAGNITUDE:
            raise OverflowError("result too large")
        return result
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
    ):
        return _FUNCTIONS[node.func.id](*(_eval(arg) for arg in node.args))
    raise ValueError(f"{type(node).__name__} is not allowed in an arithmetic expression")


_CALCULATOR_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {"expression": {"type": "string", "description": "The expression."}},
    "required": ["expression"],
}
_TIME_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {"timezone": {"type": "string", "description": "IANA zone; default UTC."}},
}


class Calculator(Tool):
    name = "calculator"
    description = (
        "Evaluate an arithmetic expression exactly, e.g. '(17 * 23) + 2**10' or 'sqrt(2)'. "
        "Supports + - * / // % ** and sqrt, abs, round, min, max, log, log10, exp, sin, cos, "
        "tan, floor, ceil, pi, e."
    )
    parameters = _CALCULATOR_PARAMETERS

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> str:
        expression = arguments.get("expression")
        if not isinstance(expression, str) or not expression.strip():
            raise ToolError("`expression` must be a non-empty string")
        result = evaluate(expression)
        if isinstance(result, float) and result.is_integer() and abs(result) < 2**53:
            return str(int(result))
        return str(result)


class CurrentTime(Tool):
    name = "current_time"
    description = (
        "The current date and time, in UTC or in an IANA time zone such as 'Europe/Paris'."
    )
    parameters = _TIME_PARAMETERS

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> str:
        zone_name = arguments.get("timezone") or "UTC"
        try:
            zone = UTC if zone_name == "UTC" else ZoneInfo(str(zone_name))
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ToolError(f"unknown time zone {zone_name!r}") from exc
        return datetime.now(zone).isoformat(timespec="seconds")


def builtin_tools() -> list[Tool]:
    """The tools every instance offers."""
    return [CurrentTime(), Calculator()]
