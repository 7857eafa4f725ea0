"""Git merge: a three-way merge of two lineages. A clean merge needs no LLM; where both sides only
changed values of constants on neighbouring lines, each constant comes from the side that changed
it; other conflicts go to the LLM (or the merge is not applicable without one).
"""

from __future__ import annotations

from typing import Any

from search.lineage.repo import LineageError
from search.llm.prompts import conflict_messages
from search.operators.base import (OperatorContext, OperatorFailed, OperatorNotApplicable, Parent, Proposal,
                                   ask_for_edit, clip, locked)
from search.operators.constants import merge_constants

class GitMerge:
    name = "merge"
    arity = 2
    needs_llm = False  # only a conflict needs one

    def propose(self, parents: list[Parent], ctx: OperatorContext) -> Proposal:
        a, b = parents
        if ctx.lineage is None:
            raise OperatorFailed("no_lineage", "git merge needs the lineage")
        with locked(ctx):
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
            return Proposal(merged, [a, b], self.name, clip(description), extra=extra)
        if ctx.llm is None:
            raise OperatorNotApplicable("merge_conflict", f"{', '.join(conflicts)} conflict and no LLM is configured to "
                                        "resolve them")
        messages = conflict_messages(ctx.program, a.view(), b.view(), {p: merged[p] for p in conflicts},
                                     ctx.editable, ctx.pinned, ctx.budget_seconds)
        result = ask_for_edit(ctx, messages, merged, "merge_conflict")
        left = [p for p in conflicts if "<<<<<<<" in result.files[p] or ">>>>>>>" in result.files[p]]
        if left:
            raise OperatorFailed("merge_conflict", f"conflict markers remain in {', '.join(left)}")
        return Proposal(result.files, [a, b], self.name, clip(result.description or description), result.rationale,
                        extra={"conflicts": conflicts})



def _read_or_empty(lineage: Any, rev: str | None) -> dict[str, str]:
    """The editable files at `rev`, or {} when there is none or it lacks one of them."""
    if not rev:
        return {}
    try:
        return lineage.read_files(rev)
    except LineageError:
        return {}
