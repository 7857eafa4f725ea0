"""Open a finished, interrupted or running search run read-only: its config, study and lineage.

`python -m search report ...` and `python -m search export ...` start here. A run is the
directory `outputs/<run.name>/` that `python -m search run` left: `config.json` (the resolved
configuration the run used), the Optuna study (by default `study.db` there) and the commits and tags
of `search/<run.name>/` in `lineage.repo`. Nothing here writes to any of them.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search import PROJECT_ROOT
from search.config import Config, UserError, load_config
from search.lineage.repo import Lineage
from search.record.data import aggregate_variants
from search.run.liveness import is_dead, stale_after_seconds
from search.run.scheduler import Scheduler, SchedulerError


class RunNotFound(UserError):
    """No run of that name; the message names the runs that exist."""


def list_runs(outputs: Path) -> list[str]:
    """The names of the run directories under `outputs` (those holding a config.json), sorted."""
    if not outputs.is_dir():
        return []
    return sorted(p.name for p in outputs.iterdir() if (p / "config.json").is_file())


@dataclass
class RunState:
    """What a run has recorded, read at one moment."""

    name: str
    run_dir: Path
    conf: Config  # the run's configuration (its config.json)
    trials: list[dict[str, Any]]  # Scheduler.trials() rows
    attrs: dict[str, Any]  # the study's run attributes (base_commit, noise, llm_usage, ...)
    storage_url: str
    read_at: float = field(default_factory=time.time)

    @property
    def variants(self) -> dict[str, dict[str, Any]]:
        return aggregate_variants(self.trials)

    @property
    def population(self) -> int | None:
        return self.conf.population

    @property
    def editable(self) -> list[str]:
        return list(self.conf.editable)

    @property
    def repo(self) -> Path:
        """The git repository holding the run's commits and tags (as the run resolved it)."""
        return Path(self.conf.lineage.repo or PROJECT_ROOT)

    @property
    def running(self) -> bool:
        """A trial is running and its worker is alive (a killed run's RUNNING trials do not count)."""
        after = stale_after_seconds(self.conf.scheduler)
        return any(t.get("state") == "RUNNING" and not is_dead(t, self.read_at, after) for t in self.trials)

    def lineage(self) -> Lineage:
        """The run's lineage (close it after use)."""
        return Lineage(self.repo, self.name, self.editable, self.conf.lineage.remote)


def load_run(run_dir: Path, name: str) -> RunState:
    """Read a run's configuration and study.

    Args:
        run_dir: the run's directory (outputs/<name>/, or wherever hydra.run.dir put it).
        name: the run's name (its study's name).

    Raises:
        RunNotFound: if there is no run there; the message names the runs beside it.
    """
    run_dir = Path(run_dir)
    config = run_dir / "config.json"
    if not config.is_file():
        runs = list_runs(run_dir.parent)
        known = ", ".join(runs) if runs else "none"
        raise RunNotFound(f"no run {name!r} in {run_dir.parent} (the runs there: {known})")
    conf = load_config(json.loads(config.read_text()))
    try:
        scheduler = Scheduler(conf.storage.url, run_dir, name, create=False)
    except SchedulerError as exc:
        raise RunNotFound(f"run {name!r} in {run_dir} has no study yet ({exc})") from None
    return RunState(name=name, run_dir=run_dir, conf=conf, trials=scheduler.trials(), attrs=scheduler.run_attrs(),
                    storage_url=scheduler.url)
