"""Checks a candidate must pass before it is committed and trained (pure).

They stop accidents cheaply, before a trial costs device time: a change outside the editable
surface, code that does not parse, a copy of a variant already evaluated, and code that reaches
for what only the harness may touch (its own modules, the data files, the environment). The
harness's causality probe and its own metric are the second line; these are the first.
"""

from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass

# Modules a variant may not import: the harness and the engine (it would read the validation
# data or the metric), and process/network tools it has no use for in training.
FORBIDDEN_IMPORTS = ("eval", "search", "subprocess", "socket", "urllib", "requests", "http", "shutil")
# Calls a variant has no reason to make: reading files and the environment is the harness's job.
FORBIDDEN_CALLS = ("open", "exec", "eval", "compile", "__import__")
FORBIDDEN_ATTRIBUTES = ("environ", "getenv", "system", "popen", "load", "fromfile", "memmap", "read_text",
                        "read_bytes", "_exit", "kill")
_ALLOWED_LOAD_OWNERS = ("json",)  # json.loads of a literal is harmless; np.load / torch.load are not


@dataclass
class GuardFailure:
    """Why a candidate was refused."""

    kind: str  # outside_surface | syntax | duplicate | static | noop
    reason: str


def content_hash(files: dict[str, str], editable: list[str]) -> str:
    """The identity of a variant: SHA-256 over its editable files (path and content)."""
    h = hashlib.sha256()
    for rel in sorted(editable):
        h.update(rel.encode() + b"\0" + files.get(rel, "<missing>").encode() + b"\0")
    return h.hexdigest()


def check_surface(files: dict[str, str], editable: list[str]) -> GuardFailure | None:
    outside = sorted(set(files) - set(editable))
    if outside:
        return GuardFailure("outside_surface", f"changes files outside the editable surface: {', '.join(outside)} "
                            f"(editable: {', '.join(editable)})")
    missing = sorted(set(editable) - set(files))
    if missing:
        return GuardFailure("outside_surface", f"removes editable files: {', '.join(missing)}")
    return None


def check_syntax(files: dict[str, str]) -> GuardFailure | None:
    for rel, text in sorted(files.items()):
        if rel.endswith(".py"):
            try:
                compile(text, rel, "exec")
            except SyntaxError as exc:
                return GuardFailure("syntax", f"{rel} line {exc.lineno}: {exc.msg}")
    return None


def check_static(files: dict[str, str]) -> GuardFailure | None:
    """Refuse code that imports the harness, reads files or the environment, or starts processes."""
    for rel, text in sorted(files.items()):
        if not rel.endswith(".py"):
            continue
        for node in ast.walk(ast.parse(text)):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in FORBIDDEN_IMPORTS:
                    return GuardFailure("static", f"{rel} line {node.lineno}: imports {name}, which a variant may not use")
            if isinstance(node, ast.Call):
                func = node.func
                if isinstance(func, ast.Name) and func.id in FORBIDDEN_CALLS:
                    return GuardFailure("static", f"{rel} line {node.lineno}: calls {func.id}(), which a variant may not use")
                if isinstance(func, ast.Attribute) and func.attr in FORBIDDEN_ATTRIBUTES:
                    owner = func.value.id if isinstance(func.value, ast.Name) else ""
                    if owner not in _ALLOWED_LOAD_OWNERS:
                        return GuardFailure("static", f"{rel} line {node.lineno}: calls .{func.attr}(), which a "
                                            "variant may not use (data and environment are the harness's)")
            if isinstance(node, ast.Attribute) and node.attr == "environ":
                return GuardFailure("static", f"{rel} line {node.lineno}: reads os.environ; the harness hands a variant what it needs")
    return None


def check_candidate(files: dict[str, str], parent_files: dict[str, str], editable: list[str],
                    known_hashes: dict[str, str]) -> GuardFailure | None:
    """All guards in order; None when the candidate may be committed and trained.

    Args:
        files: the candidate's editable files.
        parent_files: its (first) parent's files.
        editable: the editable surface.
        known_hashes: content hash -> name of every variant already evaluated or queued.
    """
    for failure in (check_surface(files, editable), check_syntax(files)):
        if failure:
            return failure
    if files == parent_files:
        return GuardFailure("noop", "the change leaves the parent's files as they were")
    digest = content_hash(files, editable)
    if digest in known_hashes:
        return GuardFailure("duplicate", f"identical to {known_hashes[digest]}, already evaluated or queued")
    return check_static(files)
