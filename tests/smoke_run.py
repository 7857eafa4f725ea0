"""A small real search run for the report and export tests (the real CLI, on CPU, no LLM).

Its trials stop after `MAX_STEPS` optimizer steps, well inside their budget: with `trial.max_steps`
the schedules follow steps rather than the clock, so training the same variant again gives the same
val_bpb. (With a 1-second budget on a busy two-core machine a trial gets 1 to 4 steps, and identical
code moves val_bpb by 0.5, far beyond any tolerance a reproduction test could use.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import EDITABLE, ROOT, SHAKESPEARE, git, make_repo  # noqa: F401 (EDITABLE, git: for the tests)

MAX_STEPS = 4
BUDGET_SECONDS = 30


@dataclass
class SmokeRun:
    name: str
    repo: Path  # the lineage's git repository
    outputs: Path  # the directory holding the run directory
    run_dir: Path
    stdout: str

    def where(self) -> list[str]:
        """The overrides that name this run to report and export."""
        return [f"run.name={self.name}", f"hydra.run.dir={self.run_dir}"]


def cli(*args: str, cwd: Path = ROOT, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, EVORESEARCH_NO_GPU_DEFAULT="1", OPENAI_API_KEY="")
    return subprocess.run([sys.executable, "-m", "search", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def build_smoke_run(base: Path, name: str) -> SmokeRun:
    """Run `python -m search run +population=3 experiment=cpu_smoke llm=none` for 4 trials under `base`."""
    if not SHAKESPEARE.exists():
        pytest.skip(f"{SHAKESPEARE} is missing")
    repo = make_repo(base / "repo")
    outputs = base / "outputs"
    run_dir = outputs / name
    out = cli("run", "+population=3", "experiment=cpu_smoke", "llm=none", "search.max_trials=4",
              "search.noise_repeats=2", "search.preflight=false", f"trial.budget_seconds={BUDGET_SECONDS}",
              f"trial.max_steps={MAX_STEPS}", f"lineage.repo={repo}", f"data.path={SHAKESPEARE}",
              f"data.cache_dir={base / 'cache'}", f"hydra.run.dir={run_dir}", f"run.name={name}", timeout=900)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    return SmokeRun(name=name, repo=repo, outputs=outputs, run_dir=run_dir, stdout=out.stdout)
