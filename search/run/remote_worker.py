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
from pathlib import Path
from typing import Any

from search import PROJECT_ROOT
from search.lineage.repo import Lineage
from search.run.liveness import worker_process
from search.run.loop import SearchRun
from search.run.sandbox import resolve_sandbox
from search.run.scheduler import Scheduler, SchedulerError


class WorkerError(ValueError):
    """The worker cannot join the run; the message says what to do."""


def producer_config(conf: dict[str, Any], run_dir: Path, data_overridden: bool) -> dict[str, Any]:
    """The settings a worker trains with: the producer's, with this machine's storage, lineage,
    scheduler and run sections (and data, when this command overrides it).

    Raises:
        WorkerError: if the run's study does not exist, or holds no producer settings.
    """
    name = conf["run"]["name"]
    try:
        probe = Scheduler(conf["storage"]["url"], run_dir, name, create=False)
    except SchedulerError as exc:
        raise WorkerError(f"{exc}: start the run first (`python -m search run run.name={name} "
                          "storage.url=...`) and give its workers the same run.name and storage.url") from None
    stored = probe.run_attrs().get("config")
    if not isinstance(stored, dict):
        raise WorkerError(f"run {name} in {probe.url} holds no producer settings: start (or resume) it with "
                          "`python -m search run` of this version first")
    merged = dict(stored, run=conf["run"], storage=conf["storage"], lineage=conf["lineage"],
                  scheduler=conf["scheduler"])
    if data_overridden:
        merged["data"] = conf["data"]
    return merged


def worker_command(conf: dict[str, Any], run_dir: Path, data_overridden: bool = False) -> int:
    """Join the run named by `conf` and train until it is over; returns the trials trained here."""
    from eval.data.prepare import prepare_data

    merged = producer_config(conf, run_dir, data_overridden)
    resolve_sandbox(merged["trial"].get("sandbox") or "auto")  # this machine's bubblewrap, checked before any trial
    name = merged["run"]["name"]
    run_dir.mkdir(parents=True, exist_ok=True)
    search = SearchRun(merged, run_dir)
    scheduler = Scheduler(merged["storage"]["url"], run_dir, name)  # exists: opened with write-safe settings
    repo = merged["lineage"]["repo"] or str(PROJECT_ROOT)
    lineage = Lineage(Path(repo), name, merged["editable"], merged["lineage"].get("remote"))
    try:
        prepared = prepare_data(merged["data"], merged["trial"]["vocab_size"], log=search.say)
        prepared.check_evaluation(merged["trial"])
        search.attach_worker(prepared, lineage, scheduler)
        before = _trained_by_me(scheduler)
        search.say(f"[worker] run {name}: training its queued trials from {scheduler.url}"
                   f" ({merged['trial']['name']} preset, {len(search.worker_envs()) or 1} worker(s) here,"
                   f" lineage {lineage.root}{', remote ' + lineage.remote if lineage.remote else ''})")
        search.work_until_done()
        trained = _trained_by_me(scheduler) - before
        search.say(f"[worker] run {name} is over: {trained} trial(s) trained here; results: {run_dir / 'results.tsv'}")
        return trained
    finally:
        lineage.close()


def _trained_by_me(scheduler: Scheduler) -> int:
    me = (socket.gethostname(), os.getpid())
    return sum(1 for t in scheduler.trials() if t.get("trained") and worker_process(t.get("worker")) == me)
