"""`python -m search worker`: train the queued trials of a run whose producer runs elsewhere.

    python -m search run run.name=big storage.url=postgresql://... lineage.remote=<git url> scheduler.workers=0
    python -m search worker run.name=big storage.url=postgresql://... lineage.remote=<git url>   # on each machine

The producer (`run`) owns the settings: a worker trains with the trial, search and data settings
the producer stored in the study (its own `data.*` overrides win, for a corpus kept at another path
on this machine), takes waiting trials from the shared study, fetches their commits from the
shared remote into its own repository (`lineage.repo`), and pushes each variant's tag back. Its
trials carry heartbeats; any process of the run re-queues a trial whose worker died, and a worker
stays until the producer has finished producing and no trial waits or runs anywhere.
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import asdict
from pathlib import Path

from search.config import Config, UserError, config_dict, load_config
from search.run.liveness import worker_process
from search.run.loop import build_workers, open_store, say_to
from search.run.sandbox import resolve_sandbox
from search.run.scheduler import Scheduler, SchedulerError
from search.run.store import RunStore
from search.run.workers import worker_envs


class WorkerError(UserError):
    """The worker cannot join the run; the message says what to do."""


def producer_config(conf: Config, run_dir: Path, data_overridden: bool) -> Config:
    """The settings a worker trains with: the producer's, with this machine's storage, lineage,
    scheduler and run sections (and data, when this command overrides it).

    Raises:
        WorkerError: if the run's study does not exist, or holds no producer settings.
    """
    name = conf.run.name
    try:
        probe = Scheduler(conf.storage.url, run_dir, name, create=False)
    except SchedulerError as exc:
        raise WorkerError(f"{exc}: start the run first (`python -m search run run.name={name} "
                          "storage.url=...`) and give its workers the same run.name and storage.url") from None
    stored = probe.run_attrs().get("config")
    if not isinstance(stored, dict):
        raise WorkerError(f"run {name} in {probe.url} holds no producer settings: start (or resume) it with "
                          "`python -m search run` of this version first")
    mine = config_dict(conf)
    merged = dict(stored, run=mine["run"], storage=mine["storage"], lineage=mine["lineage"],
                  scheduler=mine["scheduler"])
    if data_overridden:
        merged["data"] = mine["data"]
    return load_config(merged)


def worker_command(conf: Config, run_dir: Path, data_overridden: bool = False) -> int:
    """Join the run named by `conf` and train until it is over; returns the trials trained here."""
    from eval.data.prepare import prepare_data

    merged = producer_config(conf, run_dir, data_overridden)
    resolve_sandbox(merged.trial.sandbox)  # this machine's bubblewrap, checked before any trial
    envs = worker_envs(merged.scheduler.workers) or [{}]
    name = merged.run.name
    run_dir.mkdir(parents=True, exist_ok=True)

    say = say_to(sys.stdout)
    store = open_store(merged, run_dir)  # the study exists: opened with write-safe settings
    try:
        prepared = prepare_data(asdict(merged.data), merged.trial.vocab_size, log=say)
        prepared.check_evaluation(asdict(merged.trial))
        workers = build_workers(merged, store, prepared.spec(), say,
                                production_over=lambda: store.run_attrs().get("production") == "done")
        before = _trained_by_me(store)
        lineage = store.lineage
        say(f"[worker] run {name}: training its queued trials from {store.scheduler.url}"
            f" ({merged.trial.name} preset, {len(envs)} worker(s) here,"
            f" lineage {lineage.root}{', remote ' + lineage.refs.remote if lineage.refs.remote else ''})")
        try:
            workers.work_in_threads(envs)
        finally:
            workers.stop.set()
            store.write_results_if_possible(say)
        if workers.fatal is not None:
            raise workers.fatal
        trained = _trained_by_me(store) - before
        say(f"[worker] run {name} is over: {trained} trial(s) trained here; results: {run_dir / 'results.tsv'}")
        return trained
    finally:
        store.close()


def _trained_by_me(store: RunStore) -> int:
    me = (socket.gethostname(), os.getpid())
    return sum(1 for t in store.trials() if t.get("trained") and worker_process(t.get("worker")) == me)
