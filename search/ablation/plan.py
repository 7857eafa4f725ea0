"""Which changes make a variant, and the candidates that test each one alone (pure).

An ablation takes apart a variant's difference from the seed. Its **changes** are the steps of
its first-parent lineage (a step is the diff between a variant and its first parent) and, within a
step, its separate hunks when every one of them applies to the step's parent alone (the result
compiles and reads no name that nothing defines). For each change two **candidates** are built:

- leave-one-out: the variant with that change reverted;
- add-one: the seed with that change applied alone.

Applying a hunk (or its inverse) finds the lines it replaces by exact match together with the
lines around them; a hunk whose lines or surroundings are not found once, or a candidate that
does not compile, is skipped with the reason. `change_effects` turns the measured trials into
deltas of val_bpb and memory, both as (without the change) - (with the change): a positive
val_bpb delta means the change helps.

Everything here takes and returns values: the files are dicts of path -> text.
"""

from __future__ import annotations

import ast
import builtins
import difflib
from dataclasses import dataclass, field

from search.record.format import one_line
from search.config import UserError

CONTEXT = 3  # lines of surroundings a hunk is matched with (fewer are tried when these do not match)
FUZZ_LEVELS = (CONTEXT, 1, 0)  # context lines required on each side, strictest first
IN_PLACE_RATIO = 0.6  # lines at least this similar (difflib ratio) were edited in place, one by one
LEAVE_ONE_OUT = "leave_one_out"
ADD_ONE = "add_one"
KINDS = (LEAVE_ONE_OUT, ADD_ONE)
LABEL_WIDTH = 90  # characters of a changed line in a change's label
_MODULE_NAMES = frozenset(("__file__", "__name__", "__doc__", "__spec__", "__loader__", "__package__",
                           "__builtins__", "__annotations__", "__dict__", "__path__"))


class ChangeError(ValueError):
    """A change (or one of its hunks) does not apply to a text; the message says where and why."""


# --------------------------------------------------------------------------- hunks

@dataclass(frozen=True)
class Hunk:
    """One contiguous edit of one file: the `old` lines became the `new` lines.

    `before` and `after` hold the lines next to the edit as they read before it and after it
    (the neighbouring edits of the same diff may or may not be present where it is applied); a
    match accepts either. An empty context means the edit touches the file's start (or end).
    """

    file: str
    line: int  # 1-based line of the old text where the edit begins
    old: tuple[str, ...]
    new: tuple[str, ...]
    before: tuple[tuple[str, ...], tuple[str, ...]]
    after: tuple[tuple[str, ...], tuple[str, ...]]

    def inverse(self) -> Hunk:
        """The edit that undoes this one."""
        return Hunk(self.file, self.line, self.new, self.old, self.before, self.after)

    @property
    def first_changed_line(self) -> str:
        """The first non-blank added line, or the first removed one as `removed: ...`."""
        for line in self.new:
            if line.strip():
                return line.strip()
        for line in self.old:
            if line.strip():
                return f"removed: {line.strip()}"
        return "(blank lines)"

    def diff(self) -> str:
        """The hunk as a unified-diff fragment (its surroundings as they read before the edit)."""
        head = f"@@ {self.file} line {self.line} @@\n"
        body = [" " + s for s in self.before[0]] + ["-" + s for s in self.old] + ["+" + s for s in self.new] + \
               [" " + s for s in self.after[0]]
        return head + "".join(s if s.endswith("\n") else s + "\n" for s in body)


def diff_hunks(file: str, old_text: str, new_text: str) -> list[Hunk]:
    """The hunks turning `old_text` into `new_text`, top to bottom.

    Edits separated only by blank lines are one hunk (a blank line is no reason to cut an edit);
    a block of consecutive lines each edited in place (similar before and after, as when several
    constants are retuned) is one hunk per line.
    """
    a, b = old_text.splitlines(keepends=True), new_text.splitlines(keepends=True)
    ops = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    groups: list[list[tuple[str, int, int, int, int]]] = []
    current: list[tuple[str, int, int, int, int]] | None = None
    gap: list[tuple[str, int, int, int, int]] = []  # a blank equal run after the current hunk
    for op in ops:
        tag, i1, i2, _, _ = op
        if tag == "equal":
            if current is not None and all(not s.strip() for s in a[i1:i2]):
                gap = [op]
            else:
                current, gap = None, []
            continue
        if current is None:
            current = [op]
            groups.append(current)
        else:
            current.extend(gap + [op])
        gap = []
    hunks = []
    for group in [piece for g in groups for piece in _split_in_place(g, a, b)]:
        i1, j1 = group[0][1], group[0][3]
        i2, j2 = group[-1][2], group[-1][4]
        hunks.append(Hunk(
            file=file, line=i1 + 1, old=tuple(a[i1:i2]), new=tuple(b[j1:j2]),
            before=(tuple(a[max(0, i1 - CONTEXT):i1]), tuple(b[max(0, j1 - CONTEXT):j1])),
            after=(tuple(a[i2:i2 + CONTEXT]), tuple(b[j2:j2 + CONTEXT]))))
    return hunks


def _split_in_place(group: list[tuple[str, int, int, int, int]], a: list[str],
                    b: list[str]) -> list[list[tuple[str, int, int, int, int]]]:
    """A block of lines each edited in place (say three constants retuned) as one group per line."""
    if len(group) != 1 or group[0][0] != "replace":
        return [group]
    _, i1, i2, j1, j2 = group[0]
    if i2 - i1 < 2 or i2 - i1 != j2 - j1:
        return [group]
    similar = all(difflib.SequenceMatcher(None, a[i1 + k], b[j1 + k]).ratio() >= IN_PLACE_RATIO
                  for k in range(i2 - i1))
    if not similar:
        return [group]
    return [[("replace", i1 + k, i1 + k + 1, j1 + k, j1 + k + 1)] for k in range(i2 - i1)]


def files_hunks(old: dict[str, str], new: dict[str, str]) -> list[Hunk]:
    """The hunks of every file that differs, files in the order of `old` (then new files)."""
    hunks = []
    for rel in list(old) + [r for r in new if r not in old]:
        if old.get(rel, "") != new.get(rel, ""):
            hunks.extend(diff_hunks(rel, old.get(rel, ""), new.get(rel, "")))
    return hunks


def _context_ok(lines: list[str], start: int, end: int, hunk: Hunk, fuzz: int) -> bool:
    if fuzz == 0:
        return True

    def side_ok(option: tuple[str, ...], before: bool) -> bool:
        if not option:  # the edit was at the file's edge: it still must be
            return start == 0 if before else end == len(lines)
        k = min(fuzz, len(option))
        if before:
            return start >= k and lines[start - k:start] == list(option[-k:])
        return lines[end:end + k] == list(option[:k])

    return any(side_ok(o, True) for o in hunk.before) and any(side_ok(o, False) for o in hunk.after)


def apply_hunk(text: str, hunk: Hunk) -> str:
    """`text` with `hunk` applied: its old lines, found once with their surroundings, replaced.

    The full surroundings are tried first, then one line on each side, then none (the old lines
    alone, which must then be non-empty).

    Raises:
        ChangeError: if the old lines are not found, or found in more than one place.
    """
    lines = text.splitlines(keepends=True)
    n = len(hunk.old)
    for fuzz in FUZZ_LEVELS:
        if fuzz == 0 and n == 0:
            break  # an insertion with nothing around it has no place
        places = [p for p in range(len(lines) - n + 1)
                  if tuple(lines[p:p + n]) == hunk.old and _context_ok(lines, p, p + n, hunk, fuzz)]
        if len(places) == 1:
            p = places[0]
            return "".join(lines[:p] + list(hunk.new) + lines[p + n:])
        if len(places) > 1:
            raise ChangeError(f"{hunk.file} line {hunk.line}: the lines to replace match {len(places)} places")
    what = "the place to insert" if n == 0 else "the lines to replace"
    raise ChangeError(f"{hunk.file} line {hunk.line}: {what} ({hunk.first_changed_line!r}) are not there")


def apply_hunks(files: dict[str, str], hunks: tuple[Hunk, ...] | list[Hunk], reverse: bool = False) -> dict[str, str]:
    """`files` with every hunk applied in order (reverse: each hunk undone, last first).

    Raises:
        ChangeError: naming the first hunk that does not apply (or a file that is missing).
    """
    out = dict(files)
    for hunk in (reversed(hunks) if reverse else hunks):
        edit = hunk.inverse() if reverse else hunk
        if edit.file not in out:
            raise ChangeError(f"{edit.file} is not among the files")
        out[edit.file] = apply_hunk(out[edit.file], edit)
    return out


# --------------------------------------------------------------------------- checks

def unbound_names(text: str) -> set[str]:
    """Names the module reads that nothing in it binds and that are not builtins.

    Module-wide, not per scope: it catches a half-applied rename, not every NameError. A module
    with `from x import *` binds unknown names, so it has none.
    """
    tree = ast.parse(text)
    bound, loaded = set(dir(builtins)) | _MODULE_NAMES, set()
    augmented = {id(n.target) for n in ast.walk(tree) if isinstance(n, ast.AugAssign)}  # `x += 1` reads x first
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and id(node) in augmented:
            loaded.add(node.id)
        elif isinstance(node, ast.Name):
            (loaded if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name == "*":
                    return set()
                bound.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)) and node.name:
            bound.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            bound.add(node.rest)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            bound.update(node.names)
    return loaded - bound


def check_files(files: dict[str, str], reference: dict[str, str]) -> str | None:
    """Why `files` cannot run where `reference` could (None if nothing is found).

    A Python file must compile and must read no name that nothing defines, beyond those that
    `reference` already read.
    """
    for rel in sorted(files):
        if not rel.endswith(".py") or files[rel] == reference.get(rel):
            continue
        try:
            compile(files[rel], rel, "exec")
        except SyntaxError as exc:
            return f"{rel} does not compile: line {exc.lineno}: {exc.msg}"
        try:
            known = unbound_names(reference[rel]) if rel in reference else set()
        except SyntaxError:
            known = set()
        missing = sorted(unbound_names(files[rel]) - known)
        if missing:
            return f"{rel} reads {', '.join(missing)}, which nothing defines"
    return None


# --------------------------------------------------------------------------- changes

@dataclass(frozen=True)
class Step:
    """One step of a lineage: a variant and its first parent, with their editable files."""

    name: str
    description: str
    parent_files: dict[str, str]
    files: dict[str, str]


@dataclass(frozen=True)
class Change:
    """One change of an ablation: a whole step, one hunk of a step, or several early steps joined."""

    id: str  # v0003 (a step), v0003.2 (its second hunk), v0001..v0004 (steps joined)
    label: str  # one line: the step's description | its first changed line
    kind: str  # step | hunk | joined
    steps: tuple[str, ...]  # the lineage steps it comes from
    hunks: tuple[Hunk, ...]

    def diff(self) -> str:
        return "".join(h.diff() for h in self.hunks)

    @property
    def headline(self) -> str:
        """Its first changed line, short (for a trial's description or a plot's axis)."""
        return one_line(self.hunks[0].first_changed_line, 60) if self.hunks else ""


@dataclass
class Decomposition:
    """The changes of a variant, and notes on how they were made (hunks not split, steps joined...)."""

    changes: list[Change]
    notes: list[str] = field(default_factory=list)


def _step_changes(step: Step, hunks: list[Hunk], split: bool) -> tuple[list[Change], str | None]:
    """A step as one change, or one per hunk when every hunk applies alone; and why it was not split."""
    desc = one_line(step.description, 60)
    why = None
    if split and len(hunks) > 1:
        for k, hunk in enumerate(hunks, 1):
            try:
                alone = apply_hunks(step.parent_files, [hunk])
            except ChangeError as exc:
                why = f"hunk {k}: {exc}"
                break
            why = check_files(alone, step.parent_files)
            if why:
                why = f"hunk {k} alone: {why}"
                break
        else:
            return [Change(f"{step.name}.{k}", f"{step.name}: {desc} | {one_line(h.first_changed_line, LABEL_WIDTH)}",
                           "hunk", (step.name,), (h,)) for k, h in enumerate(hunks, 1)], None
    more = f" (+{len(hunks) - 1} more hunks)" if len(hunks) > 1 else ""
    label = f"{step.name}: {desc} | {one_line(hunks[0].first_changed_line, LABEL_WIDTH)}{more}"
    return [Change(step.name, label, "step", (step.name,), tuple(hunks))], why


def decompose(steps: list[Step], *, split_hunks: bool = True, max_changes: int = 12) -> Decomposition:
    """The changes that make the last step's variant from the first step's parent (the seed).

    Args:
        steps: the lineage, seed side first; each step's parent_files are the previous step's files.
        split_hunks: split a step into its hunks when every one applies to the step's parent alone.
        max_changes: at most this many changes: beyond it steps are not split, and beyond that the
            earliest steps are joined into one change.

    Raises:
        ValueError: if max_changes < 1.
    """
    if max_changes < 1:
        raise UserError(f"ablation.max_changes must be at least 1, got {max_changes}")
    notes: list[str] = []
    stepped = []
    for step in steps:
        hunks = files_hunks(step.parent_files, step.files)
        if hunks:
            stepped.append((step, hunks))
        else:
            notes.append(f"{step.name} changes no editable line; it is not a change")
    changes: list[Change] = []
    unsplit: list[str] = []
    for step, hunks in stepped:
        made, why = _step_changes(step, hunks, split_hunks)
        changes.extend(made)
        if why:
            unsplit.append(f"{step.name} ({why})")
    if unsplit:
        notes.append("kept whole, its hunks do not apply alone: " + "; ".join(unsplit))
    if len(changes) > max_changes and any(c.kind == "hunk" for c in changes):
        notes.append(f"{len(changes)} hunks exceed ablation.max_changes={max_changes}: one change per step")
        changes = [_step_changes(step, hunks, False)[0][0] for step, hunks in stepped]
    if len(changes) > max_changes:
        k = len(stepped) - max_changes + 1
        first, last = stepped[0][0], stepped[k - 1][0]
        joined = files_hunks(first.parent_files, last.files)
        notes.append(f"{len(stepped)} steps exceed ablation.max_changes={max_changes}: the first {k} "
                     f"({first.name}..{last.name}) are one change")
        changes = changes[k:]
        if joined:
            line = one_line(joined[0].first_changed_line, LABEL_WIDTH)
            label = f"{first.name}..{last.name}: {k} steps joined | {line}"
            changes.insert(0, Change(f"{first.name}..{last.name}", label, "joined",
                                     tuple(s.name for s, _ in stepped[:k]), tuple(joined)))
        else:
            notes.append(f"{first.name}..{last.name} together change nothing")
    return Decomposition(changes, notes)


# --------------------------------------------------------------------------- candidates

@dataclass(frozen=True)
class Candidate:
    """The files that test one change one way, or why there are none."""

    change: str  # the change's id
    kind: str  # leave_one_out | add_one
    files: dict[str, str] | None
    skipped: str | None = None


def build_candidates(seed_files: dict[str, str], variant_files: dict[str, str],
                     changes: list[Change]) -> list[Candidate]:
    """For each change: the variant with it reverted, and the seed with it applied alone.

    A change that does not apply cleanly there, or gives files that do not compile (or read an
    undefined name), or leaves the files as they were, gives a skipped candidate with the reason.
    """
    out = []
    for change in changes:
        for kind, target, reverse in ((LEAVE_ONE_OUT, variant_files, True), (ADD_ONE, seed_files, False)):
            where = "the variant" if reverse else "the seed"
            try:
                files = apply_hunks(target, change.hunks, reverse=reverse)
            except ChangeError as exc:
                out.append(Candidate(change.id, kind, None, f"does not apply to {where}: {exc}"))
                continue
            why = check_files(files, target)
            if why is None and files == target:
                why = f"leaves {where} unchanged"
            out.append(Candidate(change.id, kind, None if why else files, why))
    return out
