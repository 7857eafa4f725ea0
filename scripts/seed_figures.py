"""Benchmark: the seed variant on one preset: val_bpb, MFU, tokens/s and peak memory over repeats.

    python scripts/seed_figures.py --preset gpu --repeats 3 -- data=climbmix
    python scripts/seed_figures.py --preset gpu -- data=files 'data.paths=[/corpus/*.txt]'
    python scripts/seed_figures.py --preset cpu --repeats 2          # Tiny Shakespeare (the default data)

Runs `python -m search trial trial=<preset> <overrides>` on this checkout's seed `--repeats` times,
each with its own trial seed (`trial.seed=0..`), and reads each trial's record (its figures leave
out the data preparation, which the command does before the trial process starts). Everything after `--` is passed to the
trial command (the data, or `trial.eval_tokens=...` for a corpus too small for the preset's
evaluation). Without data overrides the data is Tiny Shakespeare from ../shared/data, enough for the
`cpu` and `smoke` presets but not for `gpu` (10.5M evaluation tokens). The table goes to
docs/BENCHMARKS.md under "Seed on the <preset> preset" (not with --no-write); raw records to
scripts/results/seed-<preset>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from statistics import mean, stdev

from bench_common import ROOT, SHAKESPEARE, seed_trial, trial_overrides, write_section

FIGURES = [("val_bpb", "val_bpb", "{:.4f}"), ("test_bpb", "test_bpb", "{:.4f}"), ("MFU %", "mfu_percent", "{:.1f}"),
           ("tokens/s", "tokens_per_second", "{:,.0f}"), ("peak memory MB", "peak_mem_mb", "{:,.0f}"),
           ("steps", "num_steps", "{:.0f}"), ("training s", "training_seconds", "{:.1f}"),
           ("total s", "total_seconds", "{:.1f}")]


def cell(records: list[dict], key: str, form: str) -> str:
    """mean ± std of one figure over the records, in the figure's format ('n/a' where none has it)."""
    values = [r[key] for r in records if isinstance(r.get(key), (int, float))]
    if not values:
        return "n/a"
    if len(values) == 1:
        return form.format(values[0])
    return f"{form.format(mean(values))} ± {form.format(stdev(values))}"


def main() -> None:
    own, extra, overrides = trial_overrides(sys.argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog="Arguments after -- are overrides for `python -m search trial`.")
    ap.add_argument("--preset", default="gpu", help="trial preset: gpu, cpu or smoke")
    ap.add_argument("--repeats", type=int, default=3, help="trials of the seed, trial.seed=0..repeats-1")
    ap.add_argument("--workdir", default=None, help="where trials go (default: a new temporary directory, kept)")
    ap.add_argument("--no-write", action="store_true", help="do not write docs/BENCHMARKS.md")
    args = ap.parse_args(own)
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="seed-figures-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"[seed] {args.repeats} trials of the seed on trial={args.preset} in {workdir}", flush=True)
    records = []
    for i in range(args.repeats):
        rec, _ = seed_trial("seed", [f"trial={args.preset}", f"trial.seed={i}", *overrides], workdir / f"trial-{i}")
        records.append(rec)
        print(f"[seed] {i + 1}/{args.repeats}: val_bpb {rec['val_bpb']:.4f}, MFU {rec.get('mfu_percent')}, "
              f"{rec.get('tokens_per_second') or 0:,.0f} tokens/s, peak {rec.get('peak_mem_mb') or 0:,.0f} MB, "
              f"{rec.get('device')}", flush=True)
    results = ROOT / "scripts" / "results" / f"seed-{args.preset}.json"
    results.parent.mkdir(parents=True, exist_ok=True)
    keep = ["status", "device", "val_bpb", "test_bpb", "uniform_bpb", "mfu_percent", "tokens_per_second",
            "peak_mem_mb", "num_steps", "tokens_M", "num_params_M", "training_seconds", "total_seconds",
            "eval_tokens", "test_tokens", "versions"]
    results.write_text(json.dumps({"preset": args.preset, "overrides": overrides,
                                   "records": [{k: r.get(k) for k in keep} for r in records]}, indent=1) + "\n")
    devices = sorted({str(r.get("device")) for r in records})
    head = [name for name, _, _ in FIGURES]
    table = "\n".join(["| device | " + " | ".join(head) + " |", "| --- " * (len(head) + 1) + "|",
                       f"| {', '.join(devices)} | " + " | ".join(cell(records, k, f) for _, k, f in FIGURES) + " |"])
    shown = " ".join(overrides).replace(str(SHAKESPEARE), "../shared/data/tinyshakespeare.txt")
    notes = (f"The seed (this checkout's train/train.py and model/gpt.py) trained {args.repeats} times with trial.seed "
             f"0..{args.repeats - 1}; cells: mean ± std. Overrides: `{shown}`. Evaluation on "
             f"{records[0].get('eval_tokens'):,} val and {records[0].get('test_tokens'):,} test tokens. MFU counts "
             "6 x non-embedding parameters per token (no attention term) against the device's bf16 dense peak; "
             "n/a where the device's peak is not known (a CPU). Peak memory: CUDA's max allocated on a GPU, the "
             f"process's peak RSS on a CPU. Raw figures: {results.relative_to(ROOT)}.")
    print(table + "\n\n" + notes, flush=True)
    if not args.no_write:
        cmd = f"python scripts/seed_figures.py --preset {args.preset} --repeats {args.repeats}" + \
            (" -- " + " ".join(extra) if extra else "")
        write_section(f"Seed on the {args.preset} preset", cmd, table, notes)


if __name__ == "__main__":
    main()
