"""Operators: how a child variant is made from one or two parents.

One small interface, four implementations:

- `LLMMutation`: the LLM edits one parent (SEARCH/REPLACE blocks, whole-file fallback); an
  answer whose edits do not apply is sent back with the error for a bounded number of retries.
- `LLMCrossover`: the LLM combines two parents (shown with their common ancestor); the child is a
  merge commit with both parents.
- `GitMerge`: a three-way merge of two lineages; a clean merge needs no LLM, a conflict goes to
  the LLM to resolve (or the operator gives up when there is none).
- `Tune`: an Optuna sampler proposes values of numeric UPPER_SNAKE constants within declared
  ranges; the child changes those constants and nothing else.

An operator returns a `Proposal` or raises `OperatorFailed`, whose reason is recorded as a
rejected candidate. Guards, commits and queueing are the loop's business.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

from search.operators.constants import find_constants, format_value, merge_constants, set_constants
from search.lineage.repo import LineageError
from search.llm.client import LLMClient, LLMError, SpendCapReached
from search.llm.answers import PatchError
from search.llm.patch import apply_answer
from search.llm.prompts import VariantView, conflict_messages, crossover_messages, mutation_messages, retry_messages

TRAIN_FILE = "train/train.py"


@dataclass
class Parent:
    """An evaluated variant as operators see it."""

    name: str
    commit: str
    files: dict[str, str]
    description: str
    val_bpb: float | None
    peak_mem_mb: float | None
    status: str
    history: list[str] = field(default_factory=list)

    def view(self) -> VariantView:
        """What the LLM may see (never test_bpb)."""
        return VariantView(name=self.name, files=self.files, description=self.description, val_bpb=self.val_bpb,
                           peak_mem_mb=self.peak_mem_mb, status=self.status, history=self.history)


@dataclass
class Proposal:
    """A candidate child, before guards."""

    files: dict[str, str]
    parents: list[Parent]
    operator: str
    description: str
    rationale: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # operator-specific attributes (e.g. tune trial)


class OperatorFailed(Exception):
    """The operator could not make a usable child; `kind` and `reason` are recorded."""

    def __init__(self, kind: str, reason: str):
        super().__init__(f"{kind}: {reason}")
        self.kind = kind
        self.reason = reason


class OperatorNotApplicable(OperatorFailed):
    """These parents give this operator nothing to do (one is the other's ancestor, a conflict with no
    LLM to resolve it, nothing to tune): no candidate was made, so nothing is recorded."""


@dataclass
class OperatorContext:
    """Everything an operator may use besides its parents."""

    program: str
    editable: list[str]
    budget_seconds: float
    front: list[Parent] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    pinned: dict[str, Any] = field(default_factory=dict)
    llm: LLMClient | None = None
    lineage: Any = None  # search.lineage.repo.Lineage (merge base, three-way merge)
    lineage_lock: threading.Lock | None = None
    tuner: Any = None  # search.run.scheduler.Tuner
    tune_ranges: dict[str, Any] = field(default_factory=dict)
    tune_count: int | None = None  # constants a tune child changes (None: all in tune_ranges)
    rng: random.Random | None = None  # the search's own random choices (which constants a tune child changes)
    patch_retries: int = 2


class Operator(Protocol):
    name: str
    arity: int  # parents it needs
    needs_llm: bool

    def propose(self, parents: list[Parent], ctx: OperatorContext) -> Proposal: ...


def ask_for_edit(ctx: OperatorContext, messages: list[dict], base_files: dict[str, str], purpose: str):
    """Ask the LLM, apply its edits to `base_files`, and re-ask with the error when they do not apply.

    Returns:
        search.llm.patch.PatchResult of the first answer that applies.

    Raises:
        OperatorFailed: when the LLM fails or no answer applies within ctx.patch_retries re-asks.
        SpendCapReached: when the spending cap stops the call (the loop turns LLM operators off).
    """
    if ctx.llm is None:
        raise OperatorFailed("no_llm", "this operator needs an LLM and none is configured")
    for attempt in range(ctx.patch_retries + 1):
        try:
            answer = ctx.llm.complete(messages, purpose=purpose)
        except SpendCapReached:
            raise
        except LLMError as exc:
            raise OperatorFailed("llm_error", str(exc)) from exc
        try:
            return apply_answer(base_files, answer.text, ctx.editable)
        except PatchError as exc:
            if attempt == ctx.patch_retries:
                raise OperatorFailed(exc.kind, exc.feedback) from exc
            messages = retry_messages(messages, answer.text, exc.feedback)
    raise AssertionError("unreachable")


class LLMMutation:
    name = "mutation"
    arity = 1
    needs_llm = True

    def propose(self, parents: list[Parent], ctx: OperatorContext) -> Proposal:
        (parent,) = parents
        messages = mutation_messages(ctx.program, parent.view(), [p.view() for p in ctx.front], ctx.failures,
                                     ctx.editable, ctx.pinned, ctx.budget_seconds)
        result = ask_for_edit(ctx, messages, parent.files, "mutation")
        return Proposal(result.files, [parent], self.name, result.description, result.rationale)


class LLMCrossover:
    name = "crossover"
    arity = 2
    needs_llm = True

    def propose(self, parents: list[Parent], ctx: OperatorContext) -> Proposal:
        a, b = parents
        ancestor = None
        if ctx.lineage is not None:
            with _locked(ctx):
                base = ctx.lineage.merge_base(a.commit, b.commit)
                if base:
                    ancestor = Parent("ancestor", base, ctx.lineage.read_files(base), "their common ancestor",
                                      None, None, "ok")
        messages = crossover_messages(ctx.program, a.view(), b.view(), ancestor.view() if ancestor else None,
                                      [p.view() for p in ctx.front], ctx.failures, ctx.editable, ctx.pinned,
                                      ctx.budget_seconds)
        result = ask_for_edit(ctx, messages, a.files, "crossover")
        return Proposal(result.files, [a, b], self.name, result.description, result.rationale)


class GitMerge:
    name = "merge"
    arity = 2
    needs_llm = False  # only a conflict needs one

    def propose(self, parents: list[Parent], ctx: OperatorContext) -> Proposal:
        a, b = parents
        if ctx.lineage is None:
            raise OperatorFailed("no_lineage", "git merge needs the lineage")
        with _locked(ctx):
            base = ctx.lineage.merge_base(a.commit, b.commit)
            if base in (a.commit, b.commit):
                raise OperatorNotApplicable("ancestor", f"{a.name} and {b.name} are one lineage: the merge is the descendant")
            merged, conflicts = ctx.lineage.three_way_merge(base, a.commit, b.commit)
            ancestor = _read_or_empty(ctx.lineage, base) if conflicts else {}
        description = f"merge of {a.name} ({a.description}) and {b.name} ({b.description})"
        # Lines changed side by side conflict for git even when each side only retuned its own
        # constants; those merge constant by constant.
        by_constants = {}
        for path in conflicts:
            if path in ancestor:
                text = merge_constants(ancestor[path], a.files[path], b.files[path])
                if text is not None:
                    by_constants[path] = text
        merged.update(by_constants)
        conflicts = [p for p in conflicts if p not in by_constants]
        if not conflicts:
            extra = {"constant_merge": sorted(by_constants)} if by_constants else {}
            return Proposal(merged, [a, b], self.name, _clip(description), extra=extra)
        if ctx.llm is None:
            raise OperatorNotApplicable("merge_conflict", f"{', '.join(conflicts)} conflict and no LLM is configured to "
                                        "resolve them")
        messages = conflict_messages(ctx.program, a.view(), b.view(), {p: merged[p] for p in conflicts},
                                     ctx.editable, ctx.pinned, ctx.budget_seconds)
        result = ask_for_edit(ctx, messages, merged, "merge_conflict")
        left = [p for p in conflicts if "<<<<<<<" in result.files[p] or ">>>>>>>" in result.files[p]]
        if left:
            raise OperatorFailed("merge_conflict", f"conflict markers remain in {', '.join(left)}")
        return Proposal(result.files, [a, b], self.name, _clip(result.description or description), result.rationale,
                        extra={"conflicts": conflicts})


class Tune:
    name = "tune"
    arity = 1
    needs_llm = False

    def propose(self, parents: list[Parent], ctx: OperatorContext) -> Proposal:
        (parent,) = parents
        source = parent.files.get(TRAIN_FILE)
        if source is None or ctx.tuner is None:
            raise OperatorFailed("no_tuner", f"tuning needs {TRAIN_FILE} and the tuner")
        present = find_constants(source)
        ranges = {k: v for k, v in ctx.tune_ranges.items() if k in present and k not in ctx.pinned}
        if not ranges:
            raise OperatorNotApplicable("nothing_to_tune", f"{parent.name} defines none of the constants in search.tune_ranges "
                                 "(or the trial preset pins them all)")
        if ctx.tune_count and len(ranges) > ctx.tune_count:
            rng = ctx.rng or random.Random()
            ranges = {k: ranges[k] for k in sorted(rng.sample(sorted(ranges), ctx.tune_count))}
        number, values = ctx.tuner.suggest(ranges)
        values = {k: _like(present[k].value, v) for k, v in values.items()}
        changed = {k: v for k, v in values.items() if format_value(v) != format_value(present[k].value)}
        if not changed:
            ctx.tuner.report(number, None)
            raise OperatorNotApplicable("noop", "the tuner proposed the parent's own values")
        files = dict(parent.files, **{TRAIN_FILE: set_constants(source, changed)})
        desc = "tune " + ", ".join(f"{k} {format_value(present[k].value)}->{format_value(v)}" for k, v in changed.items())
        return Proposal(files, [parent], self.name, _clip(desc), extra={"tune_trial": number, "tuned": changed})


OPERATORS: dict[str, Operator] = {op.name: op for op in (LLMMutation(), LLMCrossover(), GitMerge(), Tune())}


def _read_or_empty(lineage: Any, rev: str | None) -> dict[str, str]:
    """The editable files at `rev`, or {} when there is none or it lacks one of them."""
    if not rev:
        return {}
    try:
        return lineage.read_files(rev)
    except LineageError:
        return {}


def _like(old: Any, new: float) -> Any:
    """Keep an integer constant an integer."""
    if isinstance(old, bool):
        return bool(round(new))
    if isinstance(old, int):
        return int(round(new))
    return float(new)


def _clip(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _locked:
    def __init__(self, ctx: OperatorContext):
        self.lock = ctx.lineage_lock

    def __enter__(self):
        if self.lock:
            self.lock.acquire()

    def __exit__(self, *exc):
        if self.lock:
            self.lock.release()
