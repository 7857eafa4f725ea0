"""Benchmark: harness overhead per trial, i.e. total seconds minus training seconds.

    python scripts/overhead.py [--presets smoke,cpu] [--repeats 3]
    python scripts/overhead.py --presets gpu -- data=climbmix
    python scripts/overhead.py --presets gpu -- data=files 'data.paths=[/corpus/*.txt]'

Runs `python -m search trial trial=<preset> <overrides>` on the seed (data prepared once,
beforehand, so the figure is the per-trial cost: process start, imports, model build and
compilation, the causality probe and the evaluation). Also reports the whole command's wall
time. Everything after `--` goes to every trial command; without a data override the data is
Tiny Shakespeare from ../shared/data, too small for the gpu preset's 10.5M evaluation tokens.
Writes its table to docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from bench_common import seed_trial, spread, trial_overrides, write_section

DEFAULT_PRESETS = "smoke,cpu"


def one(preset: str, overrides: list[str], workdir: Path, i: int) -> dict:
    rec, wall = seed_trial("overhead", [f"trial={preset}", *overrides, f"data.cache_dir={workdir / 'cache'}"],
                           workdir / f"{preset}-{i}")
    return {"training": rec["training_seconds"], "total": rec["total_seconds"],
            "overhead": rec["total_seconds"] - rec["training_seconds"], "wall": wall, "val_bpb": rec["val_bpb"]}


def main() -> None:
    own, extra, overrides = trial_overrides(sys.argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog="Arguments after -- are overrides for every `python -m search trial`.")
    ap.add_argument("--presets", default=DEFAULT_PRESETS, help="trial presets, comma-separated: smoke, cpu, gpu")
    ap.add_argument("--repeats", type=int, default=3, help="timed trials per preset (after one untimed)")
    args = ap.parse_args(own)
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")
    lines = ["| preset | training s | trial total s | overhead s (total - training) | overhead share | command wall s | val_bpb |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets.split(","):
            # Untimed: prepares the data for this preset's vocabulary (2 steps: no 5 minutes of GPU for it).
            one(preset, [*overrides, "trial.max_steps=2"], Path(tmp), -1)
            runs = [one(preset, overrides, Path(tmp), i) for i in range(args.repeats)]
            for r in runs:
                print(preset, r, flush=True)
            share = [r["overhead"] / r["total"] for r in runs]
            lines.append(f"| {preset} | {spread([r['training'] for r in runs])} | {spread([r['total'] for r in runs])} | "
                         f"{spread([r['overhead'] for r in runs])} | {spread(share)} | {spread([r['wall'] for r in runs])} | "
                         f"{spread([r['val_bpb'] for r in runs])} |")
    notes = ("Trial total counts from the runner starting the trial process to the record; the command wall adds "
             "Hydra's start-up, the cached data lookup and the parent's imports. Load average at the end: "
             f"{os.getloadavg()[0]:.2f}.")
    command = f"python scripts/overhead.py --presets {args.presets} --repeats {args.repeats}" + \
        (" -- " + " ".join(extra) if extra else "")
    # The default presets own the "Harness overhead" section; other choices (the gpu preset on a GPU
    # machine) get a section of their own, so that neither run's rows overwrite the other's.
    title = "Harness overhead" if args.presets == DEFAULT_PRESETS else f"Harness overhead: {args.presets}"
    write_section(title, command, "\n".join(lines), notes)


if __name__ == "__main__":
    main()
