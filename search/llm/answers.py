"""An LLM's answer read as edits: its description, rationale, SEARCH/REPLACE blocks and whole files.

Pure: standard library only, values in and values out. The answer format (the prompts in
`search/llm/templates/` ask for it) is a `DESCRIPTION:` line, a rationale, then edits. An edit is
either a SEARCH/REPLACE block under a line naming the file:

    train/train.py
    <<<<<<< SEARCH
    <exact existing lines>
    =======
    <new lines>
    >>>>>>> REPLACE

or a whole new file, as a fenced block under `FILE: <path>` (or with the path in the fence's
info string, ```` ```python train/train.py ````). `<think>` sections are dropped. An answer that
cannot be used raises `PatchError`, whose `feedback` is a short message to send back to the LLM
so it can answer again; `search.llm.patch` applies the edits and raises it too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DESCRIPTION_MAX_CHARS = 120  # longer descriptions are cut (they go into tables and tags)

_SEARCH_RE = re.compile(r"^\s*<{5,9}\s*SEARCH\b.*$")
_DIVIDER_RE = re.compile(r"^\s*={5,9}\s*$")
_REPLACE_RE = re.compile(r"^\s*>{5,9}\s*REPLACE\b.*$")
_FENCE_RE = re.compile(r"^\s*(`{3,}|~{3,})\s*(.*?)\s*$")
_PATH_RE = re.compile(r"^/?(?:[\w.\-]+/)*[\w\-][\w.\-]*\.[A-Za-z]\w*$")
_FILE_LABEL_RE = re.compile(r"^\s*(?:#+\s*)?[*_]*\s*file\s*[*_]*\s*:\s*[*_]*\s*(.+?)\s*$",
                            re.IGNORECASE)
_DESCRIPTION_RE = re.compile(r"^\s*(?:#+\s*)?[*_]*\s*description\s*[*_]*\s*:\s*[*_]*\s*(.*?)\s*$",
                             re.IGNORECASE)
_DESCRIPTION_HEADING_RE = re.compile(r"^\s*#+\s*description\s*:?\s*$", re.IGNORECASE)
_THINK_RE = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)

FORMAT_REMINDER = """\
Answer in this format:
DESCRIPTION: <the idea in one line>
<a short rationale>
<path of an editable file>
<<<<<<< SEARCH
<lines copied exactly from the current file>
=======
<the new lines>
>>>>>>> REPLACE
(one block per change; or `FILE: <path>` followed by a fenced block holding the whole new file)"""


@dataclass
class Edit:
    """One SEARCH/REPLACE block (`search` set) or one whole-file replacement (`search` None)."""

    path: str
    search: str | None
    replace: str


@dataclass
class ParsedAnswer:
    """An answer split into its edits, its one-line description and the rationale before them."""

    edits: list[Edit]
    description: str
    rationale: str


class PatchError(Exception):
    """An answer that cannot be applied; `feedback` says why, in words meant for the LLM.

    `kind` is one of "no_edit", "no_match", "ambiguous", "outside_surface", "noop", "malformed",
    "syntax".
    """

    KINDS = ("no_edit", "no_match", "ambiguous", "outside_surface", "noop", "malformed", "syntax")

    def __init__(self, kind: str, feedback: str):
        if kind not in self.KINDS:
            raise ValueError(f"unknown PatchError kind {kind!r}; expected one of {self.KINDS}")
        super().__init__(feedback)
        self.kind = kind
        self.feedback = feedback


def parse_answer(text: str) -> ParsedAnswer:
    """Split an LLM answer into edits, description and rationale.

    Tolerates CRLF line ends, `<think>` sections, 5-9 marker characters, the file named in
    backticks / after `File:` / `###` / inside the fence, and blocks that omit the file line
    after the first (they reuse the previous block's file). Without a DESCRIPTION line the first
    line of the rationale stands in for it; one after the edits is also found.

    Raises:
        PatchError: kind "malformed" for a block without a file, a divider or an end marker, or
            an unclosed whole-file block.
    """
    lines = _THINK_RE.sub("", text.replace("\r\n", "\n").replace("\r", "\n")).split("\n")
    edits: list[Edit] = []
    first_edit_line: int | None = None
    last_path: str | None = None
    after_edits = 0  # first line after the last edit
    fence_end: int | None = None  # closing line of a fence that holds SEARCH/REPLACE blocks
    i = 0
    while i < len(lines):
        line = lines[i]
        if fence_end is not None and i == fence_end:
            fence_end = None
            i += 1
            continue
        if _SEARCH_RE.match(line):
            path, header = _path_before(lines, i)
            path = path or last_path
            number = len(edits) + 1
            if path is None:
                raise PatchError("malformed", f"SEARCH block {number} names no file: put the path "
                                 "of an editable file on the line just before `<<<<<<< SEARCH`.")
            edit, i = _read_block(lines, i, path, number)
            edits.append(edit)
            last_path, after_edits = path, i
            first_edit_line = header if first_edit_line is None else first_edit_line
            continue
        fence = _FENCE_RE.match(line)
        if fence and fence_end is None:
            close = _fence_close(lines, i, fence.group(1))
            body = lines[i + 1:close]
            if any(_SEARCH_RE.match(b) for b in body):
                fence_end = close  # step inside: its blocks are read line by line
                i += 1
                continue
            whole = _whole_file(lines, i, fence.group(2), body, close)
            if whole is not None:
                edit, header = whole
                edits.append(edit)
                last_path, after_edits = edit.path, close + 1
                first_edit_line = header if first_edit_line is None else first_edit_line
            i = close + 1
            continue
        i += 1

    prose_end = len(lines) if first_edit_line is None else first_edit_line
    description, used = _find_description(lines[:prose_end])
    if not description and edits:  # some models put it after their edits
        description = _find_description(lines[after_edits:])[0]
    rationale = "\n".join(l for k, l in enumerate(lines[:prose_end]) if k not in used).strip()
    if not description:
        description = next((l.strip() for l in rationale.split("\n") if l.strip()), "")
    return ParsedAnswer(edits=edits, description=_clip(description), rationale=rationale)


def _clean_path(raw: str) -> str | None:
    """The path a header line names, or None when the line is not just a path."""
    s = raw.strip()
    label = _FILE_LABEL_RE.match(s)
    if label:
        s = label.group(1)
    s = s.lstrip("#").strip().strip("*_").strip().strip("`'\"").strip().rstrip(":").strip()
    s = s.strip("`").replace("\\", "/")
    return s if _PATH_RE.match(s) else None


def _path_from_info(info: str) -> str | None:
    """A path named in a fence's info string (```python train/train.py)."""
    for token in re.split(r"[\s:=]+", info):
        path = _clean_path(token)
        if path:
            return path
    return None


def _path_before(lines: list[str], i: int) -> tuple[str | None, int]:
    """The file named just above a SEARCH marker at line i, and the first line of that header."""
    k = i - 1
    while k >= 0:
        s = lines[k].strip()
        if not s:
            k -= 1
            continue
        fence = _FENCE_RE.match(s)
        if fence:
            path = _path_from_info(fence.group(2))
            if path:
                return path, k
            k -= 1
            continue
        path = _clean_path(s)
        return (path, k) if path else (None, k + 1)
    return None, 0


def _read_block(lines: list[str], i: int, path: str, number: int) -> tuple[Edit, int]:
    """Read the SEARCH/REPLACE block whose marker is line i; return it and the line after it."""
    j = i + 1
    while j < len(lines) and not _DIVIDER_RE.match(lines[j]):
        if _REPLACE_RE.match(lines[j]) or _SEARCH_RE.match(lines[j]):
            break
        j += 1
    if j >= len(lines) or not _DIVIDER_RE.match(lines[j]):
        raise PatchError("malformed", f"SEARCH block {number} ({path}) has no `=======` line "
                         "between its SEARCH and REPLACE parts.")
    k = j + 1
    while k < len(lines) and not _REPLACE_RE.match(lines[k]):
        if _SEARCH_RE.match(lines[k]):
            break
        k += 1
    if k >= len(lines) or not _REPLACE_RE.match(lines[k]):
        raise PatchError("malformed", f"SEARCH block {number} ({path}) has no `>>>>>>> REPLACE` "
                         "line closing it (was the answer cut off?).")
    return Edit(path=path, search="\n".join(lines[i + 1:j]),
                replace="\n".join(lines[j + 1:k])), k + 1


def _fence_close(lines: list[str], i: int, marker: str) -> int:
    """Index of the line closing the fence opened at line i (len(lines) if it never closes)."""
    char, count = marker[0], len(marker)
    for k in range(i + 1, len(lines)):
        s = lines[k].strip()
        if len(s) >= count and s == char * len(s):
            return k
    return len(lines)


def _whole_file(lines: list[str], i: int, info: str, body: list[str],
                close: int) -> tuple[Edit, int] | None:
    """A whole-file edit if the fence at line i is introduced as one, else None."""
    path, header = _path_from_info(info), i
    if path is None:
        k = i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        if k >= 0 and _FILE_LABEL_RE.match(lines[k]):
            path, header = _clean_path(lines[k]), k
    if path is None and body and _FILE_LABEL_RE.match(body[0]):
        path, body = _clean_path(body[0]), body[1:]
    if path is None:
        return None
    if close >= len(lines):
        raise PatchError("malformed", f"The FILE block for {path} is never closed with ``` "
                         "(was the answer cut off?); send the complete file.")
    return Edit(path=path, search=None, replace="\n".join(body) + "\n"), header


def _find_description(prose: list[str]) -> tuple[str, set[int]]:
    """The description and the indices of the lines that carry it."""
    for k, line in enumerate(prose):
        m = _DESCRIPTION_RE.match(line)
        heading = _DESCRIPTION_HEADING_RE.match(line)
        if not m and not heading:
            continue
        value = m.group(1).strip("*_` ") if m else ""
        if value:
            return value, {k}
        for j in range(k + 1, len(prose)):  # "DESCRIPTION:" or "## Description" on its own line
            if prose[j].strip():
                return prose[j].strip().strip("*_` "), {k, j}
        return "", {k}
    return "", set()


def _clip(description: str) -> str:
    description = " ".join(description.split())
    if len(description) <= DESCRIPTION_MAX_CHARS:
        return description
    return description[:DESCRIPTION_MAX_CHARS - 3].rstrip() + "..."


__all__ = ["DESCRIPTION_MAX_CHARS", "FORMAT_REMINDER", "Edit", "ParsedAnswer", "PatchError", "parse_answer"]
