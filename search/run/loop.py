"""The search loop: a producer makes candidates while workers train them.

    python -m search run [+population=8] [overrides]

One producer thread selects parents, applies an operator, guards the child, commits it in the
lineage and enqueues it in the study; one or more workers take queued trials, train them through
the runner (preflight first), report them to the study, tag the commit with its figures and
rewrite results.tsv. The study and the lineage are the record: a run started again with the same
`run.name` re-queues the trial that was running, repairs missing tags and carries on.

Without a population the loop is the single-lineage search: every child comes from the current
best, and it becomes the new best only if it beats it by more than the seed's noise floor.
"""

from __future__ import annotations

import errno
import json
import os
import random
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from search import PROJECT_ROOT
from eval.record import TrialRecord
from eval.data.tokenizer import write_atomic
from search.operators.guards import check_candidate, content_hash
from search.run.failpoints import failpoint
from search.lineage.repo import Lineage
from search.run.liveness import heartbeat_seconds, is_dead, stale_after_seconds, worker_name
from search.llm.client import LLMClient, OpenAIClient, SpendCapReached, llm_available
from search.operators.base import OPERATORS, OperatorContext, OperatorFailed, OperatorNotApplicable, Parent, Proposal
from search.selection.population import Member, NoiseFloor, improves, select_parents, select_survivors
from search.record.data import FIGURES, SEED, aggregate_variants, best_variant, front_names, seed_noise
from search.run.runner import run_trial_process
from search.run.sandbox import resolve_sandbox
from search.run.scheduler import Scheduler, SchedulerError, Tuner
from search.record.summary import Progress, RunSummary, count_by, eta_seconds, results_tsv
from eval.record import Status

MAX_CONSECUTIVE_REFUSALS = 25  # the producer gives up after this many refused candidates in a row
MAX_NOT_APPLICABLE = 200  # ... or after this many draws in a row where the operator had nothing to do
# Trials that measure known code rather than try a new idea: no preflight, no early stop, no keep verdict.
MEASURING_OPERATORS = ("seed", "ablation")
RESULT_FILE = "result.json"  # a trained trial's record, in its trial directory until the study has it
# Errors of the machine, not of a variant: the run stops at once (resumable) and says what to fix.
FATAL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def variant_name(number: int) -> str:
    return f"v{number:04d}"


def variant_number(name: str) -> int:
    return int(name.lstrip("v"))


class SearchRun:
    """One search run: its directory, study, lineage, LLM and threads.

    Args:
        conf: the resolved configuration (plain containers).
        run_dir: outputs/<run.name>/.
        llm: an LLM client to use instead of the configured one (tests, benchmarks).
        out: where progress lines and the summary go.
    """

    def __init__(self, conf: dict[str, Any], run_dir: Path, *, llm: LLMClient | None = None, out: TextIO = sys.stdout):
        self.conf = conf
        self.run_dir = Path(run_dir)
        self.name = conf["run"]["name"]
        self.editable = list(conf["editable"])
        self.s = conf["search"]
        self.population = conf.get("population")
        self.out = out
        self.rng = random.Random(self.s["seed"])
        self.stop = threading.Event()
        self.cond = threading.Condition()
        self.sched_lock = threading.RLock()
        self.lineage_lock = threading.RLock()
        self.running: dict[str, str] = {}  # worker -> variant
        self.refusals_in_a_row = 0
        self.idle_tries = 0
        self.production_closed = False
        self.started = time.time()
        self.remote_worker = False  # `python -m search worker`: no producer here; the study says when it ends
        self.fatal: BaseException | None = None  # a worker's or the producer's error that stops the run
        self._last_reap = 0.0
        self.llm: LLMClient | None = llm
        self._llm_note = "an injected client" if llm is not None else ""

    # ------------------------------------------------------------------ set-up

    def setup(self) -> None:
        from eval.data.prepare import prepare_data

        count = self.s.get("tune_count")
        if count is not None and int(count) < 1:
            raise ValueError(f"search.tune_count={count!r}: give how many constants a tune child changes (at least 1), "
                             "or null for all of search.tune_ranges")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.json").write_text(json.dumps(self.conf, indent=2, default=str))
        trial = self.conf["trial"]
        resolve_sandbox(trial.get("sandbox") or "auto")  # trial.sandbox=bwrap that cannot work: an error now
        self.prepared = prepare_data(self.conf["data"], trial["vocab_size"], log=self.say)
        self.prepared.check_evaluation(trial)
        repo = self.conf["lineage"]["repo"] or str(PROJECT_ROOT)
        self.lineage = Lineage(Path(repo), self.name, self.editable, self.conf["lineage"].get("remote"))
        self.scheduler = Scheduler(self.conf["storage"]["url"], self.run_dir, self.name)
        self.tuner = Tuner(self.scheduler, seed=self.s["seed"], sampler=self.s.get("tune_sampler", "tpe"),
                           startup_trials=self.s.get("tune_startup_trials", 5))
        self.program = _read_program(self.conf["program"])
        attrs = self.scheduler.run_attrs()
        if "base_commit" not in attrs:
            self.scheduler.set_run_attr("base_commit", self.lineage.base_commit())
            self.scheduler.set_run_attr("population", self.population)
            self.scheduler.set_run_attr("started_at", self.started)
        # Workers elsewhere (`python -m search worker`) train with these settings and learn from
        # `production` when the run is over. Not the storage and remote URLs, which may hold
        # credentials: each worker gives its own.
        self.scheduler.set_run_attr("config", {k: v for k, v in self.conf.items() if k not in ("storage", "lineage")})
        self.scheduler.set_run_attr("production", "open")
        self.base_commit = self.scheduler.run_attrs()["base_commit"]
        self.lineage.mark_candidate(self.base_commit, 0)  # workers elsewhere fetch the seed through it
        self._setup_llm(attrs.get("llm_usage"))
        resumed = self.scheduler.trials()
        if resumed:
            requeued = self._reap_dead(quiet=True)
            self.say(f"[search] resuming run {self.name}: {len(resumed)} trials in the study"
                     + (f", re-queued interrupted trial(s) {requeued}" if requeued else ""))
            self._repair_tags()
            self._write_results()
        self._enqueue_baseline()
        self.say(f"[search] run {self.name}: {'population ' + str(self.population) if self.population else 'single lineage'}"
                 f", budget {trial['budget_seconds']:.0f}s per trial ({trial['name']}), max {self.s['max_trials']} trials, "
                 f"study {self.scheduler.url}, tags search/{self.name}/v*")

    def attach(self, prepared, lineage: Lineage, scheduler: Scheduler) -> None:
        """Train queued trials of an existing run without `setup` (no producer, nothing re-queued or
        enqueued): the prepared data, the run's lineage and its study, already open."""
        self.prepared, self.lineage, self.scheduler = prepared, lineage, scheduler
        self.production_closed = True

    def attach_worker(self, prepared, lineage: Lineage, scheduler: Scheduler) -> None:
        """Work for a run whose producer runs elsewhere (`python -m search worker`): train what it
        queues until it says production is over and nothing waits or runs."""
        self.attach(prepared, lineage, scheduler)
        self.remote_worker = True
        self.tuner = Tuner(scheduler, seed=self.s["seed"], sampler=self.s.get("tune_sampler", "tpe"),
                           startup_trials=self.s.get("tune_startup_trials", 5))

    def _setup_llm(self, usage: dict | None) -> None:
        if self.llm is None:
            cfg = self.conf["llm"]
            ok, why = llm_available(cfg["base_url"], cfg["api_key_env"])
            if cfg.get("name") == "none" or not ok:
                self.say(f"[search] no LLM: {why if cfg.get('name') != 'none' else 'llm=none'}; using the operators "
                         "that need none (git merge of lineages, Optuna-tuned constants)")
                return
            self.llm = OpenAIClient(
                model=cfg["model"], base_url=cfg["base_url"], api_key_env=cfg["api_key_env"],
                temperature=cfg["temperature"], max_tokens=cfg["max_tokens"], timeout=cfg["timeout"],
                max_retries=cfg["max_retries"], price_prompt_per_million=cfg["price_prompt_per_million"],
                price_completion_per_million=cfg["price_completion_per_million"], spend_cap=cfg["spend_cap"],
                log_dir=self.run_dir / "llm")
            self._llm_note = f"{cfg['model']} at {cfg['base_url'] or 'the default OpenAI endpoint'}"
        if usage and hasattr(self.llm, "restore"):
            self.llm.restore(usage)
        self.say(f"[search] LLM: {self._llm_note}")

    def _enqueue_baseline(self) -> None:
        """The seed, trained search.noise_repeats times with different seeds (the noise floor).

        Only the repeats not in the study yet are queued (a run killed while queueing them gets
        the rest on resume)."""
        have = {t.get("repeat") for t in self.scheduler.trials()
                if t.get("operator") == "seed" and t.get("status") != Status.REQUEUED}
        files = self.lineage.read_files(self.base_commit)
        digest = content_hash(files, self.editable)
        for k in range(max(1, self.s["noise_repeats"])):
            if k in have:
                continue
            self.scheduler.enqueue({
                "variant": SEED, "commit": self.base_commit, "parents": [], "parent_names": [], "operator": "seed",
                "description": "seed" if k == 0 else f"seed, repeat {k} (noise floor)", "content_hash": digest,
                "trial_seed": self.conf["trial"]["seed"] + k, "repeat": k, "generation": 0,
            })
            failpoint("baseline-queued")

    def _repair_tags(self) -> None:
        """After a crash: every finished trial's variant gets its tag (figures) if it lacks one."""
        tags = self.lineage.tags()
        for name, info in self._variants().items():
            number = variant_number(name)
            if info["status"] is not None and number not in tags:
                self._tag(name, info)

    # ------------------------------------------------------------------ state

    def _variants(self) -> dict[str, dict[str, Any]]:
        """Evaluated and queued variants by name, from the study (the seed's repeats averaged)."""
        return aggregate_variants(self.scheduler.trials())

    def _noise(self, variants: dict[str, dict[str, Any]]) -> NoiseFloor | None:
        return seed_noise(variants, self.s["noise_k"])

    def _members(self, variants: dict[str, dict[str, Any]]) -> list[Member]:
        return [Member(v["name"], v.get("val_bpb"), v.get("peak_mem_mb"), v["status"] == Status.OK, v["generation"])
                for v in variants.values() if v["status"] is not None]

    def _front(self, variants: dict[str, dict[str, Any]]) -> list[str]:
        return front_names(variants)

    def _best(self, variants: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
        """Single lineage: the best kept variant. Population: the lowest val_bpb."""
        return best_variant(variants, self.population)

    def _parent(self, variants: dict[str, dict[str, Any]], name: str) -> Parent:
        v = variants[name]
        with self.lineage_lock:
            files = self.lineage.read_files(v["commit"])
        history, cursor = [], v
        while cursor and cursor["parents"]:
            history.append(f"{cursor['name']}: {cursor['description']} (val_bpb {_fmt(cursor.get('val_bpb'))})")
            cursor = variants.get(cursor["parents"][0])
        return Parent(name, v["commit"], files, v["description"], v.get("val_bpb"), v.get("peak_mem_mb"),
                      v["status"] or "queued", list(reversed(history)))

    # ------------------------------------------------------------------ producer

    def _production_done(self) -> bool:
        trials = [t for t in self.scheduler.trials() if t.get("status") != Status.REQUEUED]
        counted = [t for t in trials if t.get("variant") and t.get("operator") != "ablation"  # the report's, not ours
                   and (t.get("status") != Status.REJECTED or t.get("trained"))]
        if len(counted) >= self.s["max_trials"]:
            return True
        if self.s.get("max_hours") and time.time() - self.started > 3600 * self.s["max_hours"]:
            return True
        return self.production_closed

    def produce(self) -> None:
        """The producer thread: keep search.queue_size candidates waiting until production is done."""
        while not self.stop.is_set():
            with self.sched_lock:
                done = self._production_done()
                waiting = len(self.scheduler.waiting())
            if done:
                with self.sched_lock:
                    self.scheduler.set_run_attr("production", "done")
                return
            sequential_busy = not self.s["overlap"] and (waiting or self.running)
            if waiting >= self.s["queue_size"] or sequential_busy:
                with self.cond:
                    self.cond.wait(0.5)
                continue
            try:
                self.produce_one()
            except Exception as exc:  # a bug or an unreachable store must not kill the run silently
                if is_fatal(exc):
                    self._fail(exc)
                    return
                self.say(f"[search] producer error: {type(exc).__name__}: {exc}")
                self.production_closed = True
                self.stop_if_idle()
                return

    def produce_one(self) -> str | None:
        """Make, guard, commit and enqueue one candidate; returns its name, or None if refused."""
        with self.sched_lock:
            variants = self._variants()
        op = self._choose_operator(variants)
        if op is None:
            self.say("[search] no operator can make a child (no LLM, nothing to merge or tune): stopping production")
            self.production_closed = True
            return None
        parents = [self._parent(variants, n) for n in self._choose_parents(variants, op.arity)]
        generation = 1 + max((variants[p.name]["generation"] for p in parents), default=0)
        if self.s.get("max_generations") and generation > self.s["max_generations"]:
            self.production_closed = True
            return None
        ctx = self._operator_context(variants)
        try:
            proposal = op.propose(parents, ctx)
        except OperatorNotApplicable as exc:
            self.idle_tries += 1
            if self.idle_tries >= MAX_NOT_APPLICABLE:
                self.say(f"[search] {MAX_NOT_APPLICABLE} attempts in a row found nothing to do ({exc.kind}: "
                         f"{_first_line(exc.reason)}); stopping production")
                self.production_closed = True
            return None
        except OperatorFailed as exc:
            return self._refuse(op.name, parents, exc.kind, exc.reason)
        except SpendCapReached as exc:
            self.say(f"[search] LLM spending cap reached ({exc}); continuing with the operators that need none")
            self.llm = None
            return self._refuse(op.name, parents, "spend_cap", str(exc))
        finally:
            self._save_llm_usage()
        with self.sched_lock:
            known = {t["content_hash"]: t.get("variant") or "a refused candidate" for t in self.scheduler.trials()
                     if t.get("content_hash") and t.get("status") != Status.REQUEUED}
        failure = check_candidate(proposal.files, parents[0].files, self.editable, known)
        if failure:
            return self._refuse(op.name, parents, failure.kind, failure.reason, proposal)
        failpoint("proposed")
        return self._commit_and_enqueue(proposal, generation)

    def _choose_operator(self, variants: dict[str, dict[str, Any]]):
        evaluated = [v for v in variants.values() if v["status"] == Status.OK]
        rates = dict(self.s["rates"])
        usable = {}
        for name, rate in rates.items():
            op = OPERATORS.get(name)
            if op is None:
                raise ValueError(f"search.rates names an unknown operator {name!r}; known: {', '.join(OPERATORS)}")
            if rate <= 0 or (op.needs_llm and self.llm is None):
                continue
            if op.arity == 2 and (not self.population or len(evaluated) < 2):
                continue
            if name == "merge" and self.llm is None and len(evaluated) < 2:
                continue
            if name == "tune" and not self.s["tune_ranges"]:
                continue
            usable[name] = rate
        if not usable:
            return None
        names = sorted(usable)
        return OPERATORS[self.rng.choices(names, weights=[usable[n] for n in names])[0]]

    def _choose_parents(self, variants: dict[str, dict[str, Any]], arity: int) -> list[str]:
        if not self.population:
            best = self._best(variants)
            return [best["name"] if best else SEED]
        members = [m for m in self._members(variants) if m.ok]
        if not members:
            return [SEED] * arity
        survivors = select_survivors(members, self.population)
        return [m.name for m in select_parents(survivors, self.rng, arity, k=self.s["tournament_size"])]

    def _operator_context(self, variants: dict[str, dict[str, Any]]) -> OperatorContext:
        front = [self._parent(variants, n) for n in self._front(variants)][:8]
        failures = [(v["description"], v["reason"]) for v in variants.values()
                    if v["status"] not in (None, Status.OK)][-self.s["failures_in_prompt"]:]
        refusals = [(t.get("description", ""), t.get("reason", "")) for t in self.scheduler.trials()
                    if t.get("status") == Status.REJECTED and not t.get("variant")][-self.s["failures_in_prompt"]:]
        return OperatorContext(
            program=self.program, editable=self.editable, budget_seconds=self.conf["trial"]["budget_seconds"],
            front=front, failures=(failures + refusals)[-self.s["failures_in_prompt"]:],
            pinned=dict(self.conf["trial"].get("constants") or {}), llm=self.llm, lineage=self.lineage,
            lineage_lock=self.lineage_lock, tuner=self.tuner, tune_ranges=dict(self.s["tune_ranges"]),
            tune_count=self.s.get("tune_count"), rng=self.rng,
            patch_retries=self.conf["llm"].get("patch_retries", 2))

    def _refuse(self, operator: str, parents: list[Parent], kind: str, reason: str,
                proposal: Proposal | None = None) -> None:
        """Record a candidate that will not be trained (every bad edit is kept with its reason)."""
        attrs = {"operator": operator, "parent_names": [p.name for p in parents],
                 "parents": [p.commit for p in parents], "description": proposal.description if proposal else "",
                 "refusal": kind}
        failpoint("refusing")
        if proposal is not None:
            attrs["content_hash"] = content_hash(proposal.files, self.editable)
            if "tune_trial" in proposal.extra:
                self.tuner.report(proposal.extra["tune_trial"], None)
        with self.sched_lock:
            self.scheduler.record_refused(attrs, f"{kind}: {reason}")
        self.refusals_in_a_row += 1
        self.say(f"[search] refused a {operator} of {','.join(p.name for p in parents)}: {kind}: {_first_line(reason)}")
        if self.refusals_in_a_row >= MAX_CONSECUTIVE_REFUSALS:
            self.say(f"[search] {MAX_CONSECUTIVE_REFUSALS} candidates in a row were refused; stopping production")
            self.production_closed = True
        self._write_results()
        return None

    def _commit_and_enqueue(self, proposal: Proposal, generation: int) -> str:
        with self.sched_lock:
            names = [t.get("variant") for t in self.scheduler.trials() if t.get("variant")]
            name = variant_name(1 + max((variant_number(n) for n in names), default=0))
        message = f"{name}: {proposal.description}\n\noperator: {proposal.operator}\nparents: " + \
                  ", ".join(p.name for p in proposal.parents)
        with self.lineage_lock:
            commit = self.lineage.commit_variant(proposal.files, [p.commit for p in proposal.parents], message)
            failpoint("committed")
            self.lineage.mark_candidate(commit, variant_number(name))
        attrs = {"variant": name, "commit": commit, "parents": [p.commit for p in proposal.parents],
                 "parent_names": [p.name for p in proposal.parents], "operator": proposal.operator,
                 "description": proposal.description, "rationale": proposal.rationale[:2000],
                 "content_hash": content_hash(proposal.files, self.editable), "generation": generation,
                 **{k: v for k, v in proposal.extra.items() if k in ("tune_trial", "conflicts", "constant_merge")}}
        with self.sched_lock:
            self.scheduler.enqueue(attrs)
        failpoint("queued")
        self.refusals_in_a_row = 0
        self.idle_tries = 0
        self.say(f"[search] queued {name} ({proposal.operator} of {','.join(p.name for p in proposal.parents)}): "
                 f"{proposal.description}")
        with self.cond:
            self.cond.notify_all()
        return name

    # ------------------------------------------------------------------ workers

    def work(self, worker: str, env: dict[str, str] | None = None) -> None:
        """A worker: take queued trials and train them until the run is over (`_finished`)."""
        while not self.stop.is_set():
            self.running[worker] = "-"  # before take(): the sequential producer must see this worker busy
            with self.sched_lock:
                taken = self.scheduler.take(worker)
            if taken is None:
                self.running.pop(worker, None)
                self._reap_dead()
                if self._finished(worker):
                    self.stop.set()
                    break
                with self.cond:
                    self.cond.wait(0.5)
                continue
            self.running[worker] = taken.attrs["variant"]
            try:
                with self._heartbeat(taken):
                    self.train_taken(taken, env)
            except KeyboardInterrupt:
                with self.sched_lock:
                    self.scheduler.requeue_stale(lambda row: row["number"] == taken.number)
                raise
            finally:
                self.running.pop(worker, None)
            with self.cond:
                self.cond.notify_all()

    def _work_guarded(self, worker: str, env: dict[str, str] | None) -> None:
        """`work` in a thread: an error stops the whole run instead of one thread silently."""
        try:
            self.work(worker, env)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which re-raises it
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        if self.fatal is None:
            self.fatal = exc
        self.say(f"[search] stopping: {type(exc).__name__}: {exc}")
        self.stop.set()
        with self.cond:
            self.cond.notify_all()

    def _finished(self, worker: str | None) -> bool:
        """Nothing is left to do: production is over (here, or as the producer recorded it in the
        study), nothing waits, no trial of the study is running anywhere, and no other worker of
        this process is busy. A trial running elsewhere keeps every worker on watch, to train it
        again should its worker die."""
        with self.sched_lock:
            if self.remote_worker:
                if self.scheduler.run_attrs().get("production") != "done":
                    return False
            elif not self._production_done():
                return False
            if self.scheduler.waiting() or self.scheduler.running():
                return False
        return not any(w != worker for w in self.running)

    def _reap_dead(self, quiet: bool = False) -> list[int]:
        """Re-queue RUNNING trials whose worker died (see search.run.liveness); at most every few seconds."""
        now = time.time()
        sched = self.conf["scheduler"]
        if not quiet and now - self._last_reap < min(5.0, heartbeat_seconds(sched)):
            return []
        self._last_reap = now
        after = stale_after_seconds(sched)
        with self.sched_lock:
            dead = [row for row in self.scheduler.running() if is_dead(row, now, after)]
        recovered = {row["number"] for row in dead if self._recover(row)}
        with self.sched_lock:
            requeued = self.scheduler.requeue_stale(
                lambda row: row["number"] not in recovered and is_dead(row, now, after))
        if requeued and not quiet:
            self.say(f"[search] re-queued trial(s) {requeued}: their worker died or went silent")
        return requeued

    def _trial_dir(self, number: int, variant: str) -> Path:
        return self.run_dir / "trials" / f"{number:04d}-{variant}"

    def _recover(self, row: dict[str, Any]) -> bool:
        """Report the result a dead worker of this machine left in its trial directory (it trained
        the variant, then died before the study heard): the variant is not trained twice."""
        path = self._trial_dir(row["number"], str(row.get("variant"))) / RESULT_FILE
        try:
            saved = json.loads(path.read_text())
            record = TrialRecord.from_json(json.dumps(saved["record"]))
            with self.sched_lock:
                taken = self.scheduler.resume_taken(row["number"])
        except (OSError, ValueError, KeyError, TypeError, SchedulerError):
            return False
        self.say(f"[search] recovered the result of {row['variant']} (trial {row['number']}), trained before "
                 "its worker died")
        self._finish(taken, record, float(saved.get("preflight_seconds") or 0.0))
        return True

    @contextmanager
    def _heartbeat(self, taken):
        """Mark the taken trial alive every scheduler.heartbeat_seconds while it trains."""
        done = threading.Event()
        every = heartbeat_seconds(self.conf["scheduler"])

        def beat() -> None:
            while not done.wait(every):
                try:
                    with self.sched_lock:
                        if not self.scheduler.heartbeat(taken):
                            return
                except Exception as exc:  # a missed beat is retried; the trial goes on
                    self.say(f"[search] heartbeat of trial {taken.number} failed: {type(exc).__name__}: {exc}")

        thread = threading.Thread(target=beat, name=f"heartbeat-{taken.number}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join(timeout=10)

    def train_taken(self, taken, env: dict[str, str] | None = None) -> TrialRecord:
        attrs = taken.attrs
        name = attrs["variant"]
        trial_dir = self._trial_dir(taken.number, name)
        variant_dir = trial_dir / "variant"
        with self.lineage_lock:
            self.lineage.fetch([attrs["commit"]])  # from the shared remote (nothing without one)
            files = self.lineage.read_files(attrs["commit"])
        failpoint("training")
        for rel, text in files.items():
            (variant_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            (variant_dir / rel).write_text(text)
        trial = dict(self.conf["trial"], seed=attrs.get("trial_seed", self.conf["trial"]["seed"]))
        curve = self._stop_curve() if attrs["operator"] not in MEASURING_OPERATORS else None
        if curve:
            trial["stop_curve"] = curve
        spec = {"variant_dir": str(variant_dir), "data": self.prepared.spec(), "editable": self.editable}
        preflight_seconds = 0.0
        record = None
        if self.s["preflight"] and attrs["operator"] not in MEASURING_OPERATORS:
            seq = trial["seq_len"]
            pre = dict(trial, max_steps=self.s["preflight_steps"], eval_tokens=seq, test_tokens=seq, clock_skip_steps=0)
            record = run_trial_process(dict(spec, trial=pre), trial_dir / "preflight", env=env)
            preflight_seconds = record.total_seconds or 0.0
            if record.status == Status.OK:
                record = None
            else:
                record.reason = f"preflight: {record.reason}"
        if record is None:
            self.say(f"[search] training {name} ({attrs['operator']}): {attrs['description']}")
            record = run_trial_process(dict(spec, trial=trial), trial_dir / "trial", env=env)
        # Kept before the study hears of it: a crash from here on loses no training (`_recover`).
        write_atomic(trial_dir / RESULT_FILE, json.dumps(
            {"record": json.loads(record.to_json()), "preflight_seconds": preflight_seconds}).encode("utf-8"))
        self._finish(taken, record, preflight_seconds)
        return record

    def _stop_curve(self) -> list[list[float]] | None:
        """The early-stop limit: the best variant's loss curve raised by search.early_stop_margin."""
        margin = self.s.get("early_stop_margin")
        if not margin:
            return None
        with self.sched_lock:
            best = self._best(self._variants())
        runs = [r for r in (best or {}).get("runs", []) if r.get("loss_curve")]
        if not runs:
            return None
        return [[p, v * (1.0 + margin)] for p, v in runs[0]["loss_curve"]]

    def _finish(self, taken, record: TrialRecord, preflight_seconds: float) -> None:
        attrs = taken.attrs
        extra: dict[str, Any] = {k: getattr(record, k) for k in FIGURES}
        extra.update(reason=record.reason, trained=True, preflight_seconds=preflight_seconds,
                     loss_curve=record.loss_curve, saved_seconds=record.saved_seconds,
                     device_seconds=(record.total_seconds or 0.0) + preflight_seconds, code_hash=record.code_hash,
                     device=record.device)
        with self.sched_lock:
            variants = self._variants()
            if not self.population and attrs["operator"] not in MEASURING_OPERATORS:
                best = self._best(variants)
                noise = self._noise(variants)
                extra["kept"] = bool(record.status == Status.OK and record.val_bpb is not None and (
                    best is None or improves(record.val_bpb, best["val_bpb"], noise.floor if noise else 0.0)))
            values = (record.val_bpb, record.peak_mem_mb) if record.status == Status.OK else None
            failpoint("finishing")
            self.scheduler.finish(taken, record.status, values, extra)
            failpoint("finished")
            if "tune_trial" in attrs and hasattr(self, "tuner"):
                self.tuner.report(attrs["tune_trial"], record.val_bpb if record.status == Status.OK else None)
            variants = self._variants()
            noise = self._noise(variants)
            if noise and attrs["variant"] == SEED:  # any run of the seed (an ablation adds repeats too)
                self.scheduler.set_run_attr("noise", {"mean": noise.mean, "std": noise.std, "n": noise.n,
                                                      "floor": noise.floor})
        self._tag(attrs["variant"], variants[attrs["variant"]])
        failpoint("tagged")
        verdict = "" if "kept" not in extra else (" -> keep" if extra["kept"] else " -> discard")
        figure = f"val_bpb {record.val_bpb:.6f}" if record.val_bpb is not None else _first_line(record.reason)
        self.say(f"[search] {attrs['variant']} {record.status}: {figure}{verdict}")
        self._write_results()
        self.say(self.progress().line())

    def _tag(self, name: str, info: dict[str, Any]) -> None:
        figures = {k: info.get(k) for k in ("val_bpb", "test_bpb", "peak_mem_mb", "training_seconds")}
        figures.update(status=info["status"], operator=info["operator"], description=info["description"],
                       parents=info["parents"], runs=len(info["runs"]))
        with self.lineage_lock:
            self.lineage.tag(info["commit"], variant_number(name), figures)
            self.lineage.push([self.lineage.tag_ref(variant_number(name))])  # nothing without a remote

    # ------------------------------------------------------------------ output

    def say(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def _save_llm_usage(self) -> None:
        if self.llm is not None:
            with self.sched_lock:
                self.scheduler.set_run_attr("llm_usage", self.llm.usage.to_dict())

    def _write_results(self) -> None:
        with self.sched_lock:
            text = results_tsv(self.scheduler.trials())
        _write_atomic(self.run_dir / "results.tsv", text, "results-written")

    def progress(self) -> Progress:
        with self.sched_lock:
            trials = self.scheduler.trials()
            variants = self._variants()
            waiting = len(self.scheduler.waiting())
        trained = [t for t in trials if t.get("trained") and t.get("status") != Status.REQUEUED]
        best = self._best(variants)
        noise = self._noise(variants)
        usage = self.llm.usage.to_dict() if self.llm is not None else (self.scheduler.run_attrs().get("llm_usage") or {})
        device = sum(t.get("device_seconds") or 0.0 for t in trained)
        return Progress(
            trained=len(trained), max_trials=self.s["max_trials"], best_bpb=best["val_bpb"] if best else None,
            best_name=best["name"] if best else "-", front_size=len(self._front(variants)), waiting=waiting,
            running=sorted(self.running.values()), llm_calls=usage.get("calls", 0), llm_cost=usage.get("cost", 0.0),
            elapsed=time.time() - self.started, eta=eta_seconds(len(trained), self.s["max_trials"], device, self._workers()),
            noise_floor=noise.floor if noise else None,
            rejected=sum(1 for t in trials if t.get("status") == Status.REJECTED and not t.get("trained")))

    def summary(self) -> RunSummary:
        with self.sched_lock:
            trials = [t for t in self.scheduler.trials() if t.get("status") not in (None, Status.REQUEUED)]
            variants = self._variants()
        front = [dict(variants[n], variant=n) for n in self._front(variants)]
        best = self._best(variants)
        usage = self.llm.usage.to_dict() if self.llm is not None else (self.scheduler.run_attrs().get("llm_usage") or {})
        noise = self._noise(variants)
        return RunSummary(
            run=self.name, best=dict(best, variant=best["name"]) if best else None,
            front=sorted(front, key=lambda f: f["val_bpb"]), by_status=count_by(trials, "status"),
            by_operator=count_by(trials, "operator"),
            device_seconds=sum(t.get("device_seconds") or 0.0 for t in trials),
            wall_seconds=time.time() - self.started,
            noise={"floor": noise.floor, "mean": noise.mean, "std": noise.std, "n": noise.n} if noise else None,
            llm=usage)

    def _workers(self) -> int:
        return max(1, len(self.worker_envs()))

    def worker_envs(self) -> list[dict[str, str]]:
        """One environment per worker of this process (scheduler.workers).

        `auto`: one worker per visible GPU, each pinned to its device with CUDA_VISIBLE_DEVICES
        (the ids the user made visible, if any), or a single unpinned worker without a GPU. A
        number N > 1 shares the CPU cores out with OMP_NUM_THREADS. 0: no worker (the producer
        only; workers elsewhere train).
        """
        workers = self.conf["scheduler"]["workers"]
        if workers == "auto":
            return [{"CUDA_VISIBLE_DEVICES": d} for d in visible_gpus()] or [{}]
        try:
            n = int(workers)
        except (TypeError, ValueError):
            n = -1
        if n < 0:
            raise ValueError(f"scheduler.workers={workers!r}: give a number of workers (0: produce only) or auto")
        if n <= 1:
            return [{}] * n
        cores = os.cpu_count() or 1
        return [{"OMP_NUM_THREADS": str(max(1, cores // n))} for _ in range(n)]

    def stop_if_idle(self) -> None:
        with self.cond:
            self.cond.notify_all()

    # ------------------------------------------------------------------ run

    def run(self) -> RunSummary:
        """Set up, run producer and workers to the end (or Ctrl-C), print and return the summary."""
        self.setup()
        envs = self.worker_envs()
        producer = threading.Thread(target=self.produce, name="producer", daemon=True)
        producer.start()
        interrupted = False
        try:
            if len(envs) == 1:
                self.work(worker_name("w0"), envs[0])
            elif not envs:
                self.say("[search] scheduler.workers=0: producing only; start workers with "
                         f"`python -m search worker run.name={self.name} storage.url=... lineage.remote=...`")
                self.coordinate()
            else:
                self._work_in_threads(envs)
        except KeyboardInterrupt:
            interrupted = True
            self.say("[search] interrupted: the running trial is re-queued; run the same command to resume")
        finally:
            self.stop.set()
            with self.cond:
                self.cond.notify_all()
            producer.join(timeout=30)
            self._save_llm_usage()
            self._write_results_if_possible()
        if self.fatal is not None:
            raise self.fatal
        summary = self.summary()
        self.say(summary.text())
        self.say(f"[search] results: {self.run_dir / 'results.tsv'}; study: {self.scheduler.url}")
        if interrupted:
            raise KeyboardInterrupt
        return summary

    def coordinate(self) -> None:
        """Without workers of its own: re-queue trials of dead workers, keep this repository's tags
        in step with the study, and return when the run is over."""
        while not self.stop.is_set():
            self._reap_dead()
            if self._finished(None):
                break
            with self.cond:
                self.cond.wait(1.0)
        self._repair_tags()

    def work_until_done(self) -> None:
        """`python -m search worker`: this process's workers train until the run is over."""
        envs = self.worker_envs() or [{}]
        try:
            self._work_in_threads(envs)
        finally:
            self.stop.set()
            self._write_results_if_possible()
        if self.fatal is not None:
            raise self.fatal

    def _work_in_threads(self, envs: list[dict[str, str]]) -> None:
        """One worker thread per environment, joined in short waits so Ctrl-C reaches this thread."""
        threads = [threading.Thread(target=self._work_guarded, args=(worker_name(f"w{i}"), env),
                                    name=f"worker-{i}", daemon=True) for i, env in enumerate(envs)]
        for th in threads:
            th.start()
        while any(th.is_alive() for th in threads):
            for th in threads:
                th.join(timeout=0.5)

    def _write_results_if_possible(self) -> None:
        try:
            self._write_results()
        except OSError as exc:
            self.say(f"[search] could not write {self.run_dir / 'results.tsv'}: {exc}")

    def close(self) -> None:
        if hasattr(self, "lineage"):
            self.lineage.close()


def _write_atomic(path: Path, text: str, point: str | None = None) -> None:
    """Write `text` to `path` through `<name>.tmp` (a fixed name, so a failpoint can stop between
    the write and the rename): a crash leaves the old file or the new."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    if point:
        failpoint(point)
    os.replace(tmp, path)


def visible_gpus() -> list[str]:
    """The ids of the GPUs this process may use: CUDA_VISIBLE_DEVICES when set, else 0..N-1."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip() and d.strip() != "-1"]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def is_fatal(exc: BaseException) -> bool:
    """The machine refuses to store the run (disk full, read-only or forbidden output)."""
    if isinstance(exc, OSError) and exc.errno in FATAL_ERRNOS:
        return True
    return "database or disk is full" in str(exc)


def _read_program(path: str) -> str:
    """The research direction; a relative path is looked up from the working directory, then the project."""
    p = Path(path).expanduser()
    for candidate in (p, PROJECT_ROOT / p):
        if candidate.is_file():
            return candidate.read_text()
    raise FileNotFoundError(f"program file {path} does not exist (set program=<path to a Markdown file>)")


def _fmt(value: float | None) -> str:
    return f"{value:.6f}" if value is not None else "-"


def _first_line(text: str) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0][:200] if lines else ""
