"""The scheduler: the run's queue of trials in an Optuna study (`queue`), where the study lives
(`storage`) and the tune operator's sampler (`tuner`). The only code that imports optuna.
"""

from search.run.scheduler.queue import REASON_MAX_CHARS, Scheduler, TakenTrial
from search.run.scheduler.storage import SchedulerError, storage_url
from search.run.scheduler.tuner import Tuner

__all__ = ["REASON_MAX_CHARS", "Scheduler", "SchedulerError", "TakenTrial", "Tuner", "storage_url"]
