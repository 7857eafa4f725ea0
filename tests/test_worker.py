"""`python -m search worker` joins a run with the producer's settings (search/run/remote_worker.py)."""

from __future__ import annotations

import pytest

from search.config import load_config
from search.run.scheduler import Scheduler
from search.run.remote_worker import WorkerError, producer_config


def _conf(**over):
    conf = {"run": {"name": "r"}, "storage": {"url": None}, "lineage": {"repo": "/here", "remote": "git@x:y"},
            "scheduler": {"workers": 1, "heartbeat_seconds": 5}, "data": {"path": "/my/copy.txt"},
            "trial": {"name": "mine", "budget_seconds": 1}}
    conf.update(over)
    return conf


def test_a_worker_trains_with_the_producers_settings_and_its_own_places(tmp_path):
    sched = Scheduler(None, tmp_path, "r")  # the default storage: SQLite in the run directory
    producer = {"trial": {"name": "gpu", "budget_seconds": 300}, "data": {"path": "/their/copy.txt"},
                "search": {"seed": 0}, "editable": ["train/train.py"], "run": {"name": "r"},
                "scheduler": {"workers": 0}}
    sched.set_run_attr("config", producer)
    merged = producer_config(load_config(_conf()), tmp_path, data_overridden=False)
    assert (merged.trial.name, merged.trial.budget_seconds, merged.data.path) == ("gpu", 300, "/their/copy.txt")
    assert (merged.lineage.repo, merged.lineage.remote) == ("/here", "git@x:y") and merged.scheduler.heartbeat_seconds == 5
    assert producer_config(load_config(_conf()), tmp_path, data_overridden=True).data.path == "/my/copy.txt"


def test_joining_a_run_that_does_not_exist_says_to_start_it_first(tmp_path):
    with pytest.raises(WorkerError, match="start the run first"):
        producer_config(load_config(_conf()), tmp_path, data_overridden=False)
    Scheduler(None, tmp_path, "r")  # a study without the producer's settings (an older version made it)
    with pytest.raises(WorkerError, match="holds no producer settings"):
        producer_config(load_config(_conf()), tmp_path, data_overridden=False)
