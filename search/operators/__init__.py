"""The operators that make a child from its parents: one module each (`mutation`, `crossover`,
`merge`, `tune`) over the small base in `base`, the guards a candidate passes before it is
committed (`guards`) and the AST rewriter of UPPER_SNAKE constants (`constants`).

May import: `search.llm` (prompts, answers, the client protocol), `search.record.format`; the
lineage and the tuner reach an operator through its `OperatorContext`, never by import.
"""

from search.operators.base import Operator
from search.operators.crossover import LLMCrossover
from search.operators.merge import GitMerge
from search.operators.mutation import LLMMutation
from search.operators.tune import Tune

OPERATORS: dict[str, Operator] = {op.name: op for op in (LLMMutation(), LLMCrossover(), GitMerge(), Tune())}
