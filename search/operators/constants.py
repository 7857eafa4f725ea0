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
    return _rewrite(source, find_constants(source), {name: format_value(v) for name, v in values.items()})


def merge_constants(base: str, a: str, b: str) -> str | None:
    """Three-way merge of two versions of a script that differ from `base` only in constants' values.

    Changes to neighbouring lines conflict in a line-based merge (git's), though two children that
    retuned different constants merge without doubt: each constant takes the value of the side that
    changed it. Both sides setting one constant to the same text is no conflict either.

    Returns:
        The merged source, or None when a side changes anything but the value expressions of
        base's numeric constants (a line, a comment, a constant added or removed), when both sides
        change one constant differently, or when a version does not parse.
    """
    try:
        found = {"base": find_constants(base), "a": find_constants(a), "b": find_constants(b)}
    except SyntaxError:
        return None
    if not found["base"] or found["a"].keys() != found["base"].keys() or found["b"].keys() != found["base"].keys():
        return None
    base_lines = base.splitlines(keepends=True)
    base_text = {name: _segment(base_lines, c) for name, c in found["base"].items()}
    changes = []
    for side, source in (("a", a), ("b", b)):
        lines = source.splitlines(keepends=True)
        changed = {name: _segment(lines, c) for name, c in found[side].items()}
        changed = {name: text for name, text in changed.items() if text != base_text[name]}
        try:
            if _rewrite(base, found["base"], changed) != source:
                return None  # something besides the constants' values differs
        except ValueError:
            return None
        changes.append(changed)
    ours, theirs = changes
    if any(ours[name] != theirs[name] for name in ours.keys() & theirs.keys()):
        return None
    return _rewrite(base, found["base"], {**ours, **theirs})


def _segment(lines: list[str], c: Constant) -> str:
    """The source text of a one-line constant's value expression ('' for one spanning lines)."""
    if c.line != c.end_line:
        return ""
    return lines[c.line - 1].encode()[c.col : c.end_col].decode()


def _rewrite(source: str, found: dict[str, Constant], texts: dict[str, str]) -> str:
    """`source` with the value expressions of the named constants replaced by `texts`.

    Raises:
        KeyError: naming a constant not in `found`.
        ValueError: for a constant whose value spans several lines.
    """
    missing = [name for name in texts if name not in found]
    if missing:
        raise KeyError(f"the training script defines no numeric constant {', '.join(missing)}")
    lines = source.splitlines(keepends=True)
    # Replace from the bottom up so earlier positions stay valid (columns are UTF-8 byte offsets).
    for name in sorted(texts, key=lambda n: (found[n].line, found[n].col), reverse=True):
        c = found[name]
        if c.line != c.end_line:
            raise ValueError(f"constant {name} spans several lines; it cannot be rewritten in place")
        row = lines[c.line - 1].encode()
        lines[c.line - 1] = (row[: c.col] + texts[name].encode() + row[c.end_col :]).decode()
    return "".join(lines)
