"""Edits applied to a variant's files: matching each SEARCH, re-indenting, guarding the result.

Pure: standard library only, values in and values out. `apply_answer` parses an answer
(`search.llm.answers`), keeps its edits on the editable surface, finds each SEARCH in the file
(exactly, then more and more leniently), and checks that the result changes something and
compiles. Everything that fails raises `PatchError`, whose `feedback` tells the LLM what to fix;
a SEARCH that matches nothing is answered with the closest lines of the file.
"""

from __future__ import annotations

import difflib
import posixpath
from dataclasses import dataclass

from search.llm.answers import FORMAT_REMINDER, Edit, PatchError, parse_answer


@dataclass
class PatchResult:
    """The editable files after an answer was applied."""

    files: dict[str, str]  # every editable file, edited or not
    changed: list[str]  # paths whose content changed, sorted
    description: str
    rationale: str


def apply_answer(files: dict[str, str], text: str, editable: list[str],
                 check_syntax: bool = True) -> PatchResult:
    """Apply an LLM answer to a variant's editable files.

    Edits apply in order, each to the result of the previous one. A SEARCH is matched exactly
    first, then ignoring trailing whitespace, then ignoring a uniform indentation shift (the
    replacement is re-indented by the same shift), then ignoring blank lines. File paths are
    normalised (`./x`, backslashes, an absolute or prefixed path or a bare file name that ends
    in exactly one editable path) before the surface check. Files with CRLF line ends keep them.

    Args:
        files: path -> content of the variant's editable files.
        text: the LLM's answer.
        editable: the paths an edit may touch.
        check_syntax: compile every changed `.py` file.

    Returns:
        The new files (all of them), the changed paths, description and rationale.

    Raises:
        PatchError: with `kind` and `feedback` (see the class) when the answer cannot be used.
    """
    parsed = parse_answer(text)
    if not parsed.edits:
        raise PatchError("no_edit", "Your answer contains no edit: no SEARCH/REPLACE block and "
                         "no FILE block.\n" + FORMAT_REMINDER)
    edits = [Edit(_on_surface(e.path, editable, n), e.search, e.replace)
             for n, e in enumerate(parsed.edits, 1)]

    crlf = {p for p, c in files.items() if "\r\n" in c}
    original = {p: c.replace("\r\n", "\n") for p, c in files.items()}
    current = dict(original)
    for number, edit in enumerate(edits, 1):
        current[edit.path] = _apply_edit(current, original, edit, number)

    changed = sorted(p for p in current if current[p] != original.get(p))
    if not changed:
        raise PatchError("noop", "Your edits leave every file exactly as it was (each REPLACE "
                         "equals its SEARCH). Make a real change.")
    if check_syntax:
        for path in changed:
            if path.endswith(".py"):
                _check_syntax(path, current[path])
    out = {p: (c.replace("\n", "\r\n") if p in crlf else c) for p, c in current.items()}
    return PatchResult(files=out, changed=changed, description=parsed.description,
                       rationale=parsed.rationale)


def _on_surface(path: str, editable: list[str], number: int) -> str:
    """The editable path an edit names, or PatchError("outside_surface")."""
    norm = posixpath.normpath(path.replace("\\", "/"))
    if norm in editable:
        return norm
    suffix = [e for e in editable if norm.endswith("/" + e) or e.endswith("/" + norm)]
    if len(suffix) == 1 and not norm.startswith(".."):
        return suffix[0]
    raise PatchError("outside_surface", f"Edit {number} changes `{path}`, which is not an "
                     f"editable file. You may change only: {', '.join(editable)}. Answer again "
                     "with edits to those files alone.")


def _apply_edit(current: dict[str, str], original: dict[str, str], edit: Edit,
                number: int) -> str:
    """The new content of `edit.path` after this edit."""
    if edit.search is None:
        return edit.replace
    content = current.get(edit.path)
    if not edit.search.strip():
        if content is None:
            return edit.replace + "\n" if edit.replace else ""
        raise PatchError("malformed", f"SEARCH block {number} for {edit.path} has an empty "
                         "SEARCH part. Copy the lines to change into it; to replace the whole "
                         "file use a FILE block instead.")
    if content is None:
        raise PatchError("no_match", f"SEARCH block {number} names {edit.path}, which does not "
                         f"exist. The editable files are: {', '.join(sorted(current))}.")

    file_lines = content.split("\n")
    trailing = file_lines[-1] == ""
    if trailing:
        file_lines.pop()
    search = edit.search.split("\n")
    replace = edit.replace.split("\n") if edit.replace else []

    for strategy in (_match_exact, _match_rstrip, _match_indent, _match_blankless):
        matches = strategy(file_lines, search)
        if len(matches) > 1:
            starts = ", ".join(str(m[0] + 1) for m in matches[:8])
            raise PatchError("ambiguous", f"SEARCH block {number} for {edit.path} matches "
                             f"{len(matches)} places (starting at lines {starts}). Include more "
                             "surrounding lines so it matches exactly one.")
        if matches:
            start, end, shift = matches[0]
            new = file_lines[:start] + [_shift(l, shift) for l in replace] + file_lines[end:]
            return "\n".join(new) + ("\n" if trailing else "")
    raise PatchError("no_match", _no_match_feedback(current, original, edit, number))


# A match is (first line, line after the last, indentation shift); the shift is "" or
# ("+", prefix) to add or ("-", prefix) to remove from each replacement line.


def _match_exact(lines: list[str], search: list[str]) -> list[tuple]:
    n = len(search)
    return [(i, i + n, None) for i in range(len(lines) - n + 1) if lines[i:i + n] == search]


def _match_rstrip(lines: list[str], search: list[str]) -> list[tuple]:
    n, want = len(search), [s.rstrip() for s in search]
    stripped = [l.rstrip() for l in lines]
    return [(i, i + n, None) for i in range(len(lines) - n + 1) if stripped[i:i + n] == want]


def _match_indent(lines: list[str], search: list[str]) -> list[tuple]:
    n = len(search)
    found = []
    for i in range(len(lines) - n + 1):
        shift = _uniform_shift(lines[i:i + n], search)
        if shift is not False:
            found.append((i, i + n, shift))
    return found


def _match_blankless(lines: list[str], search: list[str]) -> list[tuple]:
    """Match the non-blank search lines against the non-blank file lines."""
    want = [s for s in search if s.strip()]
    index = [k for k, l in enumerate(lines) if l.strip()]
    dense = [lines[k] for k in index]
    n = len(want)
    found = []
    for j in range(len(dense) - n + 1):
        shift = _uniform_shift(dense[j:j + n], want)
        if shift is not False:
            found.append((index[j], index[j + n - 1] + 1, shift))
    return found


def _uniform_shift(window: list[str], search: list[str]):
    """The indentation shift turning `search` into `window`, or False if there is none."""
    shift = None
    for have, want in zip(window, search):
        if not have.strip() and not want.strip():
            continue
        if have.strip() != want.strip():
            return False
        have_ws = have[:len(have) - len(have.lstrip())]
        want_ws = want[:len(want) - len(want.lstrip())]
        if have_ws.startswith(want_ws):
            this = ("+", have_ws[len(want_ws):])
        elif want_ws.startswith(have_ws):
            this = ("-", want_ws[len(have_ws):])
        else:
            return False
        if this[1] == "":
            this = ("+", "")
        if shift is None:
            shift = this
        elif shift != this:
            return False
    return shift


def _shift(line: str, shift) -> str:
    """Re-indent one replacement line by a match's shift."""
    if not shift or not shift[1] or not line.strip():
        return line
    sign, prefix = shift
    if sign == "+":
        return prefix + line
    if line.startswith(prefix):
        return line[len(prefix):]
    return line.lstrip()


# ---------------------------------------------------------------------------------------------
# Feedback


def _no_match_feedback(current: dict[str, str], original: dict[str, str], edit: Edit,
                       number: int) -> str:
    """Quote the SEARCH that matched nothing and the closest lines of the file."""
    search = edit.search.split("\n")
    parts = [f"SEARCH block {number} for {edit.path} matches nothing in the file (even ignoring "
             "whitespace, indentation and blank lines). Your SEARCH was:",
             _quote(search, None)]
    elsewhere = [p for p, c in current.items()
                 if p != edit.path and _matches_somewhere(c, search)]
    if elsewhere:
        parts.append(f"These lines are in {', '.join(elsewhere)}, not in {edit.path}.")
    elif (original.get(edit.path) != current[edit.path]
          and _matches_somewhere(original[edit.path], search)):
        parts.append("These lines were in the file, but an earlier edit in your answer already "
                     "changed them; edits apply in order, so write this block against the result "
                     "of the earlier ones (or merge the two blocks).")
    lines = current[edit.path].split("\n")
    start, end = _closest_region(lines, search)
    if end > start:
        start, end = max(0, start - 3), min(len(lines), end + 3)  # a little context around it
        while end > start and not lines[end - 1].strip():
            end -= 1
        parts.append(f"The most similar lines of {edit.path} (lines {start + 1}-{end}) are:")
        parts.append(_quote(lines[start:end], start))
    parts.append("Copy the SEARCH lines exactly from the current file and send your whole answer "
                 "again, every block included (nothing has been applied).")
    return "\n".join(parts)


def _matches_somewhere(content: str, search: list[str]) -> bool:
    lines = content.split("\n")
    return any(strategy(lines, search) for strategy in
               (_match_exact, _match_rstrip, _match_indent, _match_blankless))


def _closest_region(lines: list[str], search: list[str]) -> tuple[int, int]:
    """The window of the file (as many lines as the search) most similar to it (difflib)."""
    n = min(len(search), len(lines))
    if n == 0:
        return 0, 0
    target = "\n".join(s.strip() for s in search)
    stripped = [l.strip() for l in lines]
    scored = []
    for i in range(len(lines) - n + 1):
        matcher = difflib.SequenceMatcher(None, target, "\n".join(stripped[i:i + n]),
                                          autojunk=False)
        scored.append((matcher.quick_ratio(), i, matcher))
    scored.sort(key=lambda t: -t[0])
    best = max(scored[:12], key=lambda t: (t[2].ratio(), -t[1]))
    return best[1], best[1] + n


def _quote(lines: list[str], first: int | None, limit: int = 30) -> str:
    """A fenced quote of some lines, numbered from first + 1 when first is given."""
    shown = lines[:limit]
    if first is not None:
        shown = [f"{first + k + 1:4d}| {l}" for k, l in enumerate(shown)]
    if len(lines) > limit:
        shown.append(f"... ({len(lines) - limit} more lines)")
    return "```\n" + "\n".join(shown) + "\n```"


def _check_syntax(path: str, content: str) -> None:
    try:
        compile(content, path, "exec")
    except SyntaxError as exc:
        lineno = exc.lineno or 0
        lines = content.split("\n")
        code = lines[lineno - 1].rstrip() if 0 < lineno <= len(lines) else ""
        where = f" at line {lineno}: `{code.strip()}`" if code.strip() else f" at line {lineno}"
        raise PatchError("syntax", f"After your edits {path} does not compile: {exc.msg}{where}. "
                         "Fix it and send your whole answer again (nothing has been applied).") \
            from None
    except ValueError as exc:  # e.g. null bytes
        raise PatchError("syntax", f"After your edits {path} does not compile: {exc}.") from None


__all__ = ["PatchResult", "apply_answer"]
