"""Chat messages for the LLM operators, built from the templates in `search/llm/templates/*.md`.

Pure: standard library only; the one thing read is the package's own template files.

Templates use `string.Template` placeholders: `$name` (or `${name}`), and `$$` for a literal
dollar sign. Braces mean nothing to them, so code with `{}` in a template or in a value passes
through untouched, and values are never expanded again. `render` raises KeyError for a
placeholder without a value and for a value without a placeholder.

What the LLM sees of a variant is a `VariantView`: code, description, val_bpb, peak memory,
status and lineage. It deliberately has no test_bpb: the held-out test figure must never steer
the search, so it never reaches a prompt.
"""

from __future__ import annotations

import difflib
import functools
import re
import string
from dataclasses import dataclass
from importlib import resources

from search.record.format import format_number

NOT_MEASURED = "n/a"  # a figure the model is shown that was never measured
FAILURE_REASON_MAX_CHARS = 300  # a failure's reason is cut to this (head and tail kept)


@dataclass
class VariantView:
    """What the LLM may see of a variant."""

    name: str  # e.g. "v0007"
    files: dict[str, str]  # editable path -> content
    description: str
    val_bpb: float | None
    peak_mem_mb: float | None
    status: str  # the trial's status: ok, crash, timeout, ...
    history: list[str]  # lineage: descriptions with their val_bpb, oldest first


# ---------------------------------------------------------------------------------------------
# Templates


@functools.lru_cache(maxsize=None)
def _template(name: str) -> string.Template:
    path = resources.files("search.llm") / "templates" / f"{name}.md"
    if not path.is_file():
        raise FileNotFoundError(f"no prompt template {name}.md in search/llm/templates/")
    return string.Template(path.read_text(encoding="utf-8"))


def _placeholders(template: string.Template) -> set[str]:
    names = set()
    for match in template.pattern.finditer(template.template):
        name = match.group("named") or match.group("braced")
        if name:
            names.add(name)
    return names


def render(name: str, **values: object) -> str:
    """Fill the template `search/llm/templates/<name>.md` with `values` (converted with `str`).

    Raises:
        FileNotFoundError: if there is no such template.
        KeyError: naming a placeholder the template has but `values` lacks, or a value the
            template has no placeholder for.
    """
    template = _template(name)
    wanted = _placeholders(template)
    missing = sorted(wanted - values.keys())
    if missing:
        raise KeyError(f"prompt template {name}.md needs a value for "
                       f"{', '.join('$' + m for m in missing)}")
    unused = sorted(values.keys() - wanted)
    if unused:
        raise KeyError(f"prompt template {name}.md has no placeholder for "
                       f"{', '.join('$' + u for u in unused)}")
    return template.substitute({k: str(v) for k, v in values.items()}).strip() + "\n"


# ---------------------------------------------------------------------------------------------
# Messages


def mutation_messages(program: str, parent: VariantView, front: list[VariantView],
                      failures: list[tuple[str, str]], editable: list[str],
                      pinned: dict[str, object], budget_seconds: float) -> list[dict]:
    """Messages asking the LLM for one change to `parent`.

    Args:
        program: the human's research direction (Markdown), quoted verbatim.
        parent: the variant to edit; its files are shown in full.
        front: the current Pareto front, shown as a table without code.
        failures: (description, reason) of recent failed trials.
        editable: the files the LLM may change.
        pinned: constants the trial preset overrides (name -> value).
        budget_seconds: training seconds per trial.

    Returns:
        [system message, user message].
    """
    user = render("mutation", program=program.strip(), parent_name=parent.name,
                  parent_figures=_figures(parent), history=_history(parent.history),
                  files=_files(parent.files, editable), front=_front(front, {parent.name}),
                  failures=_failures(failures), pinned=_pinned(pinned),
                  budget=_budget(budget_seconds))
    return [_system(editable, budget_seconds), {"role": "user", "content": user}]


def crossover_messages(program: str, a: VariantView, b: VariantView,
                       ancestor: VariantView | None, front: list[VariantView],
                       failures: list[tuple[str, str]], editable: list[str],
                       pinned: dict[str, object], budget_seconds: float) -> list[dict]:
    """Messages asking the LLM to combine parents `a` and `b`; its edits apply to `a`'s files.

    A's files are shown in full. B is shown as a diff: against their common `ancestor` (beside
    A's own diff against it) when there is one, else against A.

    Returns:
        [system message, user message].
    """
    if ancestor is not None:
        changes = "\n\n".join([
            f"{a.name} against their common ancestor {ancestor.name}:\n"
            + _diff(ancestor.files, a.files, ancestor.name, a.name, editable),
            f"{b.name} against their common ancestor {ancestor.name}:\n"
            + _diff(ancestor.files, b.files, ancestor.name, b.name, editable)])
    else:
        changes = (f"{b.name} against {a.name} (no common ancestor is known):\n"
                   + _diff(a.files, b.files, a.name, b.name, editable))
    user = render("crossover", program=program.strip(), a_name=a.name, a_figures=_figures(a),
                  a_history=_history(a.history), b_name=b.name, b_figures=_figures(b),
                  b_history=_history(b.history), changes=changes,
                  files=_files(a.files, editable), front=_front(front, {a.name, b.name}),
                  failures=_failures(failures), pinned=_pinned(pinned),
                  budget=_budget(budget_seconds))
    return [_system(editable, budget_seconds), {"role": "user", "content": user}]


def conflict_messages(program: str, a: VariantView, b: VariantView, conflicted: dict[str, str],
                      editable: list[str], pinned: dict[str, object],
                      budget_seconds: float) -> list[dict]:
    """Messages asking the LLM to resolve the git conflicts of merging `a` and `b`.

    Args:
        conflicted: path -> content with git conflict markers (only the conflicted files).

    Returns:
        [system message, user message]; the answer holds one FILE block per conflicted file.
    """
    paths = "\n".join(f"- {p}" for p in conflicted)
    user = render("merge_conflict", program=program.strip(), a_name=a.name,
                  a_description=_one_line(a.description), b_name=b.name,
                  b_description=_one_line(b.description),
                  conflicted=_files(conflicted, list(conflicted)), paths=paths,
                  pinned=_pinned(pinned), budget=_budget(budget_seconds))
    return [_system(editable, budget_seconds), {"role": "user", "content": user}]


def retry_messages(previous: list[dict], answer: str, feedback: str) -> list[dict]:
    """The conversation so far, the LLM's failed `answer`, and the feedback on why it failed."""
    return [dict(m) for m in previous] + [
        {"role": "assistant", "content": answer},
        {"role": "user", "content": render("retry", feedback=feedback.strip())},
    ]


# ---------------------------------------------------------------------------------------------
# Sections


def _system(editable: list[str], budget_seconds: float) -> dict:
    content = render("system", editable="\n".join(f"  - `{p}`" for p in editable),
                     budget=_budget(budget_seconds))
    return {"role": "system", "content": content}


def _budget(seconds: float) -> str:
    text = f"{seconds:g} seconds"
    if seconds >= 120 and seconds % 60 == 0:
        text += f" ({seconds / 60:g} minutes)"
    return text


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "(no description)"


def _figures(view: VariantView) -> str:
    return (f"{_one_line(view.description)}\n"
            f"val_bpb {format_number(view.val_bpb, 4, NOT_MEASURED)}, "
            f"peak memory {format_number(view.peak_mem_mb, 0, NOT_MEASURED)} MB, status {view.status}")


def _history(history: list[str]) -> str:
    if not history:
        return "(the seed: no ancestors)"
    return "\n".join(f"{k}. {_one_line(h)}" for k, h in enumerate(history, 1))


def _fence(content: str) -> str:
    """A backtick fence longer than any backtick run in `content`."""
    longest = max((len(run) for run in re.findall(r"`+", content)), default=0)
    return "`" * max(3, longest + 1)


def _files(files: dict[str, str], order: list[str]) -> str:
    """Each file under its path, in a fenced block; editable files first, in their order."""
    paths = [p for p in order if p in files] + [p for p in files if p not in order]
    blocks = []
    for path in paths:
        content = files[path].rstrip("\n")
        fence = _fence(content)
        language = "python" if path.endswith(".py") else ""
        blocks.append(f"## {path}\n\n{fence}{language}\n{content}\n{fence}")
    return "\n\n".join(blocks)


def _front(front: list[VariantView], highlight: set[str]) -> str:
    if not front:
        return "(empty: nothing has been measured yet)"
    rows = ["| variant | val_bpb | peak memory (MB) | description |", "| --- | --- | --- | --- |"]
    for view in sorted(front, key=lambda v: (v.val_bpb is None, v.val_bpb or 0.0)):
        name = f"{view.name} (parent)" if view.name in highlight else view.name
        description = _one_line(view.description).replace("|", "\\|")
        rows.append(f"| {name} | {format_number(view.val_bpb, 4, NOT_MEASURED)} "
                    f"| {format_number(view.peak_mem_mb, 0, NOT_MEASURED)} | {description} |")
    return "\n".join(rows)


def _failures(failures: list[tuple[str, str]]) -> str:
    if not failures:
        return "(none)"
    lines = []
    for description, reason in failures:
        reason = _one_line(reason)
        if len(reason) > FAILURE_REASON_MAX_CHARS:
            head = FAILURE_REASON_MAX_CHARS // 3
            tail = FAILURE_REASON_MAX_CHARS - head - 5
            reason = f"{reason[:head]} ... {reason[-tail:]}"
        lines.append(f"- {_one_line(description)}: {reason}")
    return "\n".join(lines)


def _pinned(pinned: dict[str, object]) -> str:
    if not pinned:
        return "(none: every constant in the files takes effect as written)"
    values = "\n".join(f"- `{name} = {value!r}`" for name, value in pinned.items())
    return ("The trial preset sets these module constants before `train(ctx)` runs, so changing "
            "their values in the file has no effect; change something else (the code may still "
            f"use them):\n{values}")


def _diff(old: dict[str, str], new: dict[str, str], old_name: str, new_name: str,
          order: list[str]) -> str:
    """A unified diff of two variants' files."""
    paths = [p for p in order if p in old or p in new]
    paths += sorted((old.keys() | new.keys()) - set(paths))
    chunks = []
    for path in paths:
        lines = list(difflib.unified_diff(
            old.get(path, "").splitlines(keepends=True),
            new.get(path, "").splitlines(keepends=True),
            fromfile=f"{old_name}/{path}", tofile=f"{new_name}/{path}", n=2))
        if lines:
            chunks.append("".join(l if l.endswith("\n") else l + "\n" for l in lines))
    if not chunks:
        return "(no difference in the editable files)"
    body = "".join(chunks).rstrip("\n")
    fence = _fence(body)
    return f"{fence}diff\n{body}\n{fence}"
