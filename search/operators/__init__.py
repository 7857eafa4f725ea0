"""The operators that make a child from its parents: one module each (`mutation`, `crossover`,
`merge`, `tune`) over the small base in `base`, the guards a candidate passes before it is
committed (`guards`) and the AST rewriter of UPPER_SNAKE constants (`constants`).

May import: `search.llm` (prompts, answers, the client protocol), `search.record.format`; the
lineage and the tuner reach an operator through its `OperatorContext`, never by import.
"""
