"""What each change of an ablation did, from the run's trials (pure).

Deltas are (without the change) - (with the change), paired by trial seed: for leave-one-out the
variant with the change reverted minus the variant, for add-one the seed minus the seed with the
change alone. A positive val_bpb delta means the change helps; a positive memory delta that it
saves memory. `verdict` compares |delta| with the run's noise floor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from search.ablation.plan import ADD_ONE, KINDS, LEAVE_ONE_OUT, Candidate, Change
from search.record.format import MISSING, first_line
from eval.record import Status


@dataclass
class Effect:
    """What removing (leave-one-out) or adding (add-one) one change did, over paired repeats.

    Deltas are (without the change) - (with the change), per trial seed run by both sides: a
    positive delta_bpb means the change lowers val_bpb (it helps); a positive delta_mem_mb that it
    saves memory.
    """

    change: str
    kind: str
    label: str
    variant: str | None  # the candidate's variant (None when skipped)
    reference: str  # what it is compared with: the target (leave-one-out) or the seed (add-one)
    n: int = 0  # paired repeats
    delta_bpb: float | None = None
    delta_bpb_std: float | None = None  # sample std of the paired deltas (None for n < 2)
    delta_mem_mb: float | None = None
    beyond_noise: bool | None = None  # |delta_bpb| > the run's noise floor (None: unknown)
    note: str = ""  # skipped, failed or pending, and why


def ok_runs(trials: list[dict[str, Any]], variant: str, default_seed: int) -> dict[int, tuple[float, float | None]]:
    """trial seed -> (val_bpb, peak_mem_mb) of the variant's ok trials (the first per seed)."""
    runs: dict[int, tuple[float, float | None]] = {}
    for t in sorted(trials, key=lambda t: t.get("number", 0)):
        if t.get("variant") != variant or t.get("status") != Status.OK or t.get("val_bpb") is None:
            continue
        runs.setdefault(int(t.get("trial_seed", default_seed)), (float(t["val_bpb"]), t.get("peak_mem_mb")))
    return runs


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def change_effect(kind: str, candidate: dict[int, tuple[float, float | None]],
                  reference: dict[int, tuple[float, float | None]], floor: float | None) -> dict[str, Any]:
    """n, delta_bpb (mean, std) and delta_mem_mb over the seeds both sides have, and beyond_noise.

    Args:
        kind: leave_one_out (candidate = without the change, reference = the variant) or add_one
            (candidate = with it, reference = the seed).
        candidate, reference: as from `ok_runs`.
        floor: the run's noise floor of val_bpb (None: not measured).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown ablation kind {kind!r}; expected one of {KINDS}")
    sign = 1.0 if kind == LEAVE_ONE_OUT else -1.0
    seeds = sorted(set(candidate) & set(reference))
    bpb = [sign * (candidate[s][0] - reference[s][0]) for s in seeds]
    mem = [sign * (candidate[s][1] - reference[s][1]) for s in seeds
           if candidate[s][1] is not None and reference[s][1] is not None]
    mean, std = _mean_std(bpb)
    return {"n": len(seeds), "delta_bpb": mean, "delta_bpb_std": std, "delta_mem_mb": _mean_std(mem)[0],
            "beyond_noise": None if mean is None or floor is None else abs(mean) > floor}


def _trouble(trials: list[dict[str, Any]], variant: str) -> str:
    """What keeps a variant's runs from counting: failures (the last one's cause) and runs not finished."""
    live = [t for t in trials if t.get("variant") == variant and t.get("status") != Status.REQUEUED]
    failed = [t for t in live if t.get("status") not in (None, Status.OK)]
    waiting = sum(1 for t in live if not t.get("status"))
    parts = []
    if failed:
        last = failed[-1]
        cause = first_line(last.get("reason"), 120)
        parts.append(f"{variant}: {len(failed)} run(s) failed ({last['status']}: {cause})")
    if waiting:
        parts.append(f"{variant}: {waiting} run(s) waiting or running")
    return "; ".join(parts)


def verdict(effect: Effect) -> str:
    """helps / hurts (beyond the noise floor), within noise, or MISSING ('-': not measured)."""
    if effect.delta_bpb is None:
        return MISSING
    if effect.beyond_noise is False:
        return "within noise"
    word = "helps" if effect.delta_bpb > 0 else "hurts" if effect.delta_bpb < 0 else "no effect"
    return word if effect.beyond_noise else f"{word} (no noise floor)"


def measure_effects(changes: list[Change], candidates: list[Candidate], assignment: dict[tuple[str, str], str],
                    trials: list[dict[str, Any]], target: str, seed: str, default_seed: int,
                    floor: float | None) -> list[Effect]:
    """One Effect per change and kind (leave-one-out first), from the run's trials.

    Args:
        changes: from `decompose`.
        candidates: from `build_candidates`.
        assignment: (change id, kind) -> the variant that holds the candidate's files.
        trials: rows of `Scheduler.trials()`.
        target, seed: the variant taken apart and the seed, by name.
        default_seed: the trial seed of a trial that names none (the run's trial.seed).
        floor: the run's noise floor of val_bpb (None: not measured).
    """
    by_key = {(c.change, c.kind): c for c in candidates}
    references = {LEAVE_ONE_OUT: target, ADD_ONE: seed}
    ref_runs = {kind: ok_runs(trials, name, default_seed) for kind, name in references.items()}
    effects = []
    for change in changes:
        for kind in KINDS:
            cand = by_key.get((change.id, kind))
            name = assignment.get((change.id, kind))
            effect = Effect(change.id, kind, change.label, name, references[kind])
            if cand is None or cand.skipped:
                effect.note = f"skipped: {cand.skipped if cand else 'no candidate'}"
            elif name is None:
                effect.note = "not queued"
            else:
                measured = change_effect(kind, ok_runs(trials, name, default_seed), ref_runs[kind], floor)
                for key, value in measured.items():
                    setattr(effect, key, value)
                effect.note = "; ".join(filter(None, (_trouble(trials, name), _trouble(trials, references[kind]))))
                if effect.n == 0 and not effect.note:
                    effect.note = "no run shares a trial seed with its reference"
            effects.append(effect)
    return effects
