"""The producer: keeps `search.queue_size` candidates waiting until production is over.

Each candidate: choose an operator by `search.rates` (among those that can work now), choose its
parents (tournament on the Pareto ranks in a population, the best kept variant in the single
lineage), let the operator propose a child, pass it through the guards, commit it in the lineage
and enqueue it in the study. Every refused candidate is recorded with its reason; after
`MAX_CONSECUTIVE_REFUSALS` refusals in a row production stops.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any, Callable

from eval.record import Status
from search.config import Config, UserError
from search.llm.client import LLMClient, SpendCapReached
from search.operators import OPERATORS
from search.operators.base import Operator, OperatorContext, OperatorFailed, OperatorNotApplicable, Parent, Proposal
from search.operators.guards import check_candidate, content_hash
from search.record.attrs import CandidateAttrs
from search.record.data import SEED
from search.record.format import first_line
from search.run.failpoints import failpoint
from search.run.store import RunStore
from search.run.scheduler import Tuner
from search.selection.population import Member, select_parents, select_survivors

MAX_CONSECUTIVE_REFUSALS = 25  # the producer gives up after this many refused candidates in a row
MAX_NOT_APPLICABLE = 200  # ... or after this many draws in a row where the operator had nothing to do
MEASURING_OPERATORS = ("seed", "ablation")  # trials of known code: not counted as the search's, no verdict
FRONT_IN_PROMPT = 8  # front members shown to an operator


class Producer:
    """Makes candidates for one run.

    Args:
        conf: the run's configuration.
        store: the run's study and lineage.
        llm: the LLM client, or None (the operators that need none).
        tuner: the tune operator's sampler.
        program: the research direction (Markdown).
        say: where progress lines go.
        busy: whether a worker of this process is training (the sequential mode waits for it).
        clock: epoch seconds (the max_hours rule).
    """

    def __init__(self, conf: Config, store: RunStore, llm: LLMClient | None, tuner: Tuner, program: str,
                 say: Callable[[str], None], busy: Callable[[], bool] = lambda: False,
                 clock: Callable[[], float] = time.time):
        self.conf = conf
        self.s = conf.search
        self.store = store
        self.llm = llm
        self.tuner = tuner
        self.program = program
        self.say = say
        self.busy = busy
        self.clock = clock
        self.started = clock()
        self.rng = random.Random(self.s.seed)
        self.stop = threading.Event()
        self.wake = threading.Condition()
        self.closed = False  # no more candidates from here (a stop rule or a give-up)
        self.refusals_in_a_row = 0
        self.idle_tries = 0
        unknown = sorted(set(self.s.rates) - set(OPERATORS))
        if unknown:
            raise UserError(f"search.rates names an unknown operator {unknown[0]!r}; known: {', '.join(OPERATORS)}")

    # --- the thread

    def done(self) -> bool:
        """A stop rule holds (max_trials counted trials, max_hours) or production was closed."""
        counted = [t for t in self.store.live_trials() if t.get("variant") and t.get("operator") != "ablation"
                   and (t.get("status") != Status.REJECTED or t.get("trained"))]
        if len(counted) >= self.s.max_trials:
            return True
        if self.s.max_hours and self.clock() - self.started > 3600 * self.s.max_hours:
            return True
        return self.closed

    def run(self, on_fatal: Callable[[BaseException], bool]) -> None:
        """Produce until done or stopped; `on_fatal(exc)` decides whether an error stops the run
        (True) or only production (False, said once)."""
        while not self.stop.is_set():
            if self.done():
                self.store.set_run_attr("production", "done")
                return
            waiting = len(self.store.waiting())
            if waiting >= self.s.queue_size or (not self.s.overlap and (waiting or self.busy())):
                with self.wake:
                    self.wake.wait(0.5)
                continue
            try:
                self.produce_one()
            except Exception as exc:  # a bug or an unreachable store must not kill the run silently
                if on_fatal(exc):
                    return
                self.say(f"[search] producer error: {type(exc).__name__}: {exc}")
                self.closed = True
                return

    def notify(self) -> None:
        with self.wake:
            self.wake.notify_all()

    # --- one candidate

    def produce_one(self) -> str | None:
        """Make, guard, commit and enqueue one candidate; returns its name, or None if none was queued."""
        variants = self.store.variants()
        op = self.choose_operator(variants)
        if op is None:
            self.say("[search] no operator can make a child (no LLM, nothing to merge or tune): stopping production")
            self.closed = True
            return None
        parents = [self.store.parent(variants, n) for n in self.choose_parents(variants, op.arity)]
        generation = 1 + max((variants[p.name]["generation"] for p in parents), default=0)
        if self.s.max_generations and generation > self.s.max_generations:
            self.closed = True
            return None
        try:
            proposal = op.propose(parents, self.operator_context(variants))
        except OperatorNotApplicable as exc:
            self.idle_tries += 1
            if self.idle_tries >= MAX_NOT_APPLICABLE:
                self.say(f"[search] {MAX_NOT_APPLICABLE} attempts in a row found nothing to do ({exc.kind}: "
                         f"{first_line(exc.reason)}); stopping production")
                self.closed = True
            return None
        except OperatorFailed as exc:
            return self.refuse(op.name, parents, exc.kind, exc.reason)
        except SpendCapReached as exc:
            self.say(f"[search] LLM spending cap reached ({exc}); continuing with the operators that need none")
            self.save_llm_usage()
            self.llm = None
            return self.refuse(op.name, parents, "spend_cap", str(exc))
        finally:
            self.save_llm_usage()
        failure = check_candidate(proposal.files, parents[0].files, self.store.editable, self.store.known_hashes())
        if failure:
            return self.refuse(op.name, parents, failure.kind, failure.reason, proposal)
        failpoint("proposed")
        return self.commit(proposal, generation)

    def choose_operator(self, variants: dict[str, dict[str, Any]]) -> Operator | None:
        """An operator drawn by `search.rates` among those that can work now, or None."""
        evaluated = [v for v in variants.values() if v["status"] == Status.OK]
        usable = {}
        for name, rate in self.s.rates.items():
            op = OPERATORS[name]
            if rate <= 0 or (op.needs_llm and self.llm is None):
                continue
            if op.arity == 2 and (not self.conf.population or len(evaluated) < 2):
                continue
            if name == "merge" and self.llm is None and len(evaluated) < 2:
                continue
            if name == "tune" and not self.s.tune_ranges:
                continue
            usable[name] = rate
        if not usable:
            return None
        names = sorted(usable)
        return OPERATORS[self.rng.choices(names, weights=[usable[n] for n in names])[0]]

    def choose_parents(self, variants: dict[str, dict[str, Any]], arity: int) -> list[str]:
        """Single lineage: the best kept variant. Population: a tournament among the survivors."""
        if not self.conf.population:
            best = self.store.best(variants)
            return [best["name"] if best else SEED]
        members = [Member(v["name"], v.get("val_bpb"), v.get("peak_mem_mb"), True, v["generation"])
                   for v in variants.values() if v["status"] == Status.OK]
        if not members:
            return [SEED] * arity
        survivors = select_survivors(members, self.conf.population)
        return [m.name for m in select_parents(survivors, self.rng, arity, k=self.s.tournament_size)]

    def operator_context(self, variants: dict[str, dict[str, Any]]) -> OperatorContext:
        limit = self.s.failures_in_prompt
        front = [self.store.parent(variants, n) for n in self.store.front(variants)][:FRONT_IN_PROMPT]
        failures = [(v["description"], v["reason"]) for v in variants.values()
                    if v["status"] not in (None, Status.OK)][-limit:]
        refusals = [(t.get("description", ""), t.get("reason", "")) for t in self.store.trials()
                    if t.get("status") == Status.REJECTED and not t.get("variant")][-limit:]
        return OperatorContext(
            program=self.program, editable=self.store.editable, budget_seconds=self.conf.trial.budget_seconds,
            front=front, failures=(failures + refusals)[-limit:], pinned=dict(self.conf.trial.constants),
            llm=self.llm, lineage=self.store.lineage, lineage_lock=self.store.lineage_lock, tuner=self.tuner,
            tune_ranges=dict(self.s.tune_ranges), tune_count=self.s.tune_count, rng=self.rng,
            patch_retries=self.conf.llm.patch_retries)

    def refuse(self, operator: str, parents: list[Parent], kind: str, reason: str,
               proposal: Proposal | None = None) -> None:
        """Record a candidate that will not be trained (every bad edit is kept with its reason)."""
        candidate = CandidateAttrs(operator=operator, parents=[p.commit for p in parents],
                              parent_names=[p.name for p in parents],
                              description=proposal.description if proposal else "", refusal=kind)
        failpoint("refusing")
        if proposal is not None:
            candidate.content_hash = content_hash(proposal.files, self.store.editable)
            if "tune_trial" in proposal.extra:
                self.tuner.report(proposal.extra["tune_trial"], None)
        self.store.record_refused(candidate, f"{kind}: {reason}")
        self.refusals_in_a_row += 1
        self.say(f"[search] refused a {operator} of {','.join(p.name for p in parents)}: {kind}: {first_line(reason)}")
        if self.refusals_in_a_row >= MAX_CONSECUTIVE_REFUSALS:
            self.say(f"[search] {MAX_CONSECUTIVE_REFUSALS} candidates in a row were refused; stopping production")
            self.closed = True
        self.store.write_results()
        return None

    def commit(self, proposal: Proposal, generation: int) -> str:
        """Commit and enqueue a guarded proposal; returns the variant's name."""
        extra = {k: v for k, v in proposal.extra.items() if k in ("tune_trial", "conflicts", "constant_merge")}
        candidate = CandidateAttrs(
            operator=proposal.operator, parents=[p.commit for p in proposal.parents],
            parent_names=[p.name for p in proposal.parents], description=proposal.description,
            rationale=proposal.rationale, content_hash=content_hash(proposal.files, self.store.editable),
            generation=generation, **extra)
        self.store.commit_and_enqueue(candidate, proposal.files)
        failpoint("queued")
        self.refusals_in_a_row = 0
        self.idle_tries = 0
        self.say(f"[search] queued {candidate.variant} ({proposal.operator} of {','.join(candidate.parent_names)}): "
                 f"{proposal.description}")
        return candidate.variant

    def save_llm_usage(self) -> None:
        if self.llm is not None:
            self.store.set_run_attr("llm_usage", self.llm.usage.to_dict())
