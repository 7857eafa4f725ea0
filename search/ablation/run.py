"""The ablation of a variant: which of the changes that led to it actually matter?

    python -m search report ablation run.name=<name> [variant=v0042] [ablation.repeats=3]

1. The target (variant=, default: the best variant the search made) and its first-parent path from
   the seed (v0000) are read from the study and the lineage; `ablation_plan.decompose` cuts the
   difference into changes and `build_candidates` makes, per change, the target without it
   (leave-one-out) and the seed with it alone (add-one).
2. Each candidate becomes a variant like any other: a commit in the lineage (parent: the target or
   the seed), a name (the next free vNNNN) and a WAITING trial in the run's study per repeat
   (operator `ablation`, attribute `ablation` = {target, change, kind}, trial seeds seed, seed+1,
   ...). Candidates whose files are already a variant (the seed, an earlier step, an earlier
   ablation) reuse it; the target and the seed get repeats too, so every delta compares runs with
   the same trial seeds. A (variant, trial seed) that already has a trial is never queued again, so
   a rerun trains only what is missing.
3. A worker of this process trains the queued ablation trials through the search's own workers
   and trial executor (`search.run.loop.build_workers`, taking only ablation trials): results land
   in the study and results.tsv, variants get tags.
4. `search.ablation.report` writes outputs/<run>/report/ablation-<target>.{md,html,png,json}.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, TextIO

from search.ablation.effects import Effect, measure_effects
from search.ablation.plan import LEAVE_ONE_OUT, Candidate, Change, Step, build_candidates, decompose
from search.config import AblationConfig, UserError
from search.lineage.repo import Lineage
from search.operators.guards import content_hash
from search.record.attrs import CandidateAttrs, commit_message, next_variant_name, variant_number
from search.record.data import SEED, aggregate_variants, best_variant, path_from_seed, pick_variant
from search.record.runs import RunState
from search.run.liveness import dead_here, worker_name
from search.run.loop import build_workers, run_progress, say_to
from eval.record import Status
from search.run.scheduler import Scheduler
from search.run.store import RunStore

OPERATOR = "ablation"


class AblationError(UserError):
    """The ablation cannot start: no such variant, nothing to take apart, ...; the message says why."""


@dataclass
class Ablation:
    """What an ablation planned, queued, trained and measured."""

    target: str
    repeats: int
    trial_seeds: list[int]
    changes: list[Change]
    notes: list[str]
    candidates: list[Candidate]
    assignment: dict[tuple[str, str], str]  # (change id, kind) -> the variant holding the candidate
    new_variants: list[str]  # committed by this call
    queued: int  # trials enqueued by this call
    trained: int  # trials trained by this call
    effects: list[Effect] = field(default_factory=list)
    noise: dict[str, Any] | None = None  # the run's noise attribute (mean, std, n, floor)
    target_info: dict[str, Any] = field(default_factory=dict)
    seed_info: dict[str, Any] = field(default_factory=dict)


def choose_target(variants: dict[str, dict[str, Any]], variant: str | None, population: int | None) -> str:
    """The variant to take apart: `variant` (a name, `best` or `pareto:<mb>`), or by default the best
    variant of the search (ablation variants left out).

    Raises:
        AblationError: for the seed, a variant that has not ended ok, or a run with nothing ok yet.
        search.record.data.PickError: for an unknown variant or a pick nothing satisfies.
    """
    if variant:
        name = pick_variant(variants, variant)
    else:
        searched = {n: v for n, v in variants.items() if v["operator"] != OPERATOR}
        best = best_variant(searched, population)
        if best is None:
            raise AblationError("no variant of this run has ended ok yet: nothing to take apart")
        name = best["name"]
    if name == SEED:
        raise AblationError(f"{name} is the seed: it has no changes to take apart (name one with variant=v0042)")
    status = variants[name]["status"]
    if status != Status.OK:
        raise AblationError(f"{name} has not ended ok (status {status or 'waiting or running'}): its changes "
                            "cannot be measured against it; name a variant that trained")
    return name


def lineage_steps(variants: dict[str, dict[str, Any]], target: str, lineage: Lineage) -> list[Step]:
    """The first-parent steps from the seed to `target`, each with its parent's files and its own."""
    files: dict[str, dict[str, str]] = {}

    def read(commit: str) -> dict[str, str]:
        if commit not in files:
            files[commit] = lineage.read_files(commit)
        return files[commit]

    return [Step(s.name, s.description, read(s.parent_commit), read(s.commit))
            for s in path_from_seed(variants, target)[1:]]


def run_ablation(state: RunState, settings: AblationConfig, variant: str | None, out: TextIO = sys.stdout) -> Ablation:
    """Plan, queue and (with settings.work) train the ablation of a variant, and measure it.

    Args:
        state: the run, as `search.record.runs.load_run` read it.
        settings: the `ablation` config (repeats, max_changes, hunks, work).
        variant: the variant to take apart (None: the best).
        out: where progress lines go.

    Raises:
        AblationError, search.record.data.PickError: see `choose_target`.
        search.lineage.repo.LineageError: if a commit of the lineage is missing.
    """
    variants = state.variants
    target = choose_target(variants, variant, state.population)
    repeats = settings.repeats or state.conf.search.noise_repeats
    if repeats < 1:
        raise AblationError(f"ablation.repeats must be at least 1, got {repeats}")
    base_seed = state.conf.trial.seed
    trial_seeds = [base_seed + k for k in range(repeats)]
    scheduler = Scheduler(state.conf.storage.url, state.run_dir, state.name)
    store = RunStore(scheduler, state.lineage(), state.run_dir, state.editable, state.population,
                     state.conf.search.noise_k)
    try:
        steps = lineage_steps(variants, target, store.lineage)
        plan = decompose(steps, split_hunks=settings.hunks, max_changes=settings.max_changes)
        if not plan.changes:
            raise AblationError(f"{target} has the seed's editable files: there is no change to take apart")
        seed_files = store.read_files(variants[SEED]["commit"])
        candidates = build_candidates(seed_files, store.read_files(variants[target]["commit"]), plan.changes)
        _say(out, f"[ablation] {target}: {len(plan.changes)} change(s) over {len(steps)} step(s) from the seed, "
                  f"{sum(1 for c in candidates if c.skipped is None)} candidate(s), {repeats} repeat(s) each "
                  f"(trial seeds {', '.join(map(str, trial_seeds))})")
        for note in plan.notes:
            _say(out, f"[ablation] note: {note}")
        queue = _Queue(store, base_seed)
        queue.ensure(queue.existing(target), trial_seeds, {"target": target, "change": None, "kind": "reference"})
        queue.ensure(queue.existing(SEED), trial_seeds, {"target": target, "change": None, "kind": "reference"})
        changes = {c.id: c for c in plan.changes}
        assignment = {}
        for cand in candidates:
            if cand.skipped is not None:
                _say(out, f"[ablation] {cand.change} {cand.kind}: skipped: {cand.skipped}")
                continue
            parent = target if cand.kind == LEAVE_ONE_OUT else SEED
            attrs = queue.variant_for(cand, changes[cand.change], target, parent, variants)
            assignment[(cand.change, cand.kind)] = attrs.variant
            queue.ensure(attrs, trial_seeds, {"target": target, "change": cand.change, "kind": cand.kind})
        _say(out, f"[ablation] queued {queue.queued} trial(s), {len(queue.new_variants)} new variant(s)"
                  + (f" ({', '.join(queue.new_variants)})" if queue.new_variants else "")
                  + ("" if queue.queued else ": every measurement was already there"))
        trained = work(state, store, out) if settings.work else 0
        trials, attrs = store.trials(), store.run_attrs()
    finally:
        store.close()
    noise = attrs.get("noise")
    result = Ablation(target=target, repeats=repeats, trial_seeds=trial_seeds, changes=plan.changes, notes=plan.notes,
                      candidates=candidates, assignment=assignment, new_variants=queue.new_variants,
                      queued=queue.queued, trained=trained, noise=noise)
    result.effects = measure_effects(plan.changes, candidates, assignment, trials, target, SEED, base_seed,
                                     noise.get("floor") if noise else None)
    now = aggregate_variants(trials)
    result.target_info, result.seed_info = now[target], now[SEED]
    return result


class _Queue:
    """Commits candidates and enqueues the trials an ablation still lacks."""

    def __init__(self, store: RunStore, base_seed: int):
        self.store, self.base_seed = store, base_seed
        self.queued = 0
        self.new_variants: list[str] = []
        self.rows: dict[str, dict[str, Any]] = {}  # variant -> its first live trial (its identity)
        self.by_hash: dict[str, str] = {}  # content hash -> variant
        self.have: set[tuple[str, int]] = set()  # (variant, trial seed) with a trial waiting, running or finished
        for t in store.live_trials():
            if not t.get("variant"):
                continue
            self.rows.setdefault(t["variant"], t)
            self.by_hash.setdefault(t["content_hash"], t["variant"])
            self.have.add((t["variant"], int(t.get("trial_seed", base_seed))))

    def existing(self, name: str) -> CandidateAttrs:
        """The identity of a variant already in the study, for enqueueing more of its runs."""
        row = self.rows[name]
        return CandidateAttrs(variant=name, commit=row["commit"], parents=row.get("parents", []),
                              parent_names=row.get("parent_names", []), description=row["description"],
                              content_hash=row["content_hash"], generation=row.get("generation", 0), operator=OPERATOR)

    def variant_for(self, cand: Candidate, change: Change, target: str, parent: str,
                    variants: dict[str, dict[str, Any]]) -> CandidateAttrs:
        """The variant holding the candidate's files: one already in the study, or a new commit."""
        digest = content_hash(cand.files, self.store.editable)
        if digest in self.by_hash:
            return self.existing(self.by_hash[digest])
        taken = [t["variant"] for t in self.store.trials() if t.get("variant")]
        name = next_variant_name(taken + self.new_variants)
        way = "without" if cand.kind == LEAVE_ONE_OUT else "seed +"
        description = f"ablation of {target}: {way} {change.id} ({change.headline})"
        p = variants[parent]
        with self.store.lineage_lock:
            commit = self.store.lineage.commit_variant(cand.files, [p["commit"]],
                                                       commit_message(name, description, OPERATOR, [parent]))
            self.store.lineage.refs.mark_candidate(commit, variant_number(name))
        attrs = CandidateAttrs(variant=name, commit=commit, parents=[p["commit"]], parent_names=[parent],
                               description=description, content_hash=digest, generation=p["generation"] + 1,
                               operator=OPERATOR)
        self.rows[name] = attrs.attrs()
        self.by_hash[digest] = name
        self.new_variants.append(name)
        return attrs

    def ensure(self, identity: CandidateAttrs, trial_seeds: list[int], key: dict[str, Any]) -> None:
        """Enqueue the variant once per trial seed that has no trial of it yet."""
        for k, seed in enumerate(trial_seeds):
            if (identity.variant, seed) in self.have:
                continue
            self.store.enqueue(replace(identity, ablation=key, trial_seed=seed, repeat=k))
            self.have.add((identity.variant, seed))
            self.queued += 1


def _is_ablation(attrs: dict[str, Any]) -> bool:
    return attrs.get("operator") == OPERATOR


def _dead_here(row: dict[str, Any]) -> bool:
    """A running ablation trial whose worker was a process of this machine that no longer exists."""
    return row.get("operator") == OPERATOR and dead_here(row)


def work(state: RunState, store: RunStore, out: TextIO = sys.stdout) -> int:
    """Train the waiting ablation trials of the run (any target's) here; returns how many were trained.

    A running ablation trial left by a process of this machine that died is queued again first.
    Trials of the search itself are left to the search.
    """
    requeued = store.requeue(_dead_here)
    if requeued:
        _say(out, f"[ablation] re-queued trial(s) {requeued} left running by a process that died")
    waiting = sum(1 for w in store.waiting() if _is_ablation(w))
    if not waiting:
        return 0
    from eval.data.prepare import prepare_data

    # The progress line counts trials against max_trials: here, the trained ones plus this queue.
    conf = replace(state.conf, search=replace(state.conf.search, max_trials=len(store.trained()) + waiting))
    prepared = prepare_data(asdict(conf.data), conf.trial.vocab_size, log=lambda line: _say(out, line))
    workers = build_workers(conf, store, prepared.spec(), lambda line: _say(out, line), production_over=lambda: True)
    started = time.time()
    workers.executor.on_finished = lambda: _say(out, run_progress(
        store, conf.search.max_trials, list(workers.running.values()), store.run_attrs().get("llm_usage") or {},
        started, 1).line())
    return workers.work(worker_name("ablation"), accept=_is_ablation, until_empty=True)


def _say(out: TextIO, line: str) -> None:
    say_to(out)(line)
