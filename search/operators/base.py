"""The operators' base: what an operator gets (`Parent`, `OperatorContext`), what it returns
(`Proposal`) or raises (`OperatorFailed`, `OperatorNotApplicable`), the `Operator` protocol, and
the ask-apply-retry exchange with the LLM that the LLM operators share.

An operator returns a `Proposal` or raises `OperatorFailed`, whose reason is recorded as a
rejected candidate. Guards, commits and queueing are the producer's business.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

from search.llm.answers import PatchError
from search.llm.client import LLMClient, LLMError, SpendCapReached
from search.llm.patch import apply_answer
from search.llm.prompts import VariantView, retry_messages

TRAIN_FILE = "train/train.py"
DESCRIPTION_MAX_CHARS = 160  # an operator's own description is cut to this


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


def clip(text: str, limit: int = DESCRIPTION_MAX_CHARS) -> str:
    """One line of at most `limit` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class locked:
    """The lineage lock of the context, if it has one, held for a block."""

    def __init__(self, ctx: OperatorContext):
        self.lock = ctx.lineage_lock

    def __enter__(self):
        if self.lock:
            self.lock.acquire()

    def __exit__(self, *exc):
        if self.lock:
            self.lock.release()
