"""The workers of this process: take queued trials and train them until the run is over.

Each worker names itself (`search.run.liveness.worker_name`), takes the oldest waiting trial,
keeps it alive with heartbeats while the executor trains it, and re-queues it when interrupted.
Between trials a worker re-queues the trials of dead workers (recovering a result a dead worker of
this machine left on disk) and checks whether anything is left to do. `scheduler.workers` says how
many workers run here (`worker_envs`).
"""

from __future__ import annotations

import errno
import os
import threading
import time
from typing import Any, Callable

from eval.record import TrialRecord
from search.config import SchedulerConfig, UserError
from search.run.executor import TrialExecutor
from search.run.liveness import heartbeat_seconds, is_dead, keep_alive, stale_after_seconds, worker_name
from search.run.scheduler import TakenTrial
from search.run.store import RunStore

# Errors of the machine, not of a variant: the run stops at once (resumable) and says what to fix.
FATAL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)
REAP_EVERY_SECONDS = 5.0  # at most this often a worker looks for dead workers' trials
IDLE_WAIT_SECONDS = 0.5  # a worker with nothing to take waits this long, or until woken


def is_fatal(exc: BaseException) -> bool:
    """The machine refuses to store the run (disk full, read-only or forbidden output)."""
    if isinstance(exc, OSError) and exc.errno in FATAL_ERRNOS:
        return True
    return "database or disk is full" in str(exc)


class Workers:
    """The workers of one process and what they share: who trains what, the stop event, the first
    fatal error.

    Args:
        store: the run's study and lineage.
        executor: trains a taken trial.
        scheduler: the `scheduler` settings (heartbeats, staleness).
        production_over: whether no more candidates will come (then the workers end when nothing
            waits or runs anywhere).
        say: where progress lines go.
    """

    def __init__(self, store: RunStore, executor: TrialExecutor, scheduler: SchedulerConfig,
                 production_over: Callable[[], bool], say: Callable[[str], None]):
        self.store = store
        self.executor = executor
        self.heartbeat_every = heartbeat_seconds(scheduler)
        self.stale_after = stale_after_seconds(scheduler)
        self.production_over = production_over
        self.say = say
        self.running: dict[str, str] = {}  # worker -> variant ("-" while it takes)
        self.stop = threading.Event()
        self.wake = threading.Condition()
        self.fatal: BaseException | None = None
        self._last_reap = 0.0

    def busy(self) -> bool:
        return bool(self.running)

    def notify(self) -> None:
        with self.wake:
            self.wake.notify_all()

    def fail(self, exc: BaseException) -> bool:
        """Stop the run for `exc` (the first one is re-raised by the main thread); always True."""
        if self.fatal is None:
            self.fatal = exc
        self.say(f"[search] stopping: {type(exc).__name__}: {exc}")
        self.stop.set()
        self.notify()
        return True

    def work(self, worker: str, env: dict[str, str] | None = None,
             accept: Callable[[dict[str, Any]], bool] | None = None, until_empty: bool = False) -> int:
        """One worker: train taken trials until the run is over (or, `until_empty`, until none that
        `accept` takes waits). Returns the number trained."""
        trained = 0
        while not self.stop.is_set():
            self.running[worker] = "-"  # before take(): the sequential producer must see this worker busy
            taken = self.store.take(worker, accept)
            if taken is None:
                self.running.pop(worker, None)
                if until_empty:
                    break
                self.reap_dead()
                if self.finished(worker):
                    self.stop.set()
                    break
                with self.wake:
                    self.wake.wait(IDLE_WAIT_SECONDS)
                continue
            self.running[worker] = taken.attrs["variant"]
            try:
                self.train(taken, env)
                trained += 1
            finally:
                self.running.pop(worker, None)
            self.notify()
        return trained

    def train(self, taken: TakenTrial, env: dict[str, str] | None = None) -> TrialRecord:
        """Train one taken trial with heartbeats; a Ctrl-C queues it again before it propagates."""
        try:
            with keep_alive(lambda: self.store.heartbeat(taken), self.heartbeat_every,
                            lambda exc: self.say(f"[search] heartbeat of trial {taken.number} failed: "
                                                 f"{type(exc).__name__}: {exc}"), name=f"heartbeat-{taken.number}"):
                return self.executor.train(taken, env)
        except KeyboardInterrupt:
            self.store.requeue_number(taken.number)
            raise

    def work_guarded(self, worker: str, env: dict[str, str] | None) -> None:
        """`work` in a thread: an error stops the whole run instead of one thread silently."""
        try:
            self.work(worker, env)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which re-raises it
            self.fail(exc)

    def work_in_threads(self, envs: list[dict[str, str]]) -> None:
        """One worker thread per environment, joined in short waits so Ctrl-C reaches this thread."""
        threads = [threading.Thread(target=self.work_guarded, args=(worker_name(f"w{i}"), env),
                                    name=f"worker-{i}", daemon=True) for i, env in enumerate(envs)]
        for th in threads:
            th.start()
        while any(th.is_alive() for th in threads):
            for th in threads:
                th.join(timeout=0.5)

    def coordinate(self) -> None:
        """Without workers of its own: re-queue trials of dead workers, keep this repository's tags
        in step with the study, and return when the run is over."""
        while not self.stop.is_set():
            self.reap_dead()
            if self.finished(None):
                break
            with self.wake:
                self.wake.wait(1.0)
        self.store.repair_tags()

    def finished(self, worker: str | None) -> bool:
        """Nothing is left to do: production is over, nothing waits, no trial of the study is running
        anywhere, and no other worker of this process is busy. A trial running elsewhere keeps every
        worker on watch, to train it again should its worker die."""
        with self.store.study_lock:
            if not self.production_over():
                return False
            if self.store.waiting() or self.store.running():
                return False
        return not any(w != worker for w in self.running)

    def reap_dead(self, quiet: bool = False) -> list[int]:
        """Re-queue RUNNING trials whose worker died (see search.run.liveness); at most every few seconds."""
        now = time.time()
        if not quiet and now - self._last_reap < min(REAP_EVERY_SECONDS, self.heartbeat_every):
            return []
        self._last_reap = now
        dead = [row for row in self.store.running() if is_dead(row, now, self.stale_after)]
        recovered = {row["number"] for row in dead if self.executor.recover(row)}
        requeued = self.store.requeue(lambda row: row["number"] not in recovered and is_dead(row, now, self.stale_after))
        if requeued and not quiet:
            self.say(f"[search] re-queued trial(s) {requeued}: their worker died or went silent")
        return requeued


def worker_envs(workers: Any) -> list[dict[str, str]]:
    """One environment per worker of this process (`scheduler.workers`).

    `auto`: one worker per visible GPU, each pinned to its device with CUDA_VISIBLE_DEVICES (the ids
    the user made visible, if any), or a single unpinned worker without a GPU. A number N > 1 shares
    the CPU cores out with OMP_NUM_THREADS. 0: no worker (the producer only; workers elsewhere train).

    Raises:
        UserError: for anything but a number of at least 0 or `auto`.
    """
    if workers == "auto":
        return [{"CUDA_VISIBLE_DEVICES": d} for d in visible_gpus()] or [{}]
    try:
        n = int(workers)
    except (TypeError, ValueError):
        n = -1
    if n < 0:
        raise UserError(f"scheduler.workers={workers!r}: give a number of workers (0: produce only) or auto")
    if n <= 1:
        return [{}] * n
    cores = os.cpu_count() or 1
    return [{"OMP_NUM_THREADS": str(max(1, cores // n))} for _ in range(n)]


def visible_gpus() -> list[str]:
    """The ids of the GPUs this process may use: CUDA_VISIBLE_DEVICES when set, else 0..N-1."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip() and d.strip() != "-1"]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]
