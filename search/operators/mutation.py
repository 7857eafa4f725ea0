"""LLM mutation: the LLM edits one parent (SEARCH/REPLACE blocks, or whole files); an answer
whose edits do not apply goes back with the error, `llm.patch_retries` times.
"""

from __future__ import annotations

from search.llm.prompts import mutation_messages
from search.operators.base import OperatorContext, Parent, Proposal, ask_for_edit

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
