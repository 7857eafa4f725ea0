"""The search run: its parts built whole, and the threads that run them.

    python -m search run [+population=8] [overrides]

`SearchRun.open` sets a run up (or resumes it): the prepared data, the lineage and the study (a
`RunStore`), the LLM, the seed's repeats queued. `SearchRun.run` then starts the producer thread
(`search.run.producer`) and this process's workers (`search.run.workers`, training through
`search.run.executor`) and ends with the summary. The study and the lineage are the record: a run
started again with the same `run.name` re-queues the trial that was running, repairs missing tags
and carries on.

Without a population the loop is the single-lineage search: every child comes from the current
best, and it becomes the new best only if it beats it by more than the seed's noise floor.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, TextIO

from eval.record import Status
from search import PROJECT_ROOT
from search.config import (RESUMABLE, Config, UserError, check_run_name, check_values, config_dict,
                           identity_differences, load_config, run_identity)
from search.lineage.repo import Lineage
from search.llm.client import LLMClient, OpenAIClient, llm_available
from search.operators.guards import content_hash
from search.record.attrs import CandidateAttrs
from search.record.data import SEED
from search.record.summary import Progress, RunSummary, count_by, eta_seconds
from search.run.display import ERASE_TO_END
from search.run.executor import TrialExecutor, TrialRunner
from search.run.failpoints import failpoint
from search.run.liveness import worker_name
from search.run.producer import Producer
from search.run.runner import run_trial_process
from search.run.sandbox import resolve_sandbox
from search.run.scheduler import Scheduler, Tuner
from search.run.store import RunStore
from search.run.workers import Workers, is_fatal, worker_envs

IDENTITY_FILE = "identity.json"  # the settings that make the run's results comparable, saved when it starts

__all__ = ["SearchRun", "build_workers", "is_fatal", "open_store", "read_program", "run_progress", "say_to"]


LOG = logging.getLogger("evoresearch")


def say_to(out: TextIO) -> Callable[[str], None]:
    """A progress line to `out` and to the log (the command's log file in the run directory). On a
    terminal the line first erases a trial's live line (search.run.display), redrawn at its next step."""
    erase = "\r" + ERASE_TO_END if _is_terminal(out) else ""

    def say(line: str) -> None:
        print(erase + line, file=out, flush=True)
        LOG.info(line)

    return say


def open_store(conf: Config, run_dir: Path) -> RunStore:
    """The run's study (created if new) and lineage, as one store."""
    repo = conf.lineage.repo or str(PROJECT_ROOT)
    lineage = Lineage(Path(repo), conf.run.name, conf.editable, conf.lineage.remote)
    scheduler = Scheduler(conf.storage.url, run_dir, conf.run.name)
    return RunStore(scheduler, lineage, run_dir, conf.editable, conf.population, conf.search.noise_k)


def make_tuner(conf: Config, store: RunStore) -> Tuner:
    return Tuner(store.scheduler, seed=conf.search.seed, sampler=conf.search.tune_sampler,
                 startup_trials=conf.search.tune_startup_trials)


def build_workers(conf: Config, store: RunStore, data_spec: dict[str, Any], say: Callable[[str], None],
                  production_over: Callable[[], bool], run_trial: TrialRunner = run_trial_process,
                  tuner: Tuner | None = None) -> Workers:
    """This process's workers for a run, with their executor (the remote worker, the ablation)."""
    executor = TrialExecutor(conf, store, data_spec, run_trial, tuner or make_tuner(conf, store), say)
    return Workers(store, executor, conf.scheduler, production_over, say)


def run_progress(store: RunStore, max_trials: int, running: list[str], llm_usage: dict[str, Any], started: float,
                 workers: int) -> Progress:
    """The live progress line's figures, from the record."""
    with store.study_lock:
        trials = store.trials()
        variants = store.variants()
        waiting = len(store.waiting())
    trained = [t for t in trials if t.get("trained") and t.get("status") != Status.REQUEUED]
    best = store.best(variants)
    noise = store.noise(variants)
    device = sum(t.get("device_seconds") or 0.0 for t in trained)
    return Progress(
        trained=len(trained), max_trials=max_trials, best_bpb=best["val_bpb"] if best else None,
        best_name=best["name"] if best else "-", front_size=len(store.front(variants)), waiting=waiting,
        running=sorted(running), llm_calls=llm_usage.get("calls", 0), llm_cost=llm_usage.get("cost", 0.0),
        elapsed=time.time() - started, eta=eta_seconds(len(trained), max_trials, device, workers),
        noise_floor=noise.floor if noise else None,
        rejected=sum(1 for t in trials if t.get("status") == Status.REJECTED and not t.get("trained")))


class SearchRun:
    """One search run: the producer, the workers and their executor over one store.

    Use `SearchRun.open(...)`, which sets the run up; the constructor only wires given parts.

    Args:
        conf: the run's configuration.
        store: its study and lineage.
        data_spec: the prepared data, as trial specs carry it.
        llm: the LLM client, or None.
        program: the research direction.
        out: where progress lines and the summary go.
        run_trial: the runner (tests inject one).
    """

    def __init__(self, conf: Config, store: RunStore, data_spec: dict[str, Any], llm: LLMClient | None,
                 program: str, out: TextIO = sys.stdout, run_trial: TrialRunner = run_trial_process):
        self.conf = conf
        self.store = store
        self.out = out
        self.started = time.time()
        self.resumed = False  # set when the run starts on a study that holds trials
        self.envs = worker_envs(conf.scheduler.workers)
        tuner = make_tuner(conf, store)
        self.producer = Producer(conf, store, llm, tuner, program, self.say, busy=lambda: self.workers.busy())
        self.workers = build_workers(conf, store, data_spec, self.say, self.producer.done, run_trial, tuner)
        executor = self.workers.executor
        executor.on_finished = lambda: self.say(self.progress().line())
        if _is_terminal(out):  # a live line while each trial trains; plain lines otherwise
            executor.live, executor.run_eta = out, lambda: self.progress().eta

    @classmethod
    def open(cls, conf: Config, run_dir: Path, *, llm: LLMClient | None = None, out: TextIO = sys.stdout,
             run_trial: TrialRunner = run_trial_process) -> SearchRun:
        """Set a run up or resume it: checks, data, study and lineage, LLM, the seed's repeats.

        Raises:
            UserError (and the data's, the lineage's and the sandbox's errors): a setting that
                cannot work, said before anything trains.
        """
        from eval.data.prepare import prepare_data

        say = say_to(out)
        check_run_name(conf.run.name)
        check_values(conf)
        worker_envs(conf.scheduler.workers)  # a bad scheduler.workers: an error now
        program = read_program(conf.program)
        run_dir = Path(run_dir)
        identity = run_identity(conf, program)
        resuming = (run_dir / IDENTITY_FILE).is_file() or (run_dir / "config.json").is_file()
        if resuming:
            check_same_run(run_dir, identity)
        else:
            check_clean_seed(conf)
        resolve_sandbox(conf.trial.sandbox)  # trial.sandbox=bwrap that cannot work: an error now
        prepared = prepare_data(asdict(conf.data), conf.trial.vocab_size, log=say)  # only the cache, cleaned on failure
        prepared.check_evaluation(asdict(conf.trial))
        run_dir.mkdir(parents=True, exist_ok=True)  # the first write into the run directory
        (run_dir / "config.json").write_text(json.dumps(config_dict(conf), indent=2, default=str))
        if not (run_dir / IDENTITY_FILE).is_file():
            (run_dir / IDENTITY_FILE).write_text(json.dumps(identity, indent=2, default=str))
        store = open_store(conf, run_dir)
        try:
            llm, note = (llm, "an injected client") if llm is not None else _configured_llm(conf, run_dir, say)
            search = cls(conf, store, prepared.spec(), llm, program, out, run_trial)
            search._start(llm, note)
        except BaseException:
            store.close()
            raise
        return search

    def _start(self, llm: LLMClient | None, note: str) -> None:
        store, conf = self.store, self.conf
        attrs = store.run_attrs()
        if "base_commit" not in attrs:
            store.set_run_attr("base_commit", store.lineage.base_commit())
            store.set_run_attr("population", conf.population)
            store.set_run_attr("started_at", self.started)
        # Workers elsewhere (`python -m search worker`) train with these settings and learn from
        # `production` when the run is over. Not the storage and remote URLs, which may hold
        # credentials: each worker gives its own.
        store.set_run_attr("config", {k: v for k, v in config_dict(conf).items() if k not in ("storage", "lineage")})
        store.set_run_attr("production", "open")
        base_commit = store.run_attrs()["base_commit"]
        with store.lineage_lock:
            store.lineage.refs.mark_candidate(base_commit, 0)  # workers elsewhere fetch the seed through it
        if llm is not None:
            if attrs.get("llm_usage") and hasattr(llm, "restore"):
                llm.restore(attrs["llm_usage"])
            self.say(f"[search] LLM: {note}")
        resumed = store.trials()
        self.resumed = bool(resumed)
        if resumed:
            requeued = self.workers.reap_dead(quiet=True)
            self.say(f"[search] resuming run {store.name}: {len(resumed)} trials in the study"
                     + (f", re-queued interrupted trial(s) {requeued}" if requeued else ""))
            store.repair_tags()
            store.write_results()
        self._enqueue_baseline(base_commit)
        trial = conf.trial
        self.say(f"[search] run {store.name}: {'population ' + str(conf.population) if conf.population else 'single lineage'}"
                 f", budget {trial.budget_seconds:.0f}s per trial ({trial.name}), max {conf.search.max_trials} trials, "
                 f"study {store.scheduler.url}, tags search/{store.name}/v*")

    def _enqueue_baseline(self, base_commit: str) -> None:
        """The seed, trained search.noise_repeats times with different seeds (the noise floor).

        Only the repeats not in the study yet are queued (a run killed while queueing them gets
        the rest on resume)."""
        have = {t.get("repeat") for t in self.store.live_trials() if t.get("operator") == "seed"}
        files = self.store.read_files(base_commit)
        digest = content_hash(files, self.conf.editable)
        for k in range(max(1, self.conf.search.noise_repeats)):
            if k in have:
                continue
            self.store.enqueue(CandidateAttrs(
                variant=SEED, commit=base_commit, parents=[], parent_names=[], operator="seed",
                description="seed" if k == 0 else f"seed, repeat {k} (noise floor)", content_hash=digest,
                trial_seed=self.conf.trial.seed + k, repeat=k, generation=0))
            failpoint("baseline-queued")

    # --- output

    def say(self, line: str) -> None:
        say_to(self.out)(line)

    def _llm_usage(self) -> dict[str, Any]:
        llm = self.producer.llm
        return llm.usage.to_dict() if llm is not None else (self.store.run_attrs().get("llm_usage") or {})

    def progress(self) -> Progress:
        return run_progress(self.store, self.conf.search.max_trials, list(self.workers.running.values()),
                            self._llm_usage(), self.started, max(1, len(self.envs)))

    def summary(self) -> RunSummary:
        with self.store.study_lock:
            trials = [t for t in self.store.live_trials() if t.get("status") is not None]
            variants = self.store.variants()
        front = [dict(variants[n], variant=n) for n in self.store.front(variants)]
        best = self.store.best(variants)
        noise = self.store.noise(variants)
        return RunSummary(
            run=self.store.name, best=dict(best, variant=best["name"]) if best else None,
            front=sorted(front, key=lambda f: f["val_bpb"]), by_status=count_by(trials, "status"),
            by_operator=count_by(trials, "operator"),
            device_seconds=sum(t.get("device_seconds") or 0.0 for t in trials
                               if (t.get("finished_at") or 0.0) >= self.started),
            wall_seconds=time.time() - self.started, resumed=self.resumed,
            noise={"floor": noise.floor, "mean": noise.mean, "std": noise.std, "n": noise.n} if noise else None,
            llm=self._llm_usage())

    # --- run

    def run(self) -> RunSummary:
        """Run producer and workers to the end (or Ctrl-C); print and return the summary."""
        producer = threading.Thread(target=self._produce, name="producer", daemon=True)
        producer.start()
        interrupted = False
        try:
            if len(self.envs) == 1:
                self.workers.work(worker_name("w0"), self.envs[0])
            elif not self.envs:
                self.say("[search] scheduler.workers=0: producing only; start workers with "
                         f"`python -m search worker run.name={self.store.name} storage.url=... lineage.remote=...`")
                self.workers.coordinate()
            else:
                self.workers.work_in_threads(self.envs)
        except KeyboardInterrupt:
            interrupted = True
            self.say("[search] interrupted: the running trial is re-queued; run the same command to resume")
        finally:
            self.workers.stop.set()
            self.producer.stop.set()
            self.workers.notify()
            self.producer.notify()
            producer.join(timeout=30)
            self.producer.save_llm_usage()
            self.store.write_results_if_possible(self.say)
        if self.workers.fatal is not None:
            raise self.workers.fatal
        summary = self.summary()
        self.say(summary.text())
        self.say(f"[search] results: {self.store.run_dir / 'results.tsv'}; study: {self.store.scheduler.url}")
        if interrupted:
            raise KeyboardInterrupt
        return summary

    def _produce(self) -> None:
        """The producer thread; when it ends, idle workers are woken to see whether the run is over."""
        self.producer.run(on_fatal=lambda exc: is_fatal(exc) and self.workers.fail(exc))
        self.workers.notify()

    def close(self) -> None:
        self.store.close()


def check_same_run(run_dir: Path, identity: dict[str, Any]) -> None:
    """A resume must have the run's identity (`search.config.run_identity`): other settings would mix
    results that do not compare into one record.

    Raises:
        UserError: listing the settings that differ, and what to do.
    """
    saved = run_dir / IDENTITY_FILE
    if saved.is_file():
        before = json.loads(saved.read_text())
    else:  # a run made before identities were saved: its config.json, with today's program text
        old = load_config(json.loads((run_dir / "config.json").read_text()))
        before = run_identity(old, read_program(old.program))
    differences = identity_differences(json.loads(json.dumps(before, default=str)),
                                       json.loads(json.dumps(identity, default=str)))
    if differences:
        raise UserError(f"run {run_dir.name} exists with other settings, so its results would not compare: "
                        + "; ".join(differences) + ". Resume it with its own settings, or start a new run "
                        "with another run.name (settings a resume may change: " + ", ".join(RESUMABLE) + ")")


def check_clean_seed(conf: Config) -> None:
    """A new run's seed is HEAD of lineage.repo: uncommitted edits of the editable files are not in
    it. Refused unless lineage.allow_dirty.

    Raises:
        UserError: naming the files, the seed commit and the two ways on.
    """
    with Lineage(Path(conf.lineage.repo or PROJECT_ROOT), conf.run.name, conf.editable) as lineage:
        dirty = lineage.uncommitted()
        if dirty and not conf.lineage.allow_dirty:
            raise UserError(f"the seed is HEAD ({lineage.base_commit()[:12]}) of {lineage.root}, and "
                            f"{', '.join(dirty)} {'has' if len(dirty) == 1 else 'have'} uncommitted edits that are "
                            "not in it: commit them, or set lineage.allow_dirty=true to start from HEAD anyway")


def _configured_llm(conf: Config, run_dir: Path, say: Callable[[str], None]) -> tuple[LLMClient | None, str]:
    """The configured OpenAI-compatible client, or None (llm=none, or no endpoint or key), said once."""
    cfg = conf.llm
    ok, why = llm_available(cfg.base_url, cfg.api_key_env)
    if cfg.name == "none" or not ok:
        say(f"[search] no LLM: {why if cfg.name != 'none' else 'llm=none'}; using the operators "
            "that need none (git merge of lineages, Optuna-tuned constants)")
        return None, ""
    client = OpenAIClient(
        model=cfg.model, base_url=cfg.base_url, api_key_env=cfg.api_key_env, temperature=cfg.temperature,
        max_tokens=cfg.max_tokens, timeout=cfg.timeout, max_retries=cfg.max_retries,
        price_prompt_per_million=cfg.price_prompt_per_million,
        price_completion_per_million=cfg.price_completion_per_million, spend_cap=cfg.spend_cap,
        log_dir=run_dir / "llm")
    return client, f"{cfg.model} at {cfg.base_url or 'the default OpenAI endpoint'}"


def _is_terminal(out: TextIO) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):  # a closed or plain stream
        return False


def read_program(path: str) -> str:
    """The research direction; a relative path is looked up from the working directory, then the project."""
    p = Path(path).expanduser()
    for candidate in (p, PROJECT_ROOT / p):
        if candidate.is_file():
            return candidate.read_text()
    raise FileNotFoundError(f"program file {path} does not exist (set program=<path to a Markdown file>)")
