"""LLM crossover: the LLM combines two parents, shown with their common ancestor; the child is a
merge commit with both parents.
"""

from __future__ import annotations

from search.llm.prompts import crossover_messages
from search.operators.base import OperatorContext, Parent, Proposal, ask_for_edit, locked

class LLMCrossover:
    name = "crossover"
    arity = 2
    needs_llm = True

    def propose(self, parents: list[Parent], ctx: OperatorContext) -> Proposal:
        a, b = parents
        ancestor = None
        if ctx.lineage is not None:
            with locked(ctx):
                base = ctx.lineage.merge_base(a.commit, b.commit)
                if base:
                    ancestor = Parent("ancestor", base, ctx.lineage.read_files(base), "their common ancestor",
                                      None, None, "ok")
        messages = crossover_messages(ctx.program, a.view(), b.view(), ancestor.view() if ancestor else None,
                                      [p.view() for p in ctx.front], ctx.failures, ctx.editable, ctx.pinned,
                                      ctx.budget_seconds)
        result = ask_for_edit(ctx, messages, a.files, "crossover")
        return Proposal(result.files, [a, b], self.name, result.description, result.rationale)
