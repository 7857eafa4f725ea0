"""Benchmark: the share of a search's wall time the device spends training, with a slow LLM.

    python scripts/duty_cycle.py [--budget 5] [--trials 6] [--delays 0,0.1,0.333] [--repeats 2]

A scripted OpenAI-compatible server on 127.0.0.1 answers every request with a valid edit after a
delay of a fraction of the trial budget. Each delay runs twice: with proposals overlapping
training (the default) and strictly in sequence (`search.overlap=false`: propose, then train, as a
single agent does). Figures per run: training seconds / wall seconds, and device seconds (trial
processes alive, startup and evaluation included) / wall seconds, wall counted from the first
trial's start to the last one's end. Writes its table to docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
from pathlib import Path

from bench_common import run_search, spread, study_rows, write_section

from openai_server import ScriptedOpenAIServer, answer


COMPILE_LINE = "COMPILE = True  # torch.compile the model (CUDA only; ignored elsewhere)"


def edits():
    """Unique valid edits that apply to any descendant of the seed: a new comment under the COMPILE
    line each time (the variants train the same model; only the proposal traffic matters here)."""
    for i in itertools.count(1):
        yield (f"DESCRIPTION: note {i}\n\ntrain/train.py\n<<<<<<< SEARCH\n{COMPILE_LINE}\n=======\n"
               f"{COMPILE_LINE}\n# note {i}\n>>>>>>> REPLACE\n")


def one_run(workdir: Path, name: str, budget: float, trials: int, delay: float, overlap: bool) -> dict:
    gen = edits()
    with ScriptedOpenAIServer(lambda body: answer(next(gen), delay=delay)) as server:
        run_search(workdir, name, [
            f"trial.budget_seconds={budget}", f"search.max_trials={trials}", "search.noise_repeats=1",
            "search.preflight=false", "search.rates.crossover=0", "search.rates.merge=0", "search.rates.tune=0",
            f"search.overlap={str(overlap).lower()}", f"llm.base_url={server.base_url}", "llm.model=scripted",
            "llm.timeout=120"], workdir / f"{name}.log")
    rows, _ = study_rows(workdir, name)
    trained = [r for r in rows if r.get("trained") and r.get("status") != "requeued"]
    start = min(r["started_at"] for r in trained)
    end = max(r["finished_at"] for r in trained)
    wall = end - start
    return {"training": sum(r.get("training_seconds") or 0 for r in trained) / wall,
            "device": sum(r.get("device_seconds") or 0 for r in trained) / wall, "wall": wall, "n": len(trained)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=5.0, help="training seconds per trial")
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--delays", default="0,0.1,0.333", help="LLM delays as fractions of the budget")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    fractions = [float(x) for x in args.delays.split(",")]
    lines = ["| LLM delay (of budget) | mode | training / wall | device busy / wall | wall s |",
             "| --- | --- | --- | --- | --- |"]
    with tempfile.TemporaryDirectory() as tmp:
        for frac in fractions:
            for overlap in (True, False):
                results = []
                for r in range(args.repeats):
                    name = f"duty-{frac}-{'overlap' if overlap else 'seq'}-{r}"
                    results.append(one_run(Path(tmp), name, args.budget, args.trials, frac * args.budget, overlap))
                    print(name, results[-1], flush=True)
                lines.append(f"| {frac:g} ({frac * args.budget:.2f} s) | {'overlapped' if overlap else 'sequential'} | "
                             f"{spread([x['training'] for x in results])} | {spread([x['device'] for x in results])} | "
                             f"{spread([x['wall'] for x in results])} |")
    cmd = (f"python scripts/duty_cycle.py --budget {args.budget:g} --trials {args.trials} --delays {args.delays} "
           f"--repeats {args.repeats}")
    notes = (f"experiment=cpu_smoke with trial.budget_seconds={args.budget:g}, {args.trials} trials per run (one seed "
             "trial, then LLM mutations), no preflight. 'device busy' counts whole trial processes (startup, data, "
             "evaluation); 'training' only the harness's training clock. Wall: first trial start to last trial end.")
    write_section("Device duty cycle", cmd, "\n".join(lines), notes)


if __name__ == "__main__":
    main()
