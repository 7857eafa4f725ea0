"""Benchmark: trials per hour with 1 and 2 workers on this machine (tiny budgets, no LLM).

    python scripts/scaling.py [--budget 2] [--trials 8] [--repeats 2]

`python -m search run +population=4 experiment=cpu_smoke llm=none` with `scheduler.workers=1` and
`=2`; with 2 workers each trial process gets half the cores (OMP_NUM_THREADS). Trials per hour =
trained trials / (last trial end - first trial start). Writes its table to docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from statistics import mean

from bench_common import run_search, spread, study_rows, write_section


def one_run(workdir: Path, name: str, workers: int, budget: float, trials: int) -> float:
    run_search(workdir, name, ["+population=4", "llm=none", f"scheduler.workers={workers}",
                               f"trial.budget_seconds={budget}", f"search.max_trials={trials}",
                               "search.noise_repeats=1", "search.preflight=false", "search.queue_size=3"],
               workdir / f"{name}.log")
    rows, _ = study_rows(workdir, name)
    trained = [r for r in rows if r.get("trained") and r.get("status") != "requeued"]
    wall = max(r["finished_at"] for r in trained) - min(r["started_at"] for r in trained)
    return 3600.0 * len(trained) / wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=2.0)
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    rates: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for workers in (1, 2):
                rates[workers].append(one_run(Path(tmp), f"scale-w{workers}-{r}", workers, args.budget, args.trials))
                print(workers, rates[workers][-1], flush=True)
    table = "\n".join([
        "| workers | trials per hour |", "| --- | --- |",
        f"| 1 | {spread(rates[1])} |", f"| 2 | {spread(rates[2])} |",
        f"| ratio 2 / 1 | {mean(rates[2]) / mean(rates[1]):.2f} |"])
    notes = (f"experiment=cpu_smoke, trial.budget_seconds={args.budget:g}, {args.trials} trials per run, no LLM "
             "(Optuna-tuned constants), no preflight. Two workers share two cores, so each trial trains with half "
             "the threads: the gain comes from overlapping one trial's start-up and evaluation with another's "
             "training, not from more compute.")
    write_section("Scaling", f"python scripts/scaling.py --budget {args.budget:g} --trials {args.trials} "
                  f"--repeats {args.repeats}", table, notes)


if __name__ == "__main__":
    main()
