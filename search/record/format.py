"""How figures and texts are written for people (pure): numbers, signed deltas, cells, lines, durations.

Every table, log line, prompt and report of the engine formats through these, so a missing figure
and a cut text read the same everywhere. A figure that is None, NaN or infinite is missing: it
prints as `missing` (MISSING, '-', unless the caller's format wants another marker, such as ''
in results.tsv or 'n/a' in a prompt).
"""

from __future__ import annotations

import math
from typing import Any

MISSING = "-"
ELLIPSIS = "..."


def _missing(value: Any) -> bool:
    return value is None or not math.isfinite(value)


def format_number(value: float | None, digits: int = 4, missing: str = MISSING) -> str:
    """`value` with `digits` places (`format_number(0.91234, 2)` is '0.91'); `missing` if it has none.

    Args:
        value: a number, or None.
        digits: places after the point.
        missing: what None, NaN and infinities print as.
    """
    return missing if _missing(value) else f"{value:.{digits}f}"


def format_signed(value: float | None, digits: int = 4, missing: str = MISSING) -> str:
    """A delta with its sign always shown ('+0.0120', '-3.5'); `missing` if it has none."""
    return missing if _missing(value) else f"{value:+.{digits}f}"


def format_cell(value: Any, digits: int = 4) -> str:
    """A table cell: floats to `digits` places, None and non-finite floats as MISSING, anything else as str."""
    if value is None or isinstance(value, float):
        return format_number(value, digits)
    return str(value)


def one_line(text: Any, width: int | None = None) -> str:
    """`text` (None as '') with every run of whitespace one space, cut to `width` characters ending in '...'."""
    text = " ".join(str(text or "").split())
    if width is None or len(text) <= width:
        return text
    if width <= len(ELLIPSIS):
        return text[:width]
    return text[:width - len(ELLIPSIS)] + ELLIPSIS


def first_line(text: Any, width: int = 200) -> str:
    """The first non-blank line of `text` on one line, cut to `width` characters as `one_line` cuts ('' if none)."""
    lines = str(text or "").strip().splitlines()
    return one_line(lines[0], width) if lines else ""


def format_duration(seconds: float | None) -> str:
    """A duration, rounded to the second: '45s', '3m07s', and from an hour on '2h05m'; '?' if unknown."""
    if _missing(seconds):
        return "?"
    h, rem = divmod(int(round(seconds)), 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")
