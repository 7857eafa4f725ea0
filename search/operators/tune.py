"""Optuna tuning: the tuner proposes values of numeric UPPER_SNAKE constants of train/train.py within
`search.tune_ranges` (all of them, or `search.tune_count` chosen at random); the child changes those
constants and nothing else.
"""

from __future__ import annotations

import random
from typing import Any

from search.operators.base import (TRAIN_FILE, OperatorContext, OperatorFailed, OperatorNotApplicable, Parent,
                                   Proposal, clip)
from search.operators.constants import find_constants, format_value, set_constants

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
        return Proposal(files, [parent], self.name, clip(desc), extra={"tune_trial": number, "tuned": changed})



def _like(old: Any, new: float) -> Any:
    """Keep an integer constant an integer."""
    if isinstance(old, bool):
        return bool(round(new))
    if isinstance(old, int):
        return int(round(new))
    return float(new)
