"""A candidate's trial attributes: the one type the producer, the seed's repeats and the ablation
enqueue, and the names and commit messages of variants.

The study stores the attributes as plain JSON (Optuna user attributes), under the keys below; a
field left None is not stored, so records made before a field existed read the same. In trial
attributes `parents` are the parents' commit shas and `parent_names` their variant names.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

RATIONALE_MAX_CHARS = 2000  # the LLM's reasoning kept with a candidate


@dataclass
class CandidateAttrs:
    """What a candidate is, as the study records it before it trains (or is refused)."""

    operator: str  # seed | mutation | crossover | merge | tune | ablation
    parents: list[str]  # the parents' commit shas
    parent_names: list[str]  # the parents' variant names, in the same order
    description: str
    variant: str | None = None  # v<NNNN>; None for a candidate refused before it was committed
    commit: str | None = None
    content_hash: str | None = None  # of the editable files: one variant trains once
    generation: int | None = None
    rationale: str | None = None  # the LLM's reasons, cut to RATIONALE_MAX_CHARS
    trial_seed: int | None = None  # the trial's seed when it is not trial.seed (repeats)
    repeat: int | None = None  # the repeat number of a measurement (seed, ablation)
    refusal: str | None = None  # the kind of refusal of a refused candidate
    tune_trial: int | None = None  # the tuner's trial that proposed the constants
    conflicts: list[str] | None = None  # files a merge resolved through the LLM
    constant_merge: list[str] | None = None  # constants a merge took from either side
    ablation: dict[str, Any] | None = None  # the ablation measurement this trial belongs to

    def __post_init__(self) -> None:
        if self.rationale is not None:
            self.rationale = self.rationale[:RATIONALE_MAX_CHARS]

    def attrs(self) -> dict[str, Any]:
        """The user attributes to store: every field that is set."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def of_row(cls, row: dict[str, Any]) -> CandidateAttrs:
        """The candidate attributes of a trial row (a study row also holds figures and status)."""
        known = {k: row[k] for k in cls.__dataclass_fields__ if k in row}
        known.setdefault("parents", [])
        known.setdefault("parent_names", [])
        known.setdefault("description", "")
        known.setdefault("operator", "")
        return cls(**known)


def variant_name(number: int) -> str:
    """v0042 for 42."""
    return f"v{number:04d}"


def variant_number(name: str) -> int:
    """42 for v0042."""
    return int(name.lstrip("v"))


def next_variant_name(names: list[str]) -> str:
    """The name after the highest of `names` (v0001 when there is none)."""
    return variant_name(1 + max((variant_number(n) for n in names), default=0))


def commit_message(name: str, description: str, operator: str, parent_names: list[str]) -> str:
    """The commit message of a variant: its description, then its operator and parents."""
    return f"{name}: {description}\n\noperator: {operator}\nparents: {', '.join(parent_names)}"
