"""The tune operator's sampler: an Optuna study of its own beside the run's."""

from __future__ import annotations

import math
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from search.run.scheduler.queue import Scheduler
from search.config import UserError


class Tuner:
    """Optuna's TPE sampler over the numeric constants of training scripts (the `tune` operator).

    A single-objective study `<run>-tune` in the run's storage: each suggestion is an asked trial,
    told the val_bpb of the child it became (or FAIL), so later suggestions learn from earlier ones
    and a resumed run goes on from the same history.
    """

    SAMPLERS = ("tpe", "random")

    def __init__(self, scheduler: Scheduler, seed: int = 0, sampler: str = "tpe", startup_trials: int = 5) -> None:
        """Args:
            sampler: `tpe` (learns from the values told) or `random` (independent uniform draws,
                the baseline a learning search must beat).
            startup_trials: `tpe` draws at random (as `random` with the same seed would) until this
                many suggestions have been told a value. Optuna's default, 10, is a long time
                when each value costs a five-minute training run.

        Raises:
            ValueError: naming an unknown sampler or a startup count below 1.
        """
        if sampler not in self.SAMPLERS:
            raise UserError(f"search.tune_sampler={sampler!r} is not one of {', '.join(self.SAMPLERS)}")
        if int(startup_trials) < 1:
            raise UserError(f"search.tune_startup_trials={startup_trials!r} must be at least 1")
        chosen = optuna.samplers.TPESampler(seed=seed, n_startup_trials=int(startup_trials)) if sampler == "tpe" \
            else optuna.samplers.RandomSampler(seed=seed)
        self.study = optuna.create_study(
            storage=scheduler._storage, study_name=f"{scheduler.study_name}-tune", direction="minimize",
            sampler=chosen, load_if_exists=True)

    def suggest(self, ranges: dict[str, Any]) -> tuple[int, dict[str, float]]:
        """Values for the named constants: `ranges` maps NAME -> [low, high] or [low, high, log].

        Raises:
            ValueError: naming a range that is not [low < high] (with low > 0 when log).
        """
        parsed = {}
        for name, spec in sorted(ranges.items()):
            if not isinstance(spec, (list, tuple)) or len(spec) not in (2, 3):
                raise UserError(f"search.tune_ranges.{name} must be [low, high] or [low, high, log], got {spec!r}")
            low, high, log = float(spec[0]), float(spec[1]), bool(spec[2]) if len(spec) == 3 else False
            if not low < high or (log and low <= 0):
                raise UserError(f"search.tune_ranges.{name} = {spec!r} needs low < high (and low > 0 for log)")
            parsed[name] = (low, high, log)
        trial = self.study.ask()
        values = {name: trial.suggest_float(name, low, high, log=log) for name, (low, high, log) in parsed.items()}
        return trial.number, values

    def report(self, number: int, val_bpb: float | None) -> None:
        """Tell the tuning study how the suggestion scored (None: it failed or was refused)."""
        try:
            if val_bpb is not None and math.isfinite(val_bpb):
                self.study.tell(number, val_bpb)
            else:
                self.study.tell(number, state=TrialState.FAIL)
        except (UpdateFinishedTrialError, ValueError):
            pass  # told already (a resumed run reporting again)
