"""Benchmark: search efficiency, the best val_bpb after the same trials and the same device time.

    python scripts/efficiency.py [--seeds 5] [--trials 10] [--steps 20] [--parallel 2]

Six arms, no LLM (operators: git merge of lineages and Optuna-tuned constants), each run once
per seed `search.seed=0..seeds-1`:
  population  `+population=4`, tune sampler TPE
  greedy      single lineage (keep a child only if it beats the best by the noise floor), TPE
  random      single lineage, `search.tune_sampler=random` (uniform draws over search.tune_ranges)
  population-2, greedy-2, random-2
              the same with `search.tune_count=2`: each tune child retunes 2 of the constants, chosen
              at random, instead of all of them (the default), so lineages accumulate retunes and
              siblings' retunes can merge
Training is capped by steps (`trial.max_steps`, budget seconds left far above what the steps take),
so val_bpb does not depend on the load of the machine and `--parallel` runs can share it. Figures
per run: the best val_bpb (status ok only; the seed's runs included) after k trained trials, and
after t device seconds (trials in the order they finished). Raw per-run numbers go to
scripts/results/efficiency.json; the table to docs/BENCHMARKS.md (not with --no-write).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from statistics import mean, stdev

from bench_common import ROOT, run_search, spread, study_rows, write_section

ARMS = {
    "population": ["+population=4", "search.tune_sampler=tpe"],
    "greedy": ["search.tune_sampler=tpe"],
    "random": ["search.tune_sampler=random"],
    "population-2": ["+population=4", "search.tune_sampler=tpe", "search.tune_count=2"],
    "greedy-2": ["search.tune_sampler=tpe", "search.tune_count=2"],
    "random-2": ["search.tune_sampler=random", "search.tune_count=2"],
}
RESULTS = ROOT / "scripts" / "results" / "efficiency.json"


def best_curves(rows: list[dict]) -> dict:
    """Best-so-far val_bpb by trained trial count and by cumulative device seconds.

    Returns: {"trials": [{"k", "device_s", "val_bpb", "status", "operator", "best"}...]}, trials in
    the order they finished; "best" is None until the first ok trial.
    """
    trained = sorted((r for r in rows if r.get("trained") and r.get("status") != "requeued"),
                     key=lambda r: r["finished_at"])
    out, best, device = [], None, 0.0
    for k, r in enumerate(trained, 1):
        device += r.get("device_seconds") or 0.0
        v = r.get("val_bpb")
        if r.get("status") == "ok" and v is not None and math.isfinite(v):
            best = v if best is None else min(best, v)
        out.append({"k": k, "device_s": round(device, 3), "val_bpb": v, "status": r.get("status"),
                    "operator": r.get("operator"), "variant": r.get("variant"), "best": best})
    return {"trials": out}


def best_after_trials(run: dict, k: int) -> float | None:
    done = [t for t in run["trials"] if t["k"] <= k]
    return done[-1]["best"] if done else None


def best_after_seconds(run: dict, seconds: float) -> float | None:
    done = [t for t in run["trials"] if t["device_s"] <= seconds + 1e-9]
    return done[-1]["best"] if done else None


def one_run(workdir: Path, arm: str, seed: int, args: argparse.Namespace) -> dict:
    name = f"eff-{arm}-s{seed}"
    overrides = [f"trial={args.preset}", "llm=none", f"trial.max_steps={args.steps}",
                 f"trial.budget_seconds={args.budget_cap:g}", f"search.max_trials={args.trials}",
                 f"search.noise_repeats={args.noise_repeats}", f"search.seed={seed}", "search.preflight=false",
                 *ARMS[arm]]
    if args.threads:
        overrides.append(f"trial.threads={args.threads}")
    t0 = time.time()
    load0 = os.getloadavg()[0]
    wall = run_search(workdir, name, overrides, workdir / f"{name}.log")
    rows, attrs = study_rows(workdir, name)
    run = {"arm": arm, "seed": seed, "wall_s": round(wall, 1), "started": t0, "load_start": load0,
           "load_end": os.getloadavg()[0], "noise": attrs.get("noise"), **best_curves(rows)}
    steps = {r.get("num_steps") for r in rows if r.get("status") == "ok"}
    if steps - {args.steps}:  # the steps, not the seconds, must bound every trial
        raise RuntimeError(f"{name}: trials trained {sorted(steps)} steps, not {args.steps}: "
                           "the time budget cut training short; raise --budget-cap")
    return run


def fmt(values: list[float | None]) -> str:
    vals = [v for v in values if v is not None]
    missing = len(values) - len(vals)
    if not vals:
        return "-"
    return spread(vals) + (f" ({missing} without an ok trial)" if missing else "")


def paired(runs: list[dict], a: str, b: str, pick) -> list[float]:
    """Per-seed differences a - b of pick(run), for seeds where both have a value."""
    by = {(r["arm"], r["seed"]): pick(r) for r in runs}
    seeds = sorted({r["seed"] for r in runs})
    return [by[(a, s)] - by[(b, s)] for s in seeds
            if by.get((a, s)) is not None and by.get((b, s)) is not None]


def verdict(runs: list[dict], a: str, b: str, pick, label: str, floor: float) -> str:
    diffs = paired(runs, a, b, pick)
    if not diffs:
        return f"- {a} vs {b}, {label}: no seed has values for both."
    d = mean(diffs)
    sd = stdev(diffs) if len(diffs) > 1 else float("nan")
    arm_sd = [stdev(v) for v in ([pick(r) for r in runs if r["arm"] == x and pick(r) is not None] for x in (a, b))
              if len(v) > 1]
    lower = "equal" if d == 0 else f"{a if d < 0 else b} lower"
    over_floor = abs(d) > floor
    over_spread = bool(arm_sd) and abs(d) > max(arm_sd)
    return (f"- {a} vs {b}, {label}: mean difference {d:+.4f} bpb ({lower}; per seed {sd:.4f} std, "
            f"n={len(diffs)}). It {'exceeds' if over_floor else 'does not exceed'} the noise floor "
            f"({floor:.4f}) and {'exceeds' if over_spread else 'does not exceed'} the spread over seeds "
            f"(largest arm std {max(arm_sd) if arm_sd else float('nan'):.4f}).")


def by_operator(runs: list[dict]) -> str:
    """Children trained per operator over the runs, the ok ones in brackets (the seed's runs left out)."""
    counts: dict[str, list[int]] = {}
    for r in runs:
        for t in r["trials"]:
            if t["operator"] not in (None, "seed"):
                c = counts.setdefault(t["operator"], [0, 0])
                c[0] += 1
                c[1] += t["status"] == "ok"
    return ", ".join(f"{op} {n} ({ok})" for op, (n, ok) in sorted(counts.items())) or "none"


def table(runs: list[dict], args: argparse.Namespace) -> tuple[str, str]:
    arms = [a for a in ARMS if any(r["arm"] == a for r in runs)]
    ks = sorted({min(5, args.trials), args.trials})
    t_min = min(r["trials"][-1]["device_s"] for r in runs)
    ts = [0.5 * t_min, t_min]
    head = ([f"best after {k} trials" for k in ks] + [f"best after {t:.0f} device s" for t in ts]
            + ["trials ok / trained", "children by operator (ok)", "device s per run", "wall s per run"])
    lines = ["| arm | " + " | ".join(head) + " |", "| --- " * (len(head) + 1) + "|"]
    for arm in arms:
        rs = [r for r in runs if r["arm"] == arm]
        cells = ([fmt([best_after_trials(r, k) for r in rs]) for k in ks]
                 + [fmt([best_after_seconds(r, t) for r in rs]) for t in ts]
                 + [f"{sum(t['status'] == 'ok' for r in rs for t in r['trials'])} / "
                    f"{sum(len(r['trials']) for r in rs)}", by_operator(rs),
                    spread([r["trials"][-1]["device_s"] for r in rs]), spread([r["wall_s"] for r in rs])])
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    noises = [r["noise"] for r in runs if r.get("noise")]
    floor = mean(n["floor"] for n in noises) if noises else 0.0
    lines += ["", "| noise floor (the seed's repeats, per run, averaged over runs) | value |", "| --- | --- |",
              f"| seed val_bpb mean | {spread([n['mean'] for n in noises])} |",
              f"| seed val_bpb std ({noises[0]['n'] if noises else '?'} repeats) | "
              f"{spread([n['std'] for n in noises])} |",
              f"| floor = noise_k x std | {spread([n['floor'] for n in noises])} |"]
    sentences = []
    # The arms of the defaults against each other, and each against its tune_count=2 variant.
    base = [a for a in arms if not a.endswith("-2")]
    pairs = [(x, y) for i, x in enumerate(base) for y in base[i + 1:]] + [(a, a + "-2") for a in base if a + "-2" in arms]
    for a, b in pairs:
        seeds = sorted({r["seed"] for r in runs if r["arm"] in (a, b)})
        same = [s for s in seeds if len({tuple(t["val_bpb"] for t in r["trials"])
                                        for r in runs if r["seed"] == s and r["arm"] in (a, b)}) == 1]
        if same:
            sentences.append(f"- {a} and {b} trained the same val_bpb sequence, trial by trial, on seeds "
                             f"{', '.join(map(str, same))} of {len(seeds)}; there a difference after equal device "
                             "time comes only from how long the same trials took on the shared machine.")
        sentences.append(verdict(runs, a, b, lambda r: best_after_trials(r, args.trials),
                                 f"after {args.trials} trials", floor))
        sentences.append(verdict(runs, a, b, lambda r: best_after_seconds(r, t_min),
                                 f"after {t_min:.0f} device s", floor))
    return "\n".join(lines), "\n".join(sentences)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--trials", type=int, default=10, help="search.max_trials (baseline repeats included)")
    ap.add_argument("--steps", type=int, default=20, help="trial.max_steps: training steps of every trial")
    ap.add_argument("--noise-repeats", type=int, default=2)
    ap.add_argument("--preset", default="cpu", help="trial preset")
    ap.add_argument("--budget-cap", type=float, default=900.0,
                    help="trial.budget_seconds, far above what the steps take, so it never ends training")
    ap.add_argument("--parallel", type=int, default=2, help="runs at once (the steps cap keeps val_bpb load-free)")
    ap.add_argument("--threads", type=int, default=1, help="trial.threads (0: torch's default)")
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--workdir", default=None, help="where runs go (default: a new temporary directory, kept)")
    ap.add_argument("--results", default=str(RESULTS))
    ap.add_argument("--no-write", action="store_true", help="do not write docs/BENCHMARKS.md")
    ap.add_argument("--from-json", default=None, help="recompute the table from a results file; runs nothing")
    args = ap.parse_args()
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        args = argparse.Namespace(**{**saved["args"], "results": args.from_json, "no_write": args.no_write})
        report(saved["runs"], args, saved["elapsed_s"], Path(args.results))
        return
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="efficiency-"))
    workdir.mkdir(parents=True, exist_ok=True)
    jobs = [(arm, seed) for seed in range(args.seeds) for arm in args.arms.split(",")]  # arms interleaved per seed
    print(f"[efficiency] {len(jobs)} runs in {workdir}, {args.parallel} at once", flush=True)
    t0 = time.time()
    runs: list[dict] = []
    results = Path(args.results)
    results.parent.mkdir(parents=True, exist_ok=True)

    def job(arm_seed):
        run = one_run(workdir, *arm_seed, args)
        last = run["trials"][-1]
        print(f"[efficiency] {arm_seed[0]} seed {arm_seed[1]}: best {last['best']}, {last['k']} trials, "
              f"{last['device_s']:.0f} device s, {run['wall_s']:.0f} wall s, load {run['load_end']:.2f} "
              f"({time.time() - t0:.0f} s since start)", flush=True)
        return run

    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        for run in pool.map(job, jobs):
            runs.append(run)
            results.write_text(json.dumps({"args": vars(args), "runs": runs}, indent=1) + "\n")
    elapsed = time.time() - t0
    results.write_text(json.dumps({"args": vars(args), "elapsed_s": round(elapsed), "runs": runs}, indent=1) + "\n")
    report(runs, args, elapsed, results)


def report(runs: list[dict], args: argparse.Namespace, elapsed: float, results: Path) -> None:
    """Print the table and, unless --no-write, put it in docs/BENCHMARKS.md."""
    body, sentences = table(runs, args)
    shown = results.resolve().relative_to(ROOT) if results.resolve().is_relative_to(ROOT) else results
    loads = [r["load_start"] for r in runs] + [r["load_end"] for r in runs]
    notes = (f"trial={args.preset} with trial.max_steps={args.steps} (trial.budget_seconds={args.budget_cap:g}, never "
             f"reached), llm=none, search.max_trials={args.trials} (the seed's {args.noise_repeats} runs included), "
             f"search.noise_repeats={args.noise_repeats}, no preflight, trial.threads={args.threads or 'default'}, "
             f"{args.parallel} runs at once; seeds 0..{args.seeds - 1}, the same for each arm. Best = lowest val_bpb "
             "of an ok trial so far, the seed's runs included; device seconds add up each trial process's whole life "
             "(start-up and evaluation too) in the order trials finished; the device-time columns use the smallest "
             "total over all runs and its half. Cells: mean ± std over seeds. Whole benchmark "
             f"{elapsed / 60:.0f} min wall; load average over runs {mean(loads):.2f} (min {min(loads):.2f}, "
             f"max {max(loads):.2f}). Raw per-run numbers: {shown}; `--from-json {shown}` recomputes this table.\n\n"
             + sentences)
    print(body + "\n\n" + notes, flush=True)
    if not args.no_write:
        cmd = (f"python scripts/efficiency.py --seeds {args.seeds} --trials {args.trials} --steps {args.steps} "
               f"--noise-repeats {args.noise_repeats} --parallel {args.parallel} --threads {args.threads}")
        write_section("Search efficiency", cmd, body, notes)


if __name__ == "__main__":
    main()
