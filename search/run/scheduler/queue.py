"""The queue of trials, kept in an Optuna study.

One multi-objective study per search run (minimise `val_bpb`, minimise `peak_mem_mb`) is the
system of record. A producer enqueues each candidate as a WAITING trial whose user attributes
describe it (commit, parents, operator, ...); a worker takes the oldest waiting trial, trains it and
reports back, which finishes the trial as COMPLETE (`ok`), PRUNED (`stopped`) or FAIL (`crash`,
`timeout`, `diverged`, `rejected`). `study.best_trials` is then the Pareto front.

Storages (`search.run.scheduler.storage`): SQLite, an Optuna journal file or any Optuna RDB;
SQLite stays the slowest choice for many workers.

Two things Optuna does not do for us with ask/tell, done here:

- `take()` only ever pops a WAITING trial. `Study.ask()` falls back to creating a fresh sampled
  trial when the queue is empty, which a worker racing another one for the last candidate would
  hit; `take()` makes the same storage call that `ask()` makes to pop a waiting trial and skips
  the fallback, so no stray trial can appear.
- A killed worker leaves its trial RUNNING for ever (Optuna's heartbeats are for `optimize` on
  RDB only). Workers mark their trial alive with `heartbeat()`; `requeue_stale()` fails a trial
  its caller judges dead (status `requeued`) and enqueues a fresh copy of its candidate. Any
  process may call it: a trial finished meanwhile, or failed by another caller first, is skipped.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from eval.record import STATUSES, Status
from search.run.scheduler.storage import SchedulerError, load_existing, open_storage, storage_url

METRIC_NAMES = ["val_bpb", "peak_mem_mb"]
REQUIRED_ATTRS = ("commit", "parents", "operator", "description", "content_hash", "variant")
REASON_MAX_CHARS = 2000

# Written by this module; a candidate or a trial's extra figures may not use them.
_CANDIDATE_KEYS = "candidate_keys"  # the names of the candidate's own attributes, for re-queueing
_RUNTIME_ATTRS = ("worker", "started_at", "heartbeat", "status", "finished_at")
_ROW_KEYS = ("number", "state", "values", "datetime_start", "datetime_complete")
_RESERVED = frozenset((_CANDIDATE_KEYS, "requeued_from", *_RUNTIME_ATTRS, *_ROW_KEYS))


@dataclass
class TakenTrial:
    """A trial a worker has taken: its number, its attributes and the Optuna trial object."""

    number: int
    attrs: dict[str, Any]
    trial: optuna.Trial


def _finite(value: Any) -> Any:
    """The value with every non-finite float (NaN, inf) inside it replaced by None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _check_json(what: str, key: Any, value: Any) -> None:
    if not isinstance(key, str):
        raise ValueError(f"{what} key {key!r} is not a string")
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} {key!r} is not JSON-serialisable: {exc}") from exc


def _check_reserved(what: str, keys: Any) -> None:
    clash = sorted(set(keys) & _RESERVED)
    if clash:
        raise ValueError(f"{what} may not use the key(s) {clash}: the scheduler writes them")


class Scheduler:
    """The run's study: enqueue candidates, take and finish trials, read the record back."""

    def __init__(self, url: str | None, run_dir: Path, study_name: str,
                 clock: Callable[[], float] = time.time, create: bool = True) -> None:
        """Create the run's study, or load it if it exists.

        Args:
            url: the storage, as for `storage_url`.
            run_dir: the run's directory.
            study_name: the study's name (the run's name).
            clock: epoch seconds, for `started_at` / `finished_at` (injected by tests).
            create: False to only open an existing study (reports): nothing is created or written.

        Raises:
            ValueError: if the storage URL is not understood.
            SchedulerError: if a study of that name exists with other objectives, or (with
                create=False) there is no such study.
        """
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.url = storage_url(url, run_dir)
        self.study_name = study_name
        self._clock = clock
        if not create:
            self._storage, self.study = load_existing(self.url, study_name)
            self._study_id = self._storage.get_study_id_from_name(study_name)
            return
        self._storage = open_storage(self.url)
        self.study: optuna.Study = optuna.create_study(
            storage=self._storage, study_name=study_name,
            directions=["minimize", "minimize"], load_if_exists=True)
        if self.study.directions != [StudyDirection.MINIMIZE, StudyDirection.MINIMIZE]:
            raise SchedulerError(
                f"study {study_name!r} in {self.url} exists with directions "
                f"{[d.name for d in self.study.directions]}, not two to minimise "
                f"({', '.join(METRIC_NAMES)}); give the run another name")
        if self.study.metric_names != METRIC_NAMES:
            with warnings.catch_warnings():  # experimental since 3.2, still so in 5.0
                warnings.simplefilter("ignore", ExperimentalWarning)
                self.study.set_metric_names(METRIC_NAMES)
        self._study_id = self._storage.get_study_id_from_name(study_name)

    # --- queue

    def enqueue(self, attrs: dict[str, Any]) -> None:
        """Add a candidate to the queue as a WAITING trial carrying `attrs` as user attributes.

        Raises:
            ValueError: if a required key is missing, a key is one the scheduler writes, or a value
                is not JSON-serialisable (the message names the key).
        """
        missing = [k for k in REQUIRED_ATTRS if k not in attrs]
        if missing:
            raise ValueError(f"candidate attributes lack {missing}")
        _check_reserved("candidate attributes", attrs)
        for key, value in attrs.items():
            _check_json("candidate attribute", key, value)
        self._enqueue(dict(attrs))

    def _enqueue(self, attrs: dict[str, Any]) -> None:
        stored = {**attrs, _CANDIDATE_KEYS: sorted(attrs)}
        self.study.enqueue_trial({}, user_attrs=stored, skip_if_exists=False)

    def waiting(self) -> list[dict[str, Any]]:
        """The candidate attributes of the WAITING trials, oldest first."""
        return [_candidate(t) for t in self._frozen((TrialState.WAITING,))]

    def running(self) -> list[dict[str, Any]]:
        """The rows (as in `trials()`) of the RUNNING trials: taken by a worker, not yet finished."""
        return [_row(t) for t in self._frozen((TrialState.RUNNING,))]

    def resume_taken(self, number: int) -> TakenTrial:
        """The TakenTrial of a RUNNING trial whose worker died after training it, so that the result
        it left behind can be reported with `finish` instead of training the candidate again.

        Raises:
            SchedulerError: if the trial is not RUNNING.
        """
        trial_id = self._trial_id(number)
        frozen = self._storage.get_trial(trial_id)
        if frozen.state != TrialState.RUNNING:
            raise SchedulerError(f"trial {number} is {frozen.state.name}, not RUNNING")
        attrs = {**_candidate(frozen), **{k: frozen.user_attrs[k] for k in ("worker", "started_at")
                                          if k in frozen.user_attrs}}
        return TakenTrial(number=number, attrs=attrs, trial=optuna.Trial(self.study, trial_id))

    def take(self, worker: str, accept: Callable[[dict[str, Any]], bool] | None = None) -> TakenTrial | None:
        """Take the oldest WAITING trial for `worker`; None if there is none.

        Never creates a trial: when another worker takes the last one first, this returns None.
        Sets the user attributes `worker` and `started_at` (epoch seconds).

        Args:
            worker: the worker's name.
            accept: called with each waiting trial's candidate attributes; only a trial it accepts
                is taken (None: any).
        """
        for frozen in self._frozen((TrialState.WAITING,)):
            if accept is not None and not accept(_candidate(frozen)):
                continue
            trial_id = self._trial_id(frozen.number)
            try:
                popped = self._storage.set_trial_state_values(trial_id, state=TrialState.RUNNING)
            except UpdateFinishedTrialError:
                continue
            if not popped:
                continue
            # The same object Study.ask() returns for a popped trial.
            trial = optuna.Trial(self.study, trial_id)
            started_at = self._clock()
            trial.set_user_attr("worker", worker)
            trial.set_user_attr("started_at", started_at)
            attrs = {**_candidate(frozen), "worker": worker, "started_at": started_at}
            return TakenTrial(number=frozen.number, attrs=attrs, trial=trial)
        return None

    def heartbeat(self, taken: TakenTrial) -> bool:
        """Mark a taken trial alive now (user attribute `heartbeat`, epoch seconds): other processes
        re-queue a RUNNING trial whose heartbeat stops (see `requeue_stale`).

        Returns:
            False if the trial is finished already (its worker reported it, or it was re-queued).
        """
        try:
            self._storage.set_trial_user_attr(self._trial_id(taken.number), "heartbeat", self._clock())
        except UpdateFinishedTrialError:
            return False
        return True

    def finish(self, taken: TakenTrial, status: str, values: tuple[float, float] | None,
               extra: dict[str, Any]) -> None:
        """Record how a taken trial ended and finish it in the study.

        Args:
            taken: what `take` returned.
            status: `ok` (COMPLETE, needs `values`), `stopped` (PRUNED), or `crash`, `timeout`,
                `diverged`, `rejected` (FAIL).
            values: (val_bpb, peak_mem_mb) for `ok`; None otherwise.
            extra: further user attributes (figures, `reason`, ...). Non-finite floats are stored
                as None; `reason` keeps its last 2000 characters (the end of a log tail says most).

        Raises:
            ValueError: on an unknown status, missing or non-finite values for `ok`, values for
                another status, or an extra key that is reserved, a candidate's, or not
                JSON-serialisable. Nothing is written to the study then.
            SchedulerError: if the trial was already finished (e.g. re-queued as stale).
        """
        if status not in STATUSES:
            raise ValueError(f"unknown trial status {status!r}; expected one of {STATUSES}")
        if status == Status.OK:
            if values is None or len(values) != 2:
                raise ValueError(f"status 'ok' needs values ({', '.join(METRIC_NAMES)}), got {values!r}")
            values = (float(values[0]), float(values[1]))
            if not all(math.isfinite(v) for v in values):
                raise ValueError(f"status 'ok' needs finite values, got {values!r}; "
                                 "report a non-finite loss as 'diverged'")
        elif values is not None:
            raise ValueError(f"status {status!r} takes no values (got {values!r}); "
                             "put partial figures in extra")
        _check_reserved("extra", extra)
        clash = sorted(set(extra) & set(taken.attrs))
        if clash:
            raise ValueError(f"extra key(s) {clash} would overwrite the candidate's attributes")
        record = {key: _finite(value) for key, value in extra.items()}
        if isinstance(record.get("reason"), str) and len(record["reason"]) > REASON_MAX_CHARS:
            record["reason"] = "..." + record["reason"][-(REASON_MAX_CHARS - 3):]
        for key, value in record.items():
            _check_json("extra", key, value)

        trial_id = self._trial_id(taken.number)
        try:
            self._storage.set_trial_user_attr(trial_id, "status", status)
            self._storage.set_trial_user_attr(trial_id, "finished_at", self._clock())
            for key, value in record.items():
                self._storage.set_trial_user_attr(trial_id, key, value)
            if status == Status.OK:
                self.study.tell(taken.number, values)
            elif status == Status.STOPPED:
                self.study.tell(taken.number, state=TrialState.PRUNED)
            else:
                self.study.tell(taken.number, state=TrialState.FAIL)
        except (UpdateFinishedTrialError, ValueError) as exc:
            now = self._storage.get_trial(trial_id)
            if not now.state.is_finished():
                raise
            raise SchedulerError(
                f"trial {taken.number} was already finished ({now.state.name}, status "
                f"{now.user_attrs.get('status')!r}) before its worker reported {status!r}; "
                "its result is not recorded") from exc

    def requeue_stale(self, is_stale: Callable[[dict[str, Any]], bool]) -> list[int]:
        """Fail the RUNNING trials that `is_stale` picks and queue their candidates again.

        Args:
            is_stale: called with each RUNNING trial's row (as in `trials()`: number, state,
                datetime_start, the user attributes with `worker` and `started_at`); True for a
                trial whose worker is dead or overdue. `worker` and `started_at` are missing when
                a process died inside `take` itself; `datetime_start` is always there.

        Returns:
            The numbers of the trials failed (user attribute status="requeued"); each got a fresh
            WAITING copy of its candidate attributes, with `requeued_from` set to its number.
        """
        requeued = []
        for frozen in self._frozen((TrialState.RUNNING,)):
            if not is_stale(_row(frozen)):
                continue
            trial_id = self._trial_id(frozen.number)
            try:
                self._storage.set_trial_user_attr(trial_id, "status", Status.REQUEUED)
                self._storage.set_trial_user_attr(trial_id, "finished_at", self._clock())
                self.study.tell(frozen.number, state=TrialState.FAIL)
            except (UpdateFinishedTrialError, ValueError):
                if self._storage.get_trial(trial_id).state.is_finished():
                    continue  # its worker finished it meanwhile: nothing to re-queue
                raise
            self._enqueue({**_candidate(frozen), "requeued_from": frozen.number})
            requeued.append(frozen.number)
        return requeued

    def record_refused(self, attrs: dict[str, Any], reason: str) -> int:
        """Record a candidate that will not be trained (a guard or the operator refused it) as a
        finished FAIL trial with status `rejected`, without touching the queue.

        Returns:
            The new trial's number.
        """
        _check_reserved("refused candidate attributes", attrs)
        stored = {**{k: _finite(v) for k, v in attrs.items()}, "status": "rejected", "finished_at": self._clock(),
                  "reason": reason if len(reason) <= REASON_MAX_CHARS else "..." + reason[-(REASON_MAX_CHARS - 3):]}
        for key, value in stored.items():
            _check_json("refused candidate attribute", key, value)
        trial = optuna.trial.create_trial(state=TrialState.FAIL, user_attrs=stored)
        self.study.add_trial(trial)
        return max(t.number for t in self.study.get_trials(deepcopy=False))

    # --- record

    def trials(self) -> list[dict[str, Any]]:
        """Every trial as a flat dict: number, state, values, datetime_start, datetime_complete
        and its user attributes."""
        return [_row(t) for t in self._frozen(None)]

    def set_run_attr(self, key: str, value: Any) -> None:
        """Record a run-level fact (noise floor, base commit, config) on the study.

        Raises:
            ValueError: if the value is not JSON-serialisable (non-finite floats become None).
        """
        value = _finite(value)
        _check_json("run attribute", key, value)
        self.study.set_user_attr(key, value)

    def run_attrs(self) -> dict[str, Any]:
        """The run-level facts recorded with `set_run_attr`."""
        return dict(self.study.user_attrs)

    # --- helpers

    def _frozen(self, states: tuple[TrialState, ...] | None) -> list[FrozenTrial]:
        trials = self.study.get_trials(deepcopy=False, states=states)
        return sorted(trials, key=lambda t: t.number)

    def _trial_id(self, number: int) -> int:
        return self._storage.get_trial_id_from_study_id_trial_number(self._study_id, number)


def _candidate(frozen: FrozenTrial) -> dict[str, Any]:
    """The attributes the candidate was enqueued with."""
    keys = frozen.user_attrs.get(_CANDIDATE_KEYS, [])
    return {k: frozen.user_attrs[k] for k in keys if k in frozen.user_attrs}


def _row(frozen: FrozenTrial) -> dict[str, Any]:
    row: dict[str, Any] = {
        "number": frozen.number,
        "state": frozen.state.name,
        "values": list(frozen.values) if frozen.values is not None else None,
        "datetime_start": frozen.datetime_start,
        "datetime_complete": frozen.datetime_complete,
    }
    row.update((k, v) for k, v in frozen.user_attrs.items() if k != _CANDIDATE_KEYS)
    return row
