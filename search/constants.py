"""Read and rewrite the UPPER_SNAKE hyperparameter constants of a training script (pure).

The tuning operator changes numbers and nothing else: the file is rewritten by replacing only the
value expression of each chosen assignment, so comments, layout and every other line stay as
they were.
"""

from __future__ import annotations

import ast
import operator
import re
from dataclasses import dataclass

_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.Pow: operator.pow, ast.FloorDiv: operator.floordiv}


@dataclass
class Constant:
    """A module-level numeric constant and where its value is written."""

    name: str
    value: float | int | bool
    line: int  # 1-based
    col: int
    end_line: int
    end_col: int


def _evaluate(node: ast.AST) -> float | int | bool:
    """Value of a constant numeric expression (numbers, unary minus, + - * / // **)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, bool)):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _evaluate(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return _BINOPS[type(node.op)](_evaluate(node.left), _evaluate(node.right))
    raise ValueError("not a numeric constant")


def find_constants(source: str) -> dict[str, Constant]:
    """The numeric UPPER_SNAKE constants assigned at module level, by name.

    Raises:
        SyntaxError: if the source does not parse.
    """
    found: dict[str, Constant] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if not (isinstance(target, ast.Name) and _NAME.match(target.id)):
            continue
        try:
            number = _evaluate(value)
        except (ValueError, ZeroDivisionError, OverflowError):
            continue
        found[target.id] = Constant(target.id, number, value.lineno, value.col_offset,
                                    value.end_lineno or value.lineno, value.end_col_offset or 0)
    return found


def format_value(value: float | int | bool) -> str:
    """A short literal for a number (integers stay integers, floats keep 4 significant digits)."""
    if isinstance(value, bool) or isinstance(value, int):
        return repr(value)
    return f"{value:.4g}" if "e" not in f"{value:.4g}" else repr(float(f"{value:.4g}"))


def set_constants(source: str, values: dict[str, float | int | bool]) -> str:
    """Rewrite the given constants' values in `source`, leaving everything else untouched.

    Raises:
        KeyError: naming a constant the source does not define.
    """
    found = find_constants(source)
    missing = [name for name in values if name not in found]
    if missing:
        raise KeyError(f"the training script defines no numeric constant {', '.join(missing)}")
    lines = source.splitlines(keepends=True)
    # Replace from the bottom up so earlier positions stay valid.
    for name in sorted(values, key=lambda n: (found[n].line, found[n].col), reverse=True):
        c = found[name]
        if c.line != c.end_line:
            raise ValueError(f"constant {name} spans several lines; it cannot be rewritten in place")
        row = lines[c.line - 1]
        prefix, suffix = row.encode()[: c.col].decode(), row.encode()[c.end_col :].decode()
        lines[c.line - 1] = prefix + format_value(values[name]) + suffix
    return "".join(lines)
